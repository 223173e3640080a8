"""The tamper-evident log: every state change appends a row chained by hash to the one before.

hash(n) = SHA-256(hash(n-1) || "\\n" || canonical JSON of row n's fields). The head row
(ka_audit_head) names the newest *sealed* row. ``verify`` recomputes the chain and names the
first row that was edited, deleted, inserted or moved. What the chain cannot show: someone who
can rewrite the whole table and the head together; anchor the head (``keyadmin log anchor``).

Writing a row and chaining it (docs/architecture.md, "The log"):

* PostgreSQL: a writer inserts its row with its seq and empty ``prev_hash``/``hash``
  (*unsealed*). The seq comes from the sequence ``ka_audit_seq_next`` and the writer holds
  the advisory lock (``SEAL_LOCK_CLASS``, seq) until its transaction ends, so a sealer can
  tell a seq still being written from one whose transaction rolled back. ``seal`` (the
  server function ``ka_audit_seal``, migration 0006) chains the rows after the head in seq
  order under the head row's lock, fills a seq whose writer rolled back with a
  ``log.skipped`` row, stops before a seq still being written, and moves the head. Sealing
  is a pure function of the committed rows, so a seal lost in a crash is redone identically.
* SQLite: one write lock for the whole database, so a writer chains its row as it writes it
  (``insert_sealed``): its seq is the head's + 1.

``append`` (the ORM path) writes and chains in the caller's transaction. The step-up hot path
(store/stepup.py) sends its commit and the seal in one round trip on PostgreSQL: two step-ups
never hold one lock across their commits, and an acknowledged step-up's row is always
chained. ``verify`` recomputes every hash here, in Python, whoever computed it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring as _json_str
from typing import TYPE_CHECKING, Any

from keyadmin.store.db import DatabaseError, dbapi_sql

if TYPE_CHECKING:
    from sqlmodel import Session


GENESIS = "0" * 64
#: ``prev_hash`` and ``hash`` of a row written but not sealed yet
UNSEALED = ""
#: PostgreSQL: the advisory lock (SEAL_LOCK_CLASS, seq) a writer holds while its row's seq is
#: taken but not committed (two-key form, apart from any one-key advisory lock)
SEAL_LOCK_CLASS = 0x4B41
#: the row that takes the place of a seq whose writer rolled back (fixed content: a seal
#: redone after a crash writes the same row)
SKIPPED_ACTION = "log.skipped"
SKIPPED_DETAILS = '{"reason":"the transaction that took this seq did not commit"}'


def _canonical(fields: dict[str, Any]) -> str:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def utc_text(at: datetime) -> str:
    if at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    return at.isoformat(timespec="microseconds")


def body_parts(
    at: str, actor: str, action: str, subject: str | None, details: str
) -> tuple[str, str]:
    """A row's canonical text before and after its seq (the database that assigns the seq
    under its own lock hashes ``prev + "\\n" + before + seq + after``, as ``row_hash_text``)."""
    subj = "null" if subject is None else _json_str(subject)
    return (
        f'{{"action":{_json_str(action)},"actor":{_json_str(actor)},"at":{_json_str(at)},'
        f'"details":{_json_str(details)},"seq":',
        f',"subject":{subj}}}',
    )


def _canonical_row(
    seq: int, at: str, actor: str, action: str, subject: str | None, details: str
) -> str:
    """``_canonical`` of a row's six fields, character for character, without building and
    walking a dict: the keys in sorted order, each string escaped by the same function
    ``json.dumps(..., ensure_ascii=False)`` uses (tests/unit/test_store_audit.py compares
    the two on generated rows)."""
    before, after = body_parts(at, actor, action, subject, details)
    return f"{before}{int(seq)}{after}"


def row_hash(
    prev: str, seq: int, at: datetime, actor: str, action: str, subject: str | None, details: str
) -> str:
    return row_hash_text(prev, seq, utc_text(at), actor, action, subject, details)


def row_hash_text(
    prev: str, seq: int, at: str, actor: str, action: str, subject: str | None, details: str
) -> str:
    """``row_hash`` with the time already as ``utc_text`` gives it (naive UTC, 'T', µs)."""
    body = _canonical_row(seq, at, actor, action, subject, details)
    return hashlib.sha256(f"{prev}\n{body}".encode()).hexdigest()


@dataclass(frozen=True)
class LogEntry:
    seq: int
    at: str
    actor: str
    action: str
    subject: str | None
    details: dict[str, Any]
    hash: str


@dataclass(frozen=True)
class LogVerification:
    ok: bool
    rows_checked: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str | None = None
    #: rows after the head not sealed yet (being written, or their writer stopped between its
    #: commit and the seal; the next write seals them)
    unsealed: int = 0


#: session.info key of the notifications a transaction sends once it has committed
PENDING_NOTIFICATIONS = "keyadmin_notify"


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    subject: str | None,
    details: dict[str, Any],
    at: datetime | None = None,
) -> LogEntry:
    """Append one row inside the caller's transaction (so it commits or rolls back with it).

    PostgreSQL: take the head's lock, the seq from the sequence and the writer's lock on it,
    insert the row unsealed, then ``seal`` up to and including it. SQLite: ``insert_sealed``
    (the transaction holds the one write lock)."""
    from keyadmin.store.models import AuditHeadRow, AuditRow

    conn = session.connection()
    cur: Any = conn.connection.cursor()  # the transaction's own DBAPI cursor (driver values)
    now = (at or datetime.now(UTC)).astimezone(UTC)
    text = _canonical(details)
    if conn.dialect.name == "postgresql":
        cur.execute(_HEAD_LOCKED)
        cur.fetchone()
        cur.execute(_NEXT_SEQ)
        (seq,) = cur.fetchone()
        cur.execute(_q(_WRITER_LOCK, True), {"cls": SEAL_LOCK_CLASS, "seq": seq})
        cur.execute(_q(_INSERT_ROW, True), {"seq": seq, "at": now, "actor": actor,
                    "action": action, "subject": subject, "details": text,
                    "prev": UNSEALED, "hash": UNSEALED})  # fmt: skip
        while True:
            sealed = seal(cur, upto=seq)
            if sealed.mine is not None:
                break
            if sealed.waiting_on is None:  # not possible: this transaction sees its own row
                raise RuntimeError(f"the log could not be sealed up to row {seq}")
            wait_for_writer(cur, sealed.waiting_on)
        digest = sealed.mine[1]
    else:
        seq, digest = insert_sealed(cur, at=now, actor=actor, action=action, subject=subject,
                                    details=text)  # fmt: skip
    for obj in list(session.identity_map.values()):  # written behind the ORM's back
        if isinstance(obj, AuditHeadRow | AuditRow):
            session.expire(obj)
    from keyadmin.notify import from_log_row

    announced = from_log_row(action, subject, details, seq)
    if announced is not None:  # sent after the commit (keyadmin.store.db.transaction)
        session.info.setdefault(PENDING_NOTIFICATIONS, []).append(announced)
    return LogEntry(seq, utc_text(now), actor, action, subject, details, digest)


#: PostgreSQL: the sequence the seqs of log rows come from (migration 0005)
SEQUENCE = "ka_audit_seq_next"
# The statements (``:name`` parameters; ``_q`` gives the driver's spelling).
_HEAD = "SELECT seq, hash FROM ka_audit_head WHERE id = 1"
_HEAD_LOCKED = _HEAD + " FOR UPDATE"
_NEXT_SEQ = "SELECT nextval('ka_audit_seq_next')"
_WRITER_LOCK = "SELECT pg_advisory_xact_lock(:cls, :seq)"
_WAIT_WRITER = "SELECT pg_advisory_lock_shared(:cls, :seq), pg_advisory_unlock_shared(:cls, :seq)"
_INSERT_ROW = (
    "INSERT INTO ka_audit (seq, at, actor, action, subject, details, prev_hash, hash) "
    "VALUES (:seq, :at, :actor, :action, :subject, :details, :prev, :hash)"
)
#: PostgreSQL: the seal, in the server (migration 0006: the same chaining as ``seal`` below,
#: one round trip; ``ka_audit_row_hash`` is ``row_hash_text`` in SQL)
_SEAL_PG = (
    "SELECT head_seq, head_hash, waiting_on, mine_prev, mine_hash "
    "FROM ka_audit_seal(CAST(:batch AS integer), CAST(:lazy AS boolean), "
    "CAST(:mine AS integer), CAST(:cls AS integer), CAST(:skipped AS text))"
)
#: SQLSTATE of ``ka_audit_seal``'s refusal (a row after the head sealed already)
UNSEALABLE_SQLSTATE = "KA001"
_MOVE_HEAD = "UPDATE ka_audit_head SET seq = :seq, hash = :hash WHERE id = 1"


_q = dbapi_sql


@dataclass(frozen=True)
class Sealed:
    """Where ``seal`` left the head; ``waiting_on``: a seq still being written (PostgreSQL),
    which sealing stopped before."""

    head_seq: int
    head_hash: str
    waiting_on: int | None = None
    #: the row ``upto`` as sealed (prev_hash, hash), once it is (by this seal or before it)
    mine: tuple[str, str] | None = None


class Unsealable(DatabaseError):
    """A row after the head cannot be chained: unreadable, or sealed already (the head was
    moved back over it). Nothing after it is chained until someone looks (log verify)."""


def seal(cur: Any, *, upto: int | None = None, lazy: bool = False, batch: int = 500) -> Sealed:
    """PostgreSQL: chain the committed rows after the head, in seq order, and move the head,
    inside the caller's transaction (``ka_audit_seal``, migration 0006: one server call).

    Takes the head row's lock. A seq with no row is a gap: while its writer still holds the
    advisory lock (``SEAL_LOCK_CLASS``, seq) the seal stops before it (``waiting_on``); once
    the lock is free and the row is still missing, its transaction rolled back and a
    ``log.skipped`` row takes its place (its writer, if it was only about to insert, then
    fails on the seq and retries with a new one). A row after the head that carries a hash
    already (the head was moved back over it) is refused: ``Unsealable``. With ``upto``,
    ``Sealed.mine`` is that row's (prev_hash, hash) once it is sealed, by this call or an
    earlier one. ``lazy``: this transaction's commit does not wait for the disk (a lost seal
    is redone identically).
    """
    sql, params = seal_statement(upto=upto, lazy=lazy, batch=batch)
    try:
        cur.execute(sql, params)
        row = cur.fetchone()
    except Exception as e:
        raise_if_unsealable(e)
        raise
    return sealed_from_row(row)


def insert_sealed(
    cur: Any,
    *,
    at: datetime,
    actor: str,
    action: str,
    subject: str | None,
    details: str,
    head: tuple[int, str] | None = None,
) -> tuple[int, str]:
    """SQLite: write a row already chained, and move the head; (seq, hash). The caller holds
    the one write lock (BEGIN IMMEDIATE), so no other row can be written between the head's
    read (or ``head``, read by the caller under that lock) and this row: its seq is the
    head's + 1, its hash follows the head's. A row already there (the log was edited) makes
    the insert fail on the seq: nothing is written."""
    from keyadmin.store.db import sqlite_time

    head_seq, head_hash = head if head is not None else cur.execute(_HEAD).fetchone()
    seq = int(head_seq) + 1
    digest = row_hash(head_hash, seq, at, actor, action, subject, details)
    cur.execute(_q(_INSERT_ROW, False), {"seq": seq, "at": sqlite_time(at), "actor": actor,
                "action": action, "subject": subject, "details": details,
                "prev": head_hash, "hash": digest})  # fmt: skip
    cur.execute(_q(_MOVE_HEAD, False), {"seq": seq, "hash": digest})
    return seq, digest


def seal_statement(
    *, upto: int | None = None, lazy: bool = False, batch: int = 500, upto_last_taken: bool = False
) -> tuple[str, dict[str, object]]:
    """PostgreSQL: the statement ``seal`` runs, and its parameters (psycopg's spelling), for a
    caller that sends it together with other statements (store/stepup.py). With
    ``upto_last_taken`` the row is the one whose seq this session took last from the
    sequence (``currval``: a write sent in the same round trip)."""
    sql = _SEAL_PG.replace(":mine", "currval('ka_audit_seq_next')") if upto_last_taken else _SEAL_PG
    params: dict[str, object] = {"batch": int(batch), "lazy": lazy, "cls": SEAL_LOCK_CLASS,
                                 "skipped": SKIPPED_DETAILS}  # fmt: skip
    if not upto_last_taken:
        params["mine"] = upto or 0
    return _q(sql, True), params


def sealed_from_row(row: Any) -> Sealed:
    """``Sealed`` from the row of ``seal_statement``."""
    head_seq, head_hash, waiting_on, mine_prev, mine_hash = row
    if not isinstance(head_seq, int) or not isinstance(head_hash, str):
        raise DatabaseError(
            "the log's seal returned no head (the function ka_audit_seal was changed)",
            hint="the registry is being edited outside keyadmin: run keyadmin log verify",
        )
    mine = (str(mine_prev), mine_hash) if isinstance(mine_hash, str) else None
    return Sealed(head_seq, head_hash, waiting_on, mine=mine)


def raise_if_unsealable(error: BaseException) -> None:
    """The server's refusal to seal (SQLSTATE KA001) raised as ``Unsealable``; anything else
    is left to the caller."""
    if getattr(error, "sqlstate", None) != UNSEALABLE_SQLSTATE:
        return
    diag = getattr(error, "diag", None)
    text = getattr(diag, "message_primary", None) or str(error)
    raise Unsealable(text, hint="run: keyadmin log verify") from error


def wait_for_writer(cur: Any, seq: int, *, fetch: bool = True) -> None:
    """PostgreSQL: wait until the transaction writing row ``seq`` has ended (``fetch`` False:
    in a pipeline, the statement only sent)."""
    cur.execute(_q(_WAIT_WRITER, True), {"cls": SEAL_LOCK_CLASS, "seq": seq})
    if fetch:
        cur.fetchone()


def check_writable(url: str) -> None:
    """Open the log as ``append`` would and lock its head row, without writing: proof, before
    an action that cannot be undone, that its row can be written. Anything in the way (a file
    that is no database, a directory that cannot be made, a server that refuses) raises
    DatabaseError."""
    from sqlalchemy.exc import SQLAlchemyError
    from sqlmodel import select

    from keyadmin.store.db import DatabaseError, transaction
    from keyadmin.store.models import AuditHeadRow

    try:
        with transaction(url) as session:
            session.exec(select(AuditHeadRow).where(AuditHeadRow.id == 1).with_for_update()).one()
    except DatabaseError:
        raise
    except (SQLAlchemyError, OSError) as e:
        raise DatabaseError(f"{type(e).__name__}: {e}".splitlines()[0][:300]) from e


def entries(
    session: Session,
    since: datetime | None = None,
    action: str | None = None,
    limit: int | None = None,
) -> list[LogEntry]:
    from sqlmodel import select

    from keyadmin.store.models import AuditRow

    q = select(AuditRow).order_by(AuditRow.seq)  # type: ignore[arg-type]
    if since is not None:
        q = q.where(AuditRow.at >= since.astimezone(UTC))
    if action is not None:
        q = q.where(AuditRow.action == action)
    rows = session.exec(q).all()
    if limit is not None:
        rows = rows[-limit:]
    return [
        LogEntry(r.seq, utc_text(r.at), r.actor, r.action, r.subject, json.loads(r.details), r.hash)
        for r in rows
    ]


def same(stored: Any, expected: str) -> bool:
    """Constant-time equality of a stored hash with the expected one; a value of the wrong
    type (NULL, a number, non-ASCII text put there by an edit) is simply not equal."""
    return isinstance(stored, str) and hmac.compare_digest(stored.encode(), expected.encode())


def recompute(
    prev: str, seq: Any, at: Any, actor: Any, action: Any, subject: Any, details: Any
) -> str:
    """A row's hash from its stored values as the driver returns them (``at`` as text or a
    datetime), or "" when an edit left a field unusable."""
    try:
        when = datetime.fromisoformat(at) if isinstance(at, str) else at
        return row_hash(prev, seq, when, actor, action, subject, details)
    except (TypeError, ValueError, AttributeError, UnicodeError, OverflowError):
        return ""


def _recomputed(prev: str, r: Any) -> str:
    return recompute(prev, r.seq, r.at, r.actor, r.action, r.subject, r.details)


def verify(
    session: Session,
    *,
    anchor: tuple[int, str] | None = None,
    rows: list[tuple[int, str, Any, Any]] | None = None,
) -> LogVerification:
    """Recompute the chain from the first row; stop at the first row that does not hold.

    ``anchor`` (seq, hash): the log must extend it (its row ``seq`` has that hash). ``rows``,
    when given, receives (seq, action, subject, details) of every row that held, for
    ``state.replay``.
    """
    from sqlmodel import select

    from keyadmin.store.models import AuditHeadRow

    head = session.exec(select(AuditHeadRow).where(AuditHeadRow.id == 1)).one()
    prev, expected_seq, checked = GENESIS, 1, 0
    problem: tuple[int, str] | None = None
    # The stored values as the driver returns them (no ORM type processing): a field edited
    # into something unreadable is then a row that does not verify, not an exception.
    result = session.connection().exec_driver_sql(
        "SELECT seq, at, actor, action, subject, details, prev_hash, hash FROM ka_audit "
        "ORDER BY seq"
    )
    unsealed = 0
    for r in result:
        if unsealed or (
            expected_seq == head.seq + 1
            and isinstance(r.seq, int)
            and r.seq > head.seq
            and r.prev_hash == UNSEALED
            and r.hash == UNSEALED
        ):
            # The unsealed tail: the rows after the head (a seq still being written may be
            # missing between them), none of them sealed.
            if r.prev_hash != UNSEALED or r.hash != UNSEALED:
                problem = (r.seq, f"row {r.seq} is sealed after an unsealed row (inserted)")
                return LogVerification(False, checked, head.seq, head.hash, *problem)
            if rows is not None:
                rows.append((r.seq, r.action, r.subject, r.details))
            unsealed += 1
            continue
        if not isinstance(r.seq, int) or isinstance(r.seq, bool):
            problem = (expected_seq, f"row {expected_seq} was edited (its seq is {r.seq!r})")
        elif r.seq != expected_seq:
            if r.seq > expected_seq:
                problem = (expected_seq, f"row {expected_seq} is missing (deleted)")
            else:
                problem = (r.seq, f"row {r.seq} appears out of order")
        elif not same(r.prev_hash, prev):
            problem = (r.seq, f"row {r.seq} does not follow row {r.seq - 1} (inserted or moved)")
        elif not same(_recomputed(prev, r), r.hash):
            problem = (r.seq, f"row {r.seq} was edited after it was written")
        elif anchor is not None and r.seq == anchor[0] and not same(r.hash, anchor[1]):
            problem = (
                r.seq,
                f"row {r.seq} is not the row that was anchored (the log was rewritten up to "
                "or past the anchor)",
            )
        if problem is not None:
            return LogVerification(False, checked, head.seq, head.hash, problem[0], problem[1])
        if rows is not None:
            rows.append((r.seq, r.action, r.subject, r.details))
        prev, expected_seq, checked = r.hash, expected_seq + 1, checked + 1
    if anchor is not None and checked < anchor[0]:
        return LogVerification(
            False,
            checked,
            head.seq,
            head.hash,
            checked + 1,
            f"the log ends at row {checked} but the anchor names row {anchor[0]} "
            "(rows were deleted from the end, or the log was replaced)",
        )
    if head.seq != checked or not same(head.hash, prev):
        return LogVerification(
            False,
            checked,
            head.seq,
            head.hash,
            checked + 1,
            f"the log ends at row {checked} but its head says row {head.seq} "
            "(rows were deleted from the end, or the head was edited)",
        )
    return LogVerification(True, checked, head.seq, head.hash, unsealed=unsealed)


def record(
    url: str, *, actor: str, action: str, subject: str | None, details: dict[str, Any]
) -> LogEntry:
    """Append one row in its own transaction (for events with no other registry write)."""
    from keyadmin.store.db import transaction

    with transaction(url) as session:
        return append(session, actor=actor, action=action, subject=subject, details=details)
