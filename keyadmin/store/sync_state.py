"""Registry side of sync: the watermark per target, changed credentials, counters pulled back.

"Changed since the last sync" is ``ka_credential.change_seq > last_seq``: ``change_seq`` is
the audit-log seq of the row's last change, and the log is strictly ordered. The reads here
are SQLAlchemy Core selects (no ORM objects): a run's cost follows the number of changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NamedTuple

from keyadmin.store import audit, state

if TYPE_CHECKING:
    from sqlalchemy import Select
    from sqlmodel import Session

#: One row of :func:`_cred_select`: id, credential id, user name, user handle, public key,
#: counter, transports (JSON), backup flags, status, created, last used, change_seq, AAGUID,
#: nickname (times as a driver returns them: datetime, or ISO text from SQLite's cursor).
CredRow = tuple[
    int, bytes, str, bytes, bytes, int, "str | None", bool, bool, str,
    "datetime | str", "datetime | str | None", int, "str | None", "str | None",
]  # fmt: skip

ACTIVE = "active"
#: Registry credentials read per batch (a transaction each) when every one is compared.
BATCH = 5000


class RegistryCredential(NamedTuple):
    """What sync needs of one registry credential. A NamedTuple: immutable, and cheap to make
    (a first sync makes one per credential; a frozen dataclass cost 60% more per record)."""

    id: int
    credential_id: bytes
    user_name: str
    user_handle: bytes
    public_key: bytes
    sign_count: int
    transports: tuple[str, ...]
    backup_eligible: bool
    backed_up: bool
    status: str
    created_at: datetime
    last_used_at: datetime | None
    change_seq: int
    aaguid: str = ""
    nickname: str | None = None


@dataclass(frozen=True)
class SyncState:
    target: str
    target_label: str
    last_seq: int
    last_run_at: datetime | None
    details: dict[str, object]


@dataclass(frozen=True)
class CounterPull:
    """The application saw a higher counter than the registry holds."""

    registry_id: int
    credential_id: bytes
    registry_count: int
    app_count: int
    app_last_used_at: datetime | None


def target_key(label: str) -> str:
    """A stable 64-character key for a target (its redacted URL and table)."""
    return hashlib.sha256(label.encode("utf-8")).hexdigest()


def load_state(session: Session, target: str) -> SyncState | None:
    from keyadmin.store.models import SyncStateRow

    row = session.get(SyncStateRow, target)
    if row is None:
        return None
    return SyncState(
        row.target, row.target_label, row.last_seq, row.last_run_at, json.loads(row.details)
    )


def save_state(
    session: Session,
    *,
    target: str,
    label: str,
    last_seq: int,
    details: dict[str, object],
    at: datetime,
) -> None:
    from keyadmin.store.models import SyncStateRow

    row = session.get(SyncStateRow, target)
    if row is None:
        row = SyncStateRow(target=target, target_label=label)
    row.target_label = label
    row.last_seq = last_seq
    row.last_run_at = at
    row.details = json.dumps(details, sort_keys=True)
    session.add(row)
    session.flush()


def head_seq(session: Session) -> int:
    from sqlmodel import select

    from keyadmin.store.models import AuditHeadRow

    head = session.exec(select(AuditHeadRow).where(AuditHeadRow.id == 1)).first()
    return int(head.seq) if head is not None else 0


def _cred_select() -> Select[CredRow]:
    from sqlalchemy import select

    from keyadmin.store.models import CredentialRow, UserRow

    c = CredentialRow.__table__.c  # type: ignore[attr-defined]
    u = UserRow.__table__.c  # type: ignore[attr-defined]
    return select(
        c.id,
        c.credential_id,
        u.name,
        u.user_handle,
        c.public_key,
        c.sign_count,
        c.transports,
        c.backup_eligible,
        c.backed_up,
        c.status,
        c.created_at,
        c.last_used_at,
        c.change_seq,
        c.aaguid,
        c.nickname,
    ).join_from(CredentialRow.__table__, UserRow.__table__, c.user_id == u.id)  # type: ignore[attr-defined]


def _record(r: CredRow) -> RegistryCredential:
    return RegistryCredential(
        id=r[0],
        credential_id=bytes(r[1]),
        user_name=r[2],
        user_handle=bytes(r[3]),
        public_key=bytes(r[4]),
        sign_count=int(r[5]),
        transports=_transports(r[6]),
        backup_eligible=bool(r[7]),
        backed_up=bool(r[8]),
        status=r[9],
        created_at=_aware(r[10]),
        last_used_at=_aware(r[11]) if r[11] is not None else None,
        change_seq=int(r[12]),
        aaguid=r[13] or "",
        nickname=r[14],
    )


_TRANSPORTS: dict[str, tuple[str, ...]] = {}


def _transports(text: str | None) -> tuple[str, ...]:
    key = text or "[]"
    found = _TRANSPORTS.get(key)
    if found is None:
        found = tuple(json.loads(key))
        if len(_TRANSPORTS) < 1000:
            _TRANSPORTS[key] = found
    return found


def _aware(value: datetime | str) -> datetime:
    if isinstance(value, str):  # SQLite through the driver's own cursor
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _fetch(session: Session, query: Select[CredRow]) -> Iterator[list[RegistryCredential]]:
    """Run ``query`` (no user input: only integers rendered as literals by SQLAlchemy's
    compiler for this dialect) on the driver's own cursor, in batches of records.

    The driver's cursor because a first sync reads every credential: SQLAlchemy's per-row
    processing would cost as much as the rest of the run."""
    conn = session.connection()
    text = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    raw = conn.connection.dbapi_connection
    assert raw is not None  # a connection checked out of the pool
    cur = raw.cursor()
    try:
        cur.execute(text)
        while chunk := cur.fetchmany(BATCH):
            yield [_record(r) for r in chunk]
    finally:
        cur.close()


def changed_since(session: Session, last_seq: int, upto_seq: int) -> list[RegistryCredential]:
    """Credentials whose last change has seq in (last_seq, upto_seq] (uses the index).

    From 0 (a first or full run) every credential up to ``upto_seq`` counts, including rows
    migration 0002 left at change_seq 0 (enrolled before change_seq existed). For a run's
    changes (small); every credential is read in batches by :func:`iter_all`."""
    from keyadmin.store.models import CredentialRow

    c = CredentialRow.__table__.c  # type: ignore[attr-defined]
    lower = int(last_seq) if int(last_seq) > 0 else -1
    q = _cred_select().where(c.change_seq > lower, c.change_seq <= int(upto_seq)).order_by(c.id)
    return [rec for batch in _fetch(session, q) for rec in batch]


def iter_all(registry_url: str, upto_seq: int) -> Iterator[list[RegistryCredential]]:
    """Every credential whose last change has seq <= ``upto_seq``, in batches of BATCH by
    registry id (keyset pagination on the primary key): each batch is read in a short
    transaction of its own, so a long run holds no registry lock and no whole-table list.

    A credential changed while the batches are read gets a seq above ``upto_seq`` and is
    left to the next run, which starts from ``upto_seq``. (The bound is applied here, not in
    the statement, so the statement walks the primary key.)"""
    from keyadmin.store.db import transaction
    from keyadmin.store.models import CredentialRow

    c = CredentialRow.__table__.c  # type: ignore[attr-defined]
    after = -1
    while True:
        # by the primary key alone: with the change_seq bound in the statement, a planner may
        # take the change_seq index and sort every row for each batch
        q = _cred_select().where(c.id > after).order_by(c.id).limit(BATCH)
        with transaction(registry_url) as s:
            read = [rec for part in _fetch(s, q) for rec in part]
        batch = [rec for rec in read if rec.change_seq <= upto_seq]
        if batch:
            yield batch
        if len(read) < BATCH:
            return
        after = read[-1].id


def by_credential_ids(session: Session, ids: Sequence[bytes]) -> dict[bytes, RegistryCredential]:
    from keyadmin.store.models import CredentialRow

    c = CredentialRow.__table__.c  # type: ignore[attr-defined]
    out: dict[bytes, RegistryCredential] = {}
    ids = list(ids)
    for i in range(0, len(ids), 1000):
        for r in session.execute(_cred_select().where(c.credential_id.in_(ids[i : i + 1000]))):
            rec = _record(r)
            out[rec.credential_id] = rec
    return out


def pull_counters(
    session: Session,
    pulls: Sequence[CounterPull],
    *,
    actor: str,
    target_label: str,
    authority: dict[str, object] | None = None,
) -> int:
    """Raise registry counters to what the application saw; log and mark each changed row.

    Compare-and-set: ``sign_count`` only goes up (``WHERE sign_count < :new``). Returns the
    number of rows raised. One audit entry per batch of up to 200 credentials; every row
    raised gets that entry's seq as its ``change_seq``.
    """
    from sqlalchemy import update

    from keyadmin.store.models import CredentialRow

    t = CredentialRow.__table__  # type: ignore[attr-defined]
    raised = 0
    for i in range(0, len(pulls), 200):
        batch = pulls[i : i + 200]
        now = datetime.now(UTC)
        moved: list[tuple[int, bytes]] = []
        for p in batch:
            values: dict[str, object] = {"sign_count": p.app_count, "updated_at": now}
            if p.app_last_used_at is not None:
                values["last_used_at"] = p.app_last_used_at
            res = session.execute(
                update(t)
                .where(t.c.id == p.registry_id, t.c.sign_count < p.app_count)
                .values(**values)
            )
            if getattr(res, "rowcount", 0):  # a CursorResult for an UPDATE
                moved.append((p.registry_id, p.credential_id))
        if not moved:
            continue
        raised += len(moved)
        ids = {cid for _, cid in moved}
        entry = audit.append(
            session,
            actor=actor,
            action="sync.counter-pulled",
            subject=target_label,
            details={
                "credentials": [
                    {
                        "credential": p.credential_id.hex(),
                        "from": p.registry_count,
                        "to": p.app_count,
                    }
                    for p in batch
                    if p.credential_id in ids
                ],
                "states": state.read_states(session, [cid for _, cid in moved]),
                **({"authority": authority} if authority is not None else {}),
            },
        )
        session.execute(
            update(t).where(t.c.id.in_([rid for rid, _ in moved])).values(change_seq=entry.seq)
        )
    session.flush()
    return raised
