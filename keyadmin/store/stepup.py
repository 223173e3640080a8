"""The step-up tables: challenges, failures, and the counter compare-and-set.

Two paths, on purpose:

* The hot path, ``FinishConnection``: ONE DBAPI connection for a whole ``finish`` (the
  thread's own: ``db.hot_sqlite_connection`` / ``db.hot_postgres_connection``).
  ``load_context`` reads the challenge, its user, the credential, its log row and both
  failure counts in ONE statement (one snapshot). ``commit_success`` then writes in ONE
  transaction: consume the challenge (``used_at IS NULL`` guard), compare-and-set the
  counter (``sign_count < :new`` guard, ``status = 'active'``), take the change's seq
  (stamped as ``change_seq``) and insert its log row. Either guard changing no row rolls
  the whole transaction back and tells the caller which guard refused. On SQLite the row
  is written chained (``audit.insert_sealed``); on PostgreSQL it is written unsealed and the
  server seals it in the same round trip as the COMMIT (docs/architecture.md, "The log").
* ``record_refusal`` is the slow path, through the ORM session of ``db.transaction``:
  it consumes the challenge (when the attempt reached a live one), stores the failure,
  quarantines on a counter violation (``registry.change_status``, which stamps
  ``change_seq``) and writes the audit row (``audit.append``), all in one transaction.

SQLite: writers serialise on ``BEGIN IMMEDIATE`` (one lock for the whole database, so the
audit head is read first and its seq + 1 is set as ``change_seq`` by the compare-and-set
itself). PostgreSQL: the read is one autocommit statement (one snapshot); the write takes
its row locks in the order every writer uses (challenge, then credential) and its seq from
the sequence ``ka_audit_seq_next``. A second UPDATE of the same row waits for the first to
commit, then re-checks its WHERE clause against the committed row, so of N concurrent
compare-and-sets exactly one changes a row.
"""

from __future__ import annotations

import json
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, NamedTuple

from keyadmin.b64 import decode_std
from keyadmin.store import audit
from keyadmin.store.db import (
    DatabaseError,
    dbapi_sql,
    driver_error,
    drop_hot_connection,
    get_engine,
    hot_postgres_connection,
    hot_sqlite_connection,
    sqlite_file,
    sqlite_time,
    writer_lock,
    writer_unlock,
)

if TYPE_CHECKING:
    from sqlmodel import Session


def _utc(value: datetime | str | None) -> datetime | None:
    """A stored time as an aware UTC datetime (SQLite hands back text or naive values)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class ChallengeData(NamedTuple):
    id: str
    user_id: int
    user: str
    user_handle: bytes
    rp_id: str
    origin: str
    action: str
    action_hash: str
    challenge: bytes
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    outcome: str | None


class CredentialData(NamedTuple):
    id: int
    credential_id: bytes
    user_id: int
    public_key: bytes
    sign_count: int
    aaguid: str
    backup_eligible: bool
    status: str
    change_seq: int
    #: the log row ``change_seq`` names (seq, at, actor, action, subject, details, prev_hash,
    #: hash) and the next row's prev_hash: what ``state.check_bound`` checks the row against
    log_row: tuple[Any, ...] | None
    next_prev_hash: Any
    #: the log head's seq (rows after it are written but not sealed yet)
    head_seq: int


class FinishContext(NamedTuple):
    challenge: ChallengeData | None
    credential: CredentialData | None
    failures_credential: int
    failures_user: int


class _Write(NamedTuple):
    """What one successful step-up writes (the same for both databases)."""

    challenge_id: str
    credential_row_id: int
    new_count: int
    counter_checked: bool
    at: datetime
    actor: str
    subject: str
    details_text: str


class CommitOutcome(Enum):
    OK = "ok"
    CHALLENGE_GONE = "challenge-gone"  # used meanwhile (a replay lost the race) or expired
    COUNTER_REFUSED = "counter-refused"  # sign_count not below the new value, or not active


# ----------------------------------------------------------------------------- raw DBAPI access
@contextmanager
def _database_errors(stored: int | None = None) -> Iterator[None]:
    """A failure of the database driver becomes DatabaseError (nothing was stored, or with
    ``stored``: the step-up was, its log row ``stored`` is not sealed yet)."""
    try:
        yield
    except DatabaseError:
        raise
    except Exception as e:
        if driver_error(e):
            if stored is not None:
                raise DatabaseError(
                    f"the step-up is stored but the registry database failed while its log "
                    f"row {stored} was being sealed ({type(e).__name__})",
                    hint="the next write to the log seals it; run: keyadmin log verify",
                ) from e
            raise DatabaseError(
                f"the registry database refused the step-up; nothing was stored "
                f"({type(e).__name__})",
                hint="check that the database is reachable and writable, then retry",
            ) from e
        raise


class _Raw:
    """A DBAPI cursor with ``:name`` parameters on both SQLite and PostgreSQL."""

    def __init__(self, dbapi_conn: Any, postgres: bool) -> None:
        self.conn = dbapi_conn
        self.postgres = postgres
        self.cur = dbapi_conn.cursor()
        self.finished = False

    def rollback(self) -> None:
        """End the transaction with nothing written (the context manager then does nothing)."""
        if self.postgres:
            self.conn.rollback()
        elif self.conn.in_transaction:
            self.cur.execute("ROLLBACK")
        self.finished = True

    def sql(self, text: str) -> str:
        return dbapi_sql(text, self.postgres)

    def time(self, at: datetime) -> Any:
        return at if self.postgres else sqlite_time(at)  # as the ORM stores it

    def execute(self, text: str, params: dict[str, Any] | None = None) -> Any:
        self.cur.execute(self.sql(text), params or {})
        return self.cur

    def rowcount(self, text: str, params: dict[str, Any]) -> int:
        return int(self.execute(text, params).rowcount)


@contextmanager
def _transaction(raw: _Raw, *, write: bool, stored: int | None = None) -> Iterator[_Raw]:
    """One transaction on ``raw``'s connection; rolled back unless the body commits."""
    with _database_errors(stored):
        raw.finished = False
        if not raw.postgres:
            raw.cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield raw
        except BaseException:
            raw.rollback()
            raise
        if raw.finished:
            pass
        elif raw.postgres:
            raw.conn.commit()
        else:
            raw.cur.execute("COMMIT")


@contextmanager
def _raw(url: str, *, write: bool) -> Iterator[_Raw]:
    """One transaction on a pooled DBAPI connection; rolled back unless the body commits."""
    with FinishConnection(url) as fc, _transaction(fc.raw, write=write) as raw:
        yield raw


class FinishConnection:
    """ONE DBAPI connection for a whole ``finish``: the reads, then the commit. It is the
    thread's own hot connection (SQLite: ``db.hot_sqlite_connection``; PostgreSQL:
    ``db.hot_postgres_connection``, in autocommit), kept between step-ups: a pool checkout
    with its pre-ping costs a round trip per step-up.

    Between the reads and the write the connection is idle (no transaction open), so the
    checks and the signature run without holding any lock. ``close`` leaves it idle for the
    thread's next step-up; ``finish`` closes it before a refusal is recorded (through its own
    session). A database failure drops it (``failed``): the next step-up in that thread opens
    a new one. A PostgreSQL connection found dead at the first read (the server restarted
    since the thread's last step-up) is replaced once, there: nothing was written yet.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.postgres = False
        self.reused = False
        with _database_errors():
            conn: Any = hot_sqlite_connection(url)
            self.hot = conn is not None
            if conn is None:
                conn, self.reused = hot_postgres_connection(url)
                self.postgres = self.hot = conn is not None
            if conn is None:  # an in-memory SQLite database: the engine's own connection
                conn = get_engine(url).raw_connection()
        self._conn: Any = conn
        try:
            self.raw = _Raw(self._conn, self.postgres)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Give the connection back: to this thread, idle (or to the pool). A hot connection
        that cannot be brought back to idle is dropped, never reused."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if not self.hot:
            conn.close()
            return
        try:
            self.raw.cur.close()
            if self.postgres:
                if conn.info.transaction_status != 0:  # not IDLE
                    conn.rollback()
            elif conn.in_transaction:
                conn.execute("ROLLBACK")
        except Exception:  # noqa: BLE001 - whatever broke, this connection is not reused
            drop_hot_connection(self.url)

    def failed(self) -> None:
        """The database failed under this connection: drop it (a hot one is reopened)."""
        if self.hot and self._conn is not None:
            self._conn = None
            drop_hot_connection(self.url)

    def __enter__(self) -> FinishConnection:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None and issubclass(exc_type, DatabaseError):
            self.failed()
        self.close()

    # ------------------------------------------------------------------------- the reads
    def load_context(
        self, *, challenge_id: str, credential_id: bytes, failures_since: datetime
    ) -> FinishContext:
        """Everything ``finish`` checks before the write, in ONE statement: one snapshot (a
        SQLite SELECT is one read transaction; on PostgreSQL one autocommit statement)."""
        if self._conn is None:
            raise RuntimeError("the connection was closed")
        params = {"id": challenge_id, "cid": credential_id,
                  "since": self.raw.time(failures_since)}  # fmt: skip
        if self.postgres and self.reused:
            from psycopg import OperationalError

            try:
                row = self.raw.execute(_CONTEXT, params).fetchone()
                return _context(row)
            except OperationalError:  # the server closed it since the thread's last use
                drop_hot_connection(self.url)
                self._conn = None
                with _database_errors():
                    self._conn, self.reused = hot_postgres_connection(self.url)
                    self.raw = _Raw(self._conn, True)
        with _database_errors():
            row = self.raw.execute(_CONTEXT, params).fetchone()
        return _context(row)

    # ------------------------------------------------------------------------- the write
    def commit_success(
        self,
        *,
        challenge_id: str,
        credential_row_id: int,
        new_count: int,
        counter_checked: bool,
        at: datetime,
        actor: str,
        subject: str,
        details: dict[str, Any],
    ) -> tuple[CommitOutcome, int | None, str | None]:
        """Consume the challenge and compare-and-set the counter in one transaction.

        Returns (OK, audit seq, its row's hash), or the guard that refused, with nothing
        written. ``counter_checked`` False (a credential that never counts, where the policy
        allows it) still requires ``sign_count = 0`` and an active credential.
        """
        if self._conn is None:
            raise RuntimeError("the connection was closed")
        w = _Write(
            challenge_id, credential_row_id, new_count, counter_checked, at, actor, subject,
            _DETAILS.encode(details),  # before BEGIN: nothing to do under the lock
        )  # fmt: skip
        return self._commit_postgres(w) if self.postgres else self._commit_sqlite(w)

    def _commit_postgres(self, w: _Write) -> tuple[CommitOutcome, int | None, str | None]:
        """ONE round trip: BEGIN, the write statement, COMMIT and the seal, sent together.

        The write statement takes the challenge, compare-and-sets the counter (lock order as
        everywhere: challenge, then credential), takes the change's seq from the sequence
        (stamped as ``change_seq``), takes the writer's advisory lock on it and inserts the
        row unsealed; a guard that does not hold makes it raise (``ka_refuse``), so COMMIT
        never commits half a step-up. No lock shared with other credentials' step-ups is
        held across the commit. The seal (``ka_audit_seal``, its own transaction, not
        waiting for the disk) then chains every committed row after the head, this one
        included unless a seq before it is still being written; then this waits for that
        writer and seals again (``_sealed``)."""
        from psycopg import errors as pg_errors

        conn = self._conn
        params = {"now": w.at, "cid": w.challenge_id, "new": w.new_count,
                  "id": w.credential_row_id, "details": w.details_text, "actor": w.actor,
                  "subject": w.subject, "lock": audit.SEAL_LOCK_CLASS}  # fmt: skip
        sql = self.raw.sql(_WRITE_STRICT_PG if w.counter_checked else _WRITE_ZERO_PG)
        seal_sql, seal_params = audit.seal_statement(lazy=True, upto_last_taken=True)
        for attempt in range(3):
            write, commit, seal = conn.cursor(), conn.cursor(), conn.cursor()
            try:
                with conn.pipeline():
                    conn.execute("BEGIN")
                    write.execute(sql, params)
                    commit.execute("COMMIT")
                    seal.execute(seal_sql, seal_params)
            except Exception as e:
                committed = _ok(commit)
                if not committed and getattr(e, "sqlstate", None) == _REFUSED:
                    conn.rollback()
                    reason = getattr(e.diag, "message_primary", "")  # type: ignore[attr-defined]
                    if reason == "challenge-gone":
                        return CommitOutcome.CHALLENGE_GONE, None, None
                    return CommitOutcome.COUNTER_REFUSED, None, None
                if not committed and isinstance(e, pg_errors.UniqueViolation) and attempt < 2:
                    # A sealer filled this seq as rolled back while the statement was between
                    # taking it and locking it: nothing was written; again with a new seq.
                    conn.rollback()
                    continue
                if not committed:
                    with _database_errors():
                        raise
                seq = int(write.fetchone()[2])
                with _database_errors(stored=seq):
                    audit.raise_if_unsealable(e)
                    raise
            break
        taken, cas, seq = write.fetchone()
        if (taken, cas) != (1, 1):  # ka_refuse did not raise: it was replaced
            raise DatabaseError(
                f"the registry committed a step-up whose guard did not hold (challenge taken: "
                f"{taken}, counter set: {cas}): its function ka_refuse was changed",
                hint="the registry is being edited outside keyadmin: run keyadmin log verify",
            )
        seq = int(seq)
        try:
            with _database_errors(stored=seq):
                digest = self._sealed(seq, w, audit.sealed_from_row(seal.fetchone()))
        except DatabaseError as e:  # committed: say so, whatever failed after
            if e.message.startswith("the step-up is stored"):
                raise
            raise DatabaseError(f"the step-up is stored but {e.message}", hint=e.hint) from e
        return CommitOutcome.OK, seq, digest

    def _sealed(self, seq: int, w: _Write, sealed: audit.Sealed) -> str:
        """This step-up's row ``seq`` (committed) as sealed; while a seq before it is still
        being written, wait for that writer (who seals after its commit) and seal again. Then
        check that the row holds what this step-up wrote: its hash as the server computed it
        must be the one computed here (a row changed before its seal, or a server-side hash
        that differs from ``audit.row_hash``, is not acknowledged)."""
        conn = self._conn
        deadline = time.monotonic() + 30.0
        seal_sql, seal_params = audit.seal_statement(lazy=True, upto=seq)
        while sealed.mine is None:
            if sealed.waiting_on is None:
                what = "is gone from the log" if sealed.head_seq >= seq else (
                    "was not sealed although nothing was in the way (the function "
                    "ka_audit_seal was changed)")  # fmt: skip
                raise DatabaseError(
                    f"log row {seq}, written by this step-up, {what}",
                    hint="the registry is being edited outside keyadmin: run keyadmin log verify",
                )
            if time.monotonic() > deadline:
                raise DatabaseError(
                    f"the log could not be sealed up to row {seq} within 30 s (row "
                    f"{sealed.waiting_on} is still being written)",
                    hint="the step-up is stored; its log row is sealed by the next write",
                )
            cur = self.raw.cur
            try:
                with conn.pipeline():
                    audit.wait_for_writer(cur, sealed.waiting_on, fetch=False)
                    cur.execute(seal_sql, seal_params)
                sealed = audit.sealed_from_row(cur.fetchone())
            except Exception as e:
                audit.raise_if_unsealable(e)
                raise
        prev, digest = sealed.mine
        expected = audit.row_hash(prev, seq, w.at, w.actor, "stepup.ok", w.subject, w.details_text)
        if not audit.same(digest, expected):
            raise DatabaseError(
                f"log row {seq}, written by this step-up, was changed before it was sealed",
                hint="the registry is being edited outside keyadmin: run keyadmin log verify",
            )
        return str(digest)

    def _commit_sqlite(self, w: _Write) -> tuple[CommitOutcome, int | None, str | None]:
        """BEGIN IMMEDIATE holds the one database write lock, so the audit head read right
        after it cannot move before COMMIT: its seq + 1 is the seq of this change, set as
        ``change_seq`` by the compare-and-set itself (one UPDATE of the credential), and the
        row is written chained (``audit.insert_sealed``).
        """
        now = sqlite_time(w.at)
        cur = self.raw.cur
        path = sqlite_file(self.url)
        with _database_errors():
            if path is not None:
                writer_lock(path)
            try:
                cur.execute("BEGIN IMMEDIATE")
                cur.execute(_TAKE, {"now": now, "id": w.challenge_id})
                if cur.rowcount != 1:
                    cur.execute("ROLLBACK")
                    return CommitOutcome.CHALLENGE_GONE, None, None
                head = cur.execute(_HEAD).fetchone()
                cur.execute(
                    _CAS_STRICT_SEQ if w.counter_checked else _CAS_ZERO_SEQ,
                    {"new": w.new_count, "now": now, "id": w.credential_row_id,
                     "seq": int(head[0]) + 1},
                )  # fmt: skip
                if cur.rowcount != 1:
                    cur.execute("ROLLBACK")
                    return CommitOutcome.COUNTER_REFUSED, None, None
                seq, digest = audit.insert_sealed(
                    cur, at=w.at, actor=w.actor, action="stepup.ok", subject=w.subject,
                    details=w.details_text, head=(int(head[0]), head[1]),
                )  # fmt: skip
                cur.execute("COMMIT")
            except BaseException:
                if self._conn is not None and self._conn.in_transaction:
                    cur.execute("ROLLBACK")
                raise
            finally:
                if path is not None:
                    writer_unlock(path)
        return CommitOutcome.OK, seq, digest


def _ok(cur: Any) -> bool:
    """Whether the statement ``cur`` ran in a pipeline completed (its result is in)."""
    from psycopg import pq

    result = cur.pgresult
    return result is not None and result.status == pq.ExecStatus.COMMAND_OK


# ----------------------------------------------------------------------------- challenges
def active_credentials(session: Session, user: str) -> tuple[int, bytes, list[bytes]]:
    """(user id, user handle, credential ids of the user's ACTIVE credentials)."""
    from sqlmodel import select

    from keyadmin.store.models import CredentialRow, UserRow

    user = unicodedata.normalize("NFC", user)  # names are stored NFC (registry.user_name)
    u = session.exec(select(UserRow).where(UserRow.name == user)).first()
    if u is None or u.id is None:
        return 0, b"", []
    rows = session.exec(
        select(CredentialRow.credential_id)
        .where(CredentialRow.user_id == u.id, CredentialRow.status == "active")
        .order_by(CredentialRow.id)  # type: ignore[arg-type]
    ).all()
    return u.id, u.user_handle, [bytes(r) for r in rows]


def insert_challenge(
    session: Session,
    *,
    id: str,
    user_id: int,
    rp_id: str,
    origin: str,
    action: str,
    action_hash: str,
    challenge: bytes,
    created_at: datetime,
    expires_at: datetime,
) -> None:
    from keyadmin.store.models import ChallengeRow

    session.add(
        ChallengeRow(
            id=id,
            user_id=user_id,
            rp_id=rp_id,
            origin=origin,
            action=action,
            action_hash=action_hash,
            challenge=challenge,
            created_at=created_at,
            expires_at=expires_at,
        )
    )
    session.flush()


def purge_expired_challenges(session: Session, *, user_id: int, now: datetime, limit: int) -> int:
    """Delete up to ``limit`` of the user's expired, never used challenges; how many went.

    Used challenges stay (the record that an id was spent). Scoped to the user (the user_id
    index): ``begin`` runs this for the user it issues to, so no user's expired challenges
    pile up past one batch, without a scan of every user's rows.
    """
    from sqlalchemy import delete
    from sqlmodel import select

    from keyadmin.store.models import ChallengeRow

    stale = (
        select(ChallengeRow.id)
        .where(
            ChallengeRow.user_id == user_id,
            ChallengeRow.used_at.is_(None),  # type: ignore[union-attr]
            ChallengeRow.expires_at <= now,
        )
        .limit(limit)
    )
    ids = list(session.exec(stale).all())
    if ids:
        session.exec(delete(ChallengeRow).where(ChallengeRow.id.in_(ids)))  # type: ignore[attr-defined]
    return len(ids)


def count_live_challenges(session: Session, *, user_id: int, now: datetime) -> int:
    """How many of the user's challenges are unused and unexpired."""
    from sqlalchemy import func
    from sqlmodel import select

    from keyadmin.store.models import ChallengeRow

    return int(
        session.exec(
            select(func.count()).where(
                ChallengeRow.user_id == user_id,
                ChallengeRow.used_at.is_(None),  # type: ignore[union-attr]
                ChallengeRow.expires_at > now,
            )
        ).one()
    )


def count_failures(
    session: Session, *, user_id: int, since: datetime
) -> tuple[int, dict[bytes, int]]:
    """Failures of a user since ``since``: (total, per credential id)."""
    from sqlmodel import select

    from keyadmin.store.models import StepUpFailureRow

    rows = session.exec(
        select(StepUpFailureRow.credential_id).where(
            StepUpFailureRow.user_id == user_id, StepUpFailureRow.at >= since
        )
    ).all()
    per: dict[bytes, int] = {}
    for cid in rows:
        if cid is not None:
            per[bytes(cid)] = per.get(bytes(cid), 0) + 1
    return len(rows), per


_CONTEXT = (
    "SELECT c.id, c.user_id, u.name, u.user_handle, c.rp_id, c.origin, c.action, "
    "c.action_hash, c.challenge, c.created_at, c.expires_at, c.used_at, c.outcome, "
    "k.id, k.credential_id, k.user_id, k.public_key, k.sign_count, k.aaguid, "
    "k.backup_eligible, k.status, "
    "(SELECT count(*) FROM ka_stepup_failure f WHERE f.user_id = c.user_id "
    "AND f.at >= :since), "
    "(SELECT count(*) FROM ka_stepup_failure g WHERE g.credential_id = :cid "
    "AND g.at >= :since), "
    "k.change_seq, a.seq, a.at, a.actor, a.action, a.subject, a.details, a.prev_hash, a.hash, "
    "n.prev_hash, (SELECT seq FROM ka_audit_head WHERE id = 1) "
    "FROM (SELECT 1 AS one) AS o "
    "LEFT JOIN ka_challenge c ON c.id = :id "
    "LEFT JOIN ka_user u ON u.id = c.user_id "
    "LEFT JOIN ka_credential k ON k.credential_id = :cid "
    "LEFT JOIN ka_audit a ON a.seq = k.change_seq "
    "LEFT JOIN ka_audit n ON n.seq = k.change_seq + 1"
)


def _context(row: Any) -> FinishContext:
    challenge = None
    if row[0] is not None and row[2] is not None:  # the challenge, and its user
        challenge = ChallengeData(
            id=row[0],
            user_id=row[1],
            user=row[2],
            user_handle=bytes(row[3]),
            rp_id=row[4],
            origin=row[5],
            action=row[6],
            action_hash=row[7],
            challenge=bytes(row[8]),
            created_at=_utc(row[9]) or datetime.now(UTC),
            expires_at=_utc(row[10]) or datetime.now(UTC),
            used_at=_utc(row[11]),
            outcome=row[12],
        )
    credential = None
    if row[13] is not None:
        credential = CredentialData(
            id=row[13],
            credential_id=bytes(row[14]),
            user_id=row[15],
            public_key=bytes(row[16]),
            sign_count=int(row[17]),
            aaguid=row[18],
            backup_eligible=bool(row[19]),
            status=row[20],
            change_seq=int(row[23] or 0),
            log_row=tuple(row[24:32]) if row[24] is not None else None,
            next_prev_hash=row[32],
            head_seq=int(row[33]),
        )
    if challenge is None:  # the counts are of the challenge's user; none without one
        return FinishContext(None, credential, 0, 0)
    return FinishContext(challenge, credential, int(row[22]), int(row[21]))


# ----------------------------------------------------------------------------- the hot path
_HEAD = "SELECT seq, hash FROM ka_audit_head WHERE id = 1"
#: Single use: the challenge is taken only while unused and unexpired.
_TAKE = (
    "UPDATE ka_challenge SET used_at = :now, outcome = 'ok' "
    "WHERE id = :id AND used_at IS NULL AND expires_at > :now"
)
#: The same guards, stamping change_seq (the audit seq of this change) in the same UPDATE.
_CAS_STRICT_SEQ = (
    "UPDATE ka_credential SET sign_count = :new, last_used_at = :now, updated_at = :now, "
    "change_seq = :seq WHERE id = :id AND status = 'active' AND sign_count < :new"
)
_CAS_ZERO_SEQ = (
    "UPDATE ka_credential SET sign_count = :new, last_used_at = :now, updated_at = :now, "
    "change_seq = :seq WHERE id = :id AND status = 'active' AND sign_count = 0 AND :new = 0"
)
#: PostgreSQL: the whole write of a step-up in one statement. The challenge is taken only
#: while unused and unexpired; the credential is updated only when it was (``FROM t``) and
#: its guard holds. The seq is taken, and the writer's advisory lock on it, in a CTE of its
#: own (``n``, run once, only when the challenge was taken): a write that then waits on the
#: credential's row (a rival holds it) keeps that seq and its lock while it waits, and the
#: row, rechecked after the wait, gets that seq. (Taken in the credential's SET instead, the
#: seq was taken again after the wait: the first one, unlocked, was then filled as a
#: ``log.skipped`` row by a sealer; test_log_seal_sql.)
_WRITE_PG = (
    "WITH t AS (UPDATE ka_challenge SET used_at = :now, outcome = 'ok' "
    "WHERE id = :cid AND used_at IS NULL AND expires_at > :now RETURNING id), "
    "n AS (SELECT s.seq FROM (SELECT nextval('ka_audit_seq_next') AS seq FROM t) AS s, "
    "LATERAL pg_advisory_xact_lock(CAST(:lock AS integer), CAST(s.seq AS integer)) AS l), "
    "c AS (UPDATE ka_credential k SET sign_count = :new, last_used_at = :now, "
    "updated_at = :now, change_seq = n.seq "
    "FROM n WHERE k.id = :id AND k.status = 'active' AND {guard} RETURNING k.change_seq), "
    "a AS (INSERT INTO ka_audit (seq, at, actor, action, subject, details, prev_hash, hash) "
    "SELECT c.change_seq, :now, :actor, 'stepup.ok', :subject, :details, '', '' "
    "FROM c RETURNING seq) "
    "SELECT (SELECT count(*) FROM t), (SELECT count(*) FROM c), "
    "CASE WHEN (SELECT count(*) FROM t) <> 1 THEN ka_refuse('challenge-gone') "
    "WHEN (SELECT count(*) FROM c) <> 1 THEN ka_refuse('counter-refused') "
    "ELSE (SELECT max(seq) FROM a) END"
)
_WRITE_STRICT_PG = _WRITE_PG.format(guard="k.sign_count < :new")
_WRITE_ZERO_PG = _WRITE_PG.format(guard="k.sign_count = 0 AND :new = 0")
#: the SQLSTATE ``ka_refuse`` raises (migration 0006); its message names the guard
_REFUSED = "KA409"
#: ``audit._canonical``: sorted keys, no spaces, UTF-8 kept (one encoder, made once).
_DETAILS = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# ----------------------------------------------------------------------------- the slow path
@dataclass(frozen=True)
class Refusal:
    audit_seq: int
    consumed: bool  # this attempt consumed the (live) challenge
    quarantined: bool
    stored_count: int | None


def record_refusal(
    url: str,
    *,
    user_id: int | None,
    user: str | None,
    challenge_id: str | None,
    credential_id: bytes | None,
    reason: str,
    counts_as_attempt: bool,
    counter_violation: int | None,
    at: datetime,
    actor: str,
    details: dict[str, Any],
    log_action: str | None = None,
) -> Refusal:
    """Log a refused step-up; consume its challenge; quarantine on a counter violation.

    The audit action is ``stepup.counter-violation`` when the credential was quarantined,
    else ``log_action`` (e.g. ``stepup.replay``), else ``stepup.refused``.

    ``counter_violation`` is the refused new counter. The credential is quarantined only
    when this attempt consumed a live challenge (a replay of an assertion whose challenge
    is used already is a replay, refused as such) and the stored counter, read FOR UPDATE
    under the transaction's lock, is still not below it.
    """
    from sqlmodel import select

    from keyadmin.store import registry
    from keyadmin.store.db import transaction
    from keyadmin.store.models import ChallengeRow, CredentialRow, StepUpFailureRow

    with transaction(url) as s:
        consumed = False
        if challenge_id is not None and counts_as_attempt:
            ch = s.exec(
                select(ChallengeRow).where(ChallengeRow.id == challenge_id).with_for_update()
            ).first()
            if ch is not None and ch.used_at is None:
                ch.used_at, ch.outcome = at, f"refused: {reason}"[:200]
                s.add(ch)
                consumed = True
        quarantined = False
        stored: int | None = None
        row = None
        if credential_id is not None:
            row = s.exec(
                select(CredentialRow)
                .where(CredentialRow.credential_id == credential_id)
                .with_for_update()
            ).first()
            stored = row.sign_count if row is not None else None
        if (
            counter_violation is not None
            and consumed  # a fresh challenge, a valid signature, a stale counter: a clone
            and row is not None
            and row.sign_count >= counter_violation
            and row.status in ("active", "suspended")
        ):
            registry.change_status(
                s,
                row.id,
                "quarantine",
                reason=(
                    f"signature counter did not advance: assertion {counter_violation}, "
                    f"stored {row.sign_count} (clone or replay)"
                ),
                actor=actor,
            )
            quarantined = True
        if user_id is not None and counts_as_attempt:
            s.add(
                StepUpFailureRow(user_id=user_id, credential_id=credential_id, at=at, reason=reason)
            )
        entry = audit.append(
            s,
            actor=actor,
            action="stepup.counter-violation" if quarantined else log_action or "stepup.refused",
            subject=user,
            details={
                **details,
                "reason": reason,
                "challenge_consumed": consumed,
                "quarantined": quarantined,
                "stored_counter": stored,
            },
            at=at,
        )
        if challenge_id is not None and consumed and quarantined:
            ch = s.get(ChallengeRow, challenge_id)
            if ch is not None:
                ch.outcome = "refused: counter violation"
                s.add(ch)
    return Refusal(entry.seq, consumed, quarantined, stored)


def credential_state(url: str, credential_id: bytes) -> tuple[int, str, int] | None:
    """(sign_count, status, change_seq) of a credential, or None."""
    with _raw(url, write=False) as r:
        row = r.execute(
            "SELECT sign_count, status, change_seq FROM ka_credential WHERE credential_id = :cid",
            {"cid": credential_id},
        ).fetchone()
    return (int(row[0]), str(row[1]), int(row[2])) if row else None


def stepup_log(url: str, *, user: str | None = None) -> list[audit.LogEntry]:
    """The step-up rows of the audit log (oldest first)."""
    from keyadmin.store.db import transaction

    with transaction(url) as s:
        rows = [e for e in audit.entries(s) if e.action.startswith("stepup.")]
    return [e for e in rows if user is None or e.subject == user]


def attestation_leaf(url: str, credential_row_id: int) -> bytes | None:
    """The DER of the attestation certificate stored with a credential's evidence."""

    from keyadmin.store.db import transaction
    from keyadmin.store.models import CredentialRow, EvidenceRow

    with transaction(url) as s:
        cred = s.get(CredentialRow, credential_row_id)
        ev = s.get(EvidenceRow, cred.evidence_id) if cred and cred.evidence_id else None
        if ev is None:
            return None
        chain = json.loads(ev.evidence_json).get("chain") or []
    if not chain or not chain[0].get("der_b64"):
        return None
    return decode_std(chain[0]["der_b64"])
