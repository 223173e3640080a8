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
from typing import Literal

from keyadmin.mds.errors import DuplicateEntries
from keyadmin.mds.model import CERTIFICATION_LEVELS, Entry, ParsedPayload, SkippedEntry

DuplicateMode = Literal["refuse", "most-restrictive"]
MODES: tuple[str, ...] = ("refuse", "most-restrictive")


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
    dropped: dict[int, int] = {}  # dropped index -> kept index
    for indexes in dups.values():
        # max() keeps the first of equally restrictive copies
        keep = max(indexes, key=lambda i: restrictiveness(by_index[i]))
        dropped.update({i: keep for i in indexes if i != keep})
    skipped = [
        SkippedEntry(
            index=i,
            reason=f"duplicate of entry {k} for {by_index[i].key}; entry {k} "
            f"({by_index[k].status}) is more restrictive and was kept (most-restrictive)",
            aaguid=by_index[i].aaguid,
            aaid=by_index[i].aaid,
            description=by_index[i].description,
        )
        for i, k in sorted(dropped.items())
    ]
    note = f"duplicate_entries = most-restrictive: {listing}"
    return (
        replace(
            parsed,
            entries=tuple(e for e in parsed.entries if e.index not in dropped),
            skipped=tuple(sorted((*parsed.skipped, *skipped), key=lambda s: s.index)),
        ),
        [note],
    )
