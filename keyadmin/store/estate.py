"""Whole-estate reads on the registry, for audit and the fleet reports.

* :func:`iter_audit_rows` streams every credential to re-evaluate with its stored evidence
  bytes (one Core query, no ORM objects).
* :func:`recorded_firmware` reads the firmware version recorded with a credential's decision
  (``decision_json["device"]["firmware"]``) when enrolment recorded one.

The bulk writers that tests and benchmarks use to make large estates live in
tests/support/estate.py (they are no part of keyadmin).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect
    from sqlalchemy.engine.interfaces import DBAPIConnection

    Reader = tuple[DBAPIConnection, Dialect]
    """What ``keyadmin.store.db.reading`` yields: a read-only snapshot's connection, its dialect."""

AuditRow = tuple[int, bytes, bytes]
"""(registry id, attestation object, client data JSON)"""


def id_bounds(reader: Reader) -> tuple[int, int] | None:
    """(smallest, largest) registry id of any credential, None when there is none (the
    primary key answers both: no scan). ``reader``: ``keyadmin.store.db.reading``'s pair."""
    from sqlalchemy import func, select

    from keyadmin.store.models import CredentialRow

    c = CredentialRow.__table__.c  # type: ignore[attr-defined]
    for lo, hi in _rows(reader, select(func.min(c.id), func.max(c.id))):
        if lo is not None:
            return int(lo), int(hi)
    return None


def iter_audit_rows(
    reader: Reader, statuses: Sequence[str], ids: tuple[int, int] | None = None
) -> Iterator[AuditRow]:
    """Every credential in ``statuses`` with its evidence bytes (no particular order); with
    ``ids`` = (first, last), only those whose registry id lies in that closed range.
    ``reader``: ``keyadmin.store.db.reading``'s pair.

    Only what grouping needs is read; names and ids of the few credentials that fail come
    from :func:`credential_details` afterwards.
    """
    from sqlalchemy import select

    from keyadmin.store.models import CredentialRow, EvidenceRow

    c = CredentialRow.__table__.c  # type: ignore[attr-defined]
    e = EvidenceRow.__table__.c  # type: ignore[attr-defined]
    q = (
        select(c.id, e.attestation_object, e.client_data_json)
        .select_from(CredentialRow.__table__)  # type: ignore[attr-defined]
        .outerjoin(EvidenceRow.__table__, e.id == c.evidence_id)  # type: ignore[attr-defined]
        .where(c.status.in_(list(statuses)))
    )
    if ids is not None:
        q = q.where(c.id.between(int(ids[0]), int(ids[1])))
    for r in _rows(reader, q):
        yield (r[0], bytes(r[1] or b""), bytes(r[2] or b""))


def _rows(reader: Reader, q: Any) -> Iterator[Sequence[Any]]:
    """``q``'s rows from the driver's own cursor: SQLAlchemy's per-row result processing
    would cost as much as the read itself at 100,000 rows. The statements have no user input
    (constant statuses and integer ids are rendered as literals by SQLAlchemy's compiler for
    this dialect)."""
    dbapi, dialect = reader
    sql = str(q.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    cur = dbapi.cursor()
    try:
        cur.execute(sql)
        while True:
            chunk = cur.fetchmany(5000)
            if not chunk:
                break
            yield from chunk
    finally:
        cur.close()


def credential_details(session: Any, ids: Sequence[int]) -> dict[int, tuple[bytes, str, str]]:
    """Registry id -> (credential id, user name, AAGUID)."""
    from sqlalchemy import select

    from keyadmin.store.models import CredentialRow, UserRow

    c = CredentialRow.__table__.c  # type: ignore[attr-defined]
    u = UserRow.__table__.c  # type: ignore[attr-defined]
    out: dict[int, tuple[bytes, str, str]] = {}
    ids = list(ids)
    for i in range(0, len(ids), 1000):
        q = (
            select(c.id, c.credential_id, u.name, c.aaguid)
            .join_from(CredentialRow.__table__, UserRow.__table__, c.user_id == u.id)  # type: ignore[attr-defined]
            .where(c.id.in_(ids[i : i + 1000]))
        )
        for rid, cid, name, aaguid in session.execute(q):
            out[int(rid)] = (bytes(cid), name, aaguid)
    return out


def users_below(session: Any, minimum: int) -> list[tuple[str, int]]:
    """(user, active keys) for every user holding fewer than ``minimum`` active keys."""
    from sqlalchemy import case, func, select

    from keyadmin.store.models import CredentialRow, UserRow

    c = CredentialRow.__table__.c  # type: ignore[attr-defined]
    u = UserRow.__table__.c  # type: ignore[attr-defined]
    active = func.coalesce(func.sum(case((c.status == "active", 1), else_=0)), 0)
    q = (
        select(u.name, active)
        .select_from(UserRow.__table__.outerjoin(CredentialRow.__table__, c.user_id == u.id))  # type: ignore[attr-defined]
        .group_by(u.name)
        .having(active < minimum)
        .order_by(u.name)
    )
    return [(name, int(n)) for name, n in session.execute(q)]


def recorded_firmware(
    session: Any, aaguids: Sequence[str], statuses: Sequence[str]
) -> dict[int, tuple[str, str | None]]:
    """Registry id -> (AAGUID, firmware recorded at enrolment or None), for these models."""
    from sqlalchemy import select

    from keyadmin.store.models import CredentialRow, EvidenceRow

    if not aaguids:
        return {}
    c = CredentialRow.__table__.c  # type: ignore[attr-defined]
    e = EvidenceRow.__table__.c  # type: ignore[attr-defined]
    q = (
        select(c.id, c.aaguid, e.decision_json)
        .select_from(CredentialRow.__table__)  # type: ignore[attr-defined]
        .outerjoin(EvidenceRow.__table__, e.id == c.evidence_id)  # type: ignore[attr-defined]
        .where(c.aaguid.in_(list(aaguids)), c.status.in_(list(statuses)))
    )
    out: dict[int, tuple[str, str | None]] = {}
    for rid, aaguid, text in session.execute(q):
        try:
            device = json.loads(text or "{}").get("device") or {}
        except ValueError:
            device = {}
        fw = device.get("firmware") if isinstance(device, dict) else None
        out[int(rid)] = (aaguid, str(fw) if fw is not None else None)
    return out
