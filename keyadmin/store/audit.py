"""The tamper-evident log: every state change appends a row chained by hash to the one before.

hash(n) = SHA-256(hash(n-1) || "\\n" || canonical JSON of row n's fields). The head row
(ka_audit_head) is updated in the same transaction and locked while appending, so
concurrent writers never fork the chain. ``verify`` recomputes the chain and names the first
row that was edited, deleted, inserted or moved. What the chain cannot show: someone who can
rewrite the whole table and the head together; export the head hash (``keyadmin log verify
--json``) to somewhere else to anchor it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring as _json_str
from typing import Any

GENESIS = "0" * 64


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


#: session.info key of the notifications a transaction sends once it has committed
PENDING_NOTIFICATIONS = "keyadmin_notify"


def append(
    session: Any,
    *,
    actor: str,
    action: str,
    subject: str | None,
    details: dict[str, Any],
    at: datetime | None = None,
) -> LogEntry:
    """Append one row inside the caller's transaction (so it commits or rolls back with it)."""
    from sqlmodel import select

    from keyadmin.store.models import AuditHeadRow, AuditRow

    head = session.exec(select(AuditHeadRow).where(AuditHeadRow.id == 1).with_for_update()).one()
    now = (at or datetime.now(UTC)).astimezone(UTC)
    seq = head.seq + 1
    text = _canonical(details)
    digest = row_hash(head.hash, seq, now, actor, action, subject, text)
    session.add(
        AuditRow(
            seq=seq,
            at=now,
            actor=actor,
            action=action,
            subject=subject,
            details=text,
            prev_hash=head.hash,
            hash=digest,
        )
    )
    head.seq, head.hash = seq, digest
    session.add(head)
    session.flush()
    from keyadmin.notify import from_log_row

    announced = from_log_row(action, subject, details, seq)
    if announced is not None:  # sent after the commit (keyadmin.store.db.transaction)
        session.info.setdefault(PENDING_NOTIFICATIONS, []).append(announced)
    return LogEntry(seq, utc_text(now), actor, action, subject, details, digest)


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
    session: Any, since: datetime | None = None, action: str | None = None, limit: int | None = None
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
    session: Any,
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
    for r in result:
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
    return LogVerification(True, checked, head.seq, head.hash)


def record(
    url: str, *, actor: str, action: str, subject: str | None, details: dict[str, Any]
) -> LogEntry:
    """Append one row in its own transaction (for events with no other registry write)."""
    from keyadmin.store.db import transaction

    with transaction(url) as session:
        return append(session, actor=actor, action=action, subject=subject, details=details)
