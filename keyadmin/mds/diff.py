"""What changed between two payloads: added and removed models, and every status change.

Entries are matched by AAGUID, else AAID, else their attestation key identifiers. A status
change is any status report in NEW that OLD did not have (by status and effective date), or a
different latest status; a change that adds a blocking status (REVOKED,
ATTESTATION_KEY_COMPROMISE, …) is flagged ``newly_blocking``; one that adds an MDS 3.1 status
(RETIRED with its sunsetDate, FIPS140_CERTIFIED_Lx) or a sunsetDate is listed in ``lifecycle``.

A payload that lists one model twice is compared through the most restrictive copy (the one
``keyadmin.mds.duplicates`` keeps), and the model is named in ``old_duplicates`` /
``new_duplicates``: a REVOKED second copy is never hidden behind a certified first one.
"""

from __future__ import annotations

from dataclasses import dataclass

from keyadmin.mds.duplicates import restrictiveness
from keyadmin.mds.model import BLOCKING_STATUSES, FIPS_LEVELS, Entry, ParsedPayload


@dataclass(frozen=True)
class EntryRef:
    key: str
    description: str
    status: str


@dataclass(frozen=True)
class StatusChange:
    key: str
    description: str
    old_status: str
    new_status: str
    new_reports: tuple[tuple[str, str | None], ...]  # (status, effectiveDate) not in OLD
    newly_blocking: tuple[str, ...]
    lifecycle: tuple[str, ...] = ()  # e.g. "RETIRED 2026-10-01 (sunset 2027-03-31)"


@dataclass(frozen=True)
class PayloadDiff:
    old_no: int
    new_no: int
    old_next_update: str
    new_next_update: str
    added: tuple[EntryRef, ...]
    removed: tuple[EntryRef, ...]
    status_changes: tuple[StatusChange, ...]
    old_skipped: int
    new_skipped: int
    old_duplicates: tuple[str, ...] = ()
    new_duplicates: tuple[str, ...] = ()

    @property
    def newly_blocking(self) -> tuple[StatusChange, ...]:
        return tuple(c for c in self.status_changes if c.newly_blocking)


def _by_key(p: ParsedPayload) -> dict[str, Entry]:
    out: dict[str, Entry] = {}
    for e in p.entries:
        if e.key not in out or restrictiveness(e) > restrictiveness(out[e.key]):
            out[e.key] = e
    return out


def _lifecycle(en: Entry, seen: set[tuple[str, str | None]]) -> tuple[str, ...]:
    out = []
    for r in en.status_reports:
        if (r.status, r.effective_date) in seen:
            continue
        if r.status == "RETIRED" or r.status in FIPS_LEVELS or r.sunset_date:
            text = f"{r.status} {r.effective_date or ''}".strip()
            if r.sunset_date:
                text += f" (sunset {r.sunset_date})"
            out.append(text)
    return tuple(dict.fromkeys(out))


def _ref(e: Entry) -> EntryRef:
    return EntryRef(e.key, e.description, e.status)


def diff_payloads(old: ParsedPayload, new: ParsedPayload) -> PayloadDiff:
    a, b = _by_key(old), _by_key(new)
    added = tuple(_ref(b[k]) for k in sorted(b.keys() - a.keys()))
    removed = tuple(_ref(a[k]) for k in sorted(a.keys() - b.keys()))
    changes = []
    for k in sorted(a.keys() & b.keys()):
        eo, en = a[k], b[k]
        seen = {(r.status, r.effective_date) for r in eo.status_reports}
        fresh = tuple(
            dict.fromkeys(
                (r.status, r.effective_date)
                for r in en.status_reports
                if (r.status, r.effective_date) not in seen
            )
        )
        if not fresh and eo.status == en.status:
            continue
        blocking = tuple(
            sorted({s for s, _ in fresh if s in BLOCKING_STATUSES} - set(eo.blocking_statuses))
        )
        changes.append(
            StatusChange(
                k, en.description, eo.status, en.status, fresh, blocking, _lifecycle(en, seen)
            )
        )
    return PayloadDiff(
        old_no=old.no,
        new_no=new.no,
        old_next_update=old.next_update,
        new_next_update=new.next_update,
        added=added,
        removed=removed,
        status_changes=tuple(changes),
        old_skipped=len(old.skipped),
        new_skipped=len(new.skipped),
        old_duplicates=tuple(sorted(old.duplicates)),
        new_duplicates=tuple(sorted(new.duplicates)),
    )
