"""Two entries of one BLOB for one model (AAGUID or AAID): refuse, or keep the most restrictive.

A BLOB must list each model once. Before this check the first copy won silently, so a REVOKED
copy after a certified one was ignored. ``resolve`` refuses such a BLOB (``"refuse"``, the
default) or, when the policy says ``"most-restrictive"``, keeps the copy whose status restricts
most and reports the others as skipped entries with the reason.

Restrictiveness, most first: any blocking status ever reported, RETIRED, not FIDO certified
(latest status NOT_FIDO_CERTIFIED or no certification), then the lower certification level.
"""

from __future__ import annotations

from dataclasses import replace

from keyadmin.mds.errors import DuplicateEntries
from keyadmin.mds.model import CERTIFICATION_LEVELS, Entry, ParsedPayload, SkippedEntry


def restrictiveness(e: Entry) -> tuple[int, int, int, int]:
    """A sort key: greater is more restrictive."""
    level = CERTIFICATION_LEVELS.index(e.certification_level) if e.certification_level else -1
    return (
        int(e.blocked),
        int(e.retired is not None),
        int(e.status == "NOT_FIDO_CERTIFIED" or e.certification_level is None),
        -level,
    )


def resolve(parsed: ParsedPayload, mode: str = "refuse") -> tuple[ParsedPayload, list[str]]:
    """(the payload to store, notes to record). Raises DuplicateEntries when ``mode`` refuses."""
    dups = parsed.duplicates
    if not dups:
        return parsed, []
    listing = "; ".join(f"{k} at entries {', '.join(map(str, v))}" for k, v in sorted(dups.items()))
    if mode != "most-restrictive":
        raise DuplicateEntries(
            f"BLOB no. {parsed.no} lists {len(dups)} model(s) more than once: {listing}",
            no=parsed.no,
            duplicates={k: list(v) for k, v in dups.items()},
        )
    by_index = {e.index: e for e in parsed.entries}
    unparsed = {s.index: s for s in parsed.skipped}
    skipped: list[SkippedEntry] = []
    for key, indexes in dups.items():
        bad = [i for i in indexes if i in unparsed]
        copies = [i for i in indexes if i in by_index]
        if bad:
            # a copy that does not parse cannot be compared: the most restrictive reading is
            # that no copy of this model is usable
            why = f"entry {bad[0]} for {key} does not parse ({unparsed[bad[0]].reason})"
            skipped += [
                _skip(by_index[i], f"{why}; no copy is used (most-restrictive)") for i in copies
            ]
            continue
        # max() keeps the first of equally restrictive copies
        keep = max(copies, key=lambda i: restrictiveness(by_index[i]))
        skipped += [
            _skip(
                by_index[i],
                f"duplicate of entry {keep} for {key}; entry {keep} ({by_index[keep].status}) "
                "is more restrictive and was kept (most-restrictive)",
            )
            for i in copies
            if i != keep
        ]
    dropped = {s.index for s in skipped}
    note = f"duplicate_entries = most-restrictive: {listing}"
    return (
        replace(
            parsed,
            entries=tuple(e for e in parsed.entries if e.index not in dropped),
            skipped=tuple(sorted((*parsed.skipped, *skipped), key=lambda s: s.index)),
        ),
        [note],
    )


def _skip(e: Entry, reason: str) -> SkippedEntry:
    return SkippedEntry(e.index, reason, e.aaguid, e.aaid, e.description)
