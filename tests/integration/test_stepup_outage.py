"""A registry that fails in the middle of a step-up: nothing is stored, the error is one clear
DatabaseError, and once the database is back the SAME assertion is accepted exactly once.

SQLite: a real trigger refuses the audit row of the commit (after the challenge was taken and
the counter compare-and-set ran inside the transaction). PostgreSQL: the private real server
is stopped between begin and finish; and the server process serving the commit is terminated
while the commit waits on the audit head lock (taken, mid-transaction)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from keyadmin.stepup import ChallengeRefused, begin, finish
from keyadmin.store.db import DatabaseError, get_engine, hot_sqlite_connection, transaction
from tests.integration.test_stepup_support import ACTION, Lab, assertion_for, make_lab, stored


def _exec(url: str, statement: str) -> None:
    from sqlalchemy import text

    with get_engine(url).begin() as conn:
        conn.execute(text(statement))


def _challenge_used(url: str, challenge_id: str) -> Any:
    from sqlalchemy import text

    with get_engine(url).connect() as conn:
        return conn.execute(
            text("SELECT used_at FROM ka_challenge WHERE id = :id"), {"id": challenge_id}
        ).scalar_one()


def _stepup_rows(url: str) -> int:
    from sqlalchemy import text

    with get_engine(url).connect() as conn:
        return int(
            conn.execute(text("SELECT count(*) FROM ka_audit WHERE action = 'stepup.ok'")).scalar()
        )


def _chain_ok(url: str) -> None:
    from keyadmin.store import audit

    with transaction(url) as s:
        assert audit.verify(s).ok


def _prepared(lab: Lab) -> tuple[Any, Any, int]:
    ch = begin(lab.db_url, lab.policy, user="alice", action=ACTION)
    return ch, assertion_for(lab.keys["alice"], ch).to_json(), stored(lab.db_url).sign_count


def _finish(lab: Lab, ch: Any, response: Any) -> Any:
    return finish(
        lab.db_url, lab.policy, challenge_id=ch.challenge_id, action=ACTION, response=response
    )


def _nothing_stored(lab: Lab, ch: Any, counter_before: int, rows_before: int) -> None:
    assert stored(lab.db_url).sign_count == counter_before
    assert _challenge_used(lab.db_url, ch.challenge_id) is None
    assert _stepup_rows(lab.db_url) == rows_before
    _chain_ok(lab.db_url)


def _accepted_once_after(lab: Lab, ch: Any, response: Any, counter_before: int) -> None:
    from sqlalchemy import text

    result = _finish(lab, ch, response)
    assert result.counter > counter_before
    assert stored(lab.db_url).sign_count == result.counter
    with get_engine(lab.db_url).connect() as conn:  # sync sees the change: change_seq set
        change_seq, head = conn.execute(
            text("SELECT c.change_seq, h.seq FROM ka_credential c, ka_audit_head h")
        ).one()
    assert change_seq == head == result.audit_seq
    with pytest.raises(ChallengeRefused):  # and only once
        _finish(lab, ch, response)
    assert stored(lab.db_url).sign_count == result.counter
    _chain_ok(lab.db_url)


def test_sqlite_refusing_the_commit_stores_nothing(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, f"sqlite:///{tmp_path / 'registry.db'}")
    ch, response, before = _prepared(lab)
    rows = _stepup_rows(lab.db_url)
    _exec(
        lab.db_url,
        "CREATE TRIGGER refuse_stepup BEFORE INSERT ON ka_audit WHEN NEW.action = 'stepup.ok' "
        "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
    )
    for _ in range(2):  # twice: the connection that failed is dropped and a new one used
        conn = hot_sqlite_connection(lab.db_url)
        with pytest.raises(DatabaseError) as err:
            _finish(lab, ch, response)
        assert "nothing was stored" in err.value.message
        with pytest.raises(sqlite3.ProgrammingError):  # closed, never reused
            conn.execute("SELECT 1")
        assert hot_sqlite_connection(lab.db_url) is not conn
        _nothing_stored(lab, ch, before, rows)
    _exec(lab.db_url, "DROP TRIGGER refuse_stepup")
    _accepted_once_after(lab, ch, response, before)


def test_interrupt_inside_the_commit_rolls_back_and_keeps_the_connection_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C arriving inside the commit transaction (after the challenge was taken and the
    counter set): rolled back, the thread's connection goes back idle and is reused."""
    from keyadmin.store import audit

    lab = make_lab(tmp_path, f"sqlite:///{tmp_path / 'registry.db'}")
    ch, response, before = _prepared(lab)
    conn = hot_sqlite_connection(lab.db_url)
    seen: list[bool] = []
    real = audit.row_hash_text

    def interrupted(*args: Any) -> str:
        if not conn.in_transaction:  # the read-side check of the log row: not the commit
            return real(*args)
        seen.append(conn.in_transaction)  # inside BEGIN IMMEDIATE, rows already changed
        raise KeyboardInterrupt

    monkeypatch.setattr(audit, "row_hash_text", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _finish(lab, ch, response)
    monkeypatch.setattr(audit, "row_hash_text", real)  # audit.verify below uses it too
    assert seen == [True]
    assert conn.in_transaction is False
    assert hot_sqlite_connection(lab.db_url) is conn  # not a failure of the database: kept
    _nothing_stored(lab, ch, before, 0)
    _accepted_once_after(lab, ch, response, before)


def test_sqlite_refusal_in_a_worker_thread_leaves_the_thread_usable(tmp_path: Path) -> None:
    """A thread's own connection that failed is dropped and reopened, not reused broken."""
    lab = make_lab(tmp_path, f"sqlite:///{tmp_path / 'registry.db'}")
    ch, response, before = _prepared(lab)
    _exec(
        lab.db_url,
        "CREATE TRIGGER refuse_take BEFORE UPDATE OF used_at ON ka_challenge "
        "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
    )
    outcome: list[Any] = []
    conns: list[Any] = []
    go = threading.Event()
    done = threading.Event()

    def worker() -> None:
        for _ in range(2):
            go.wait()
            go.clear()
            conns.append(hot_sqlite_connection(lab.db_url))
            try:
                outcome.append(_finish(lab, ch, response))
            except Exception as e:  # noqa: BLE001 - recorded and asserted on below
                outcome.append(e)
            done.set()

    t = threading.Thread(target=worker)
    t.start()
    go.set()
    assert done.wait(60)
    done.clear()
    assert isinstance(outcome[0], DatabaseError)
    _nothing_stored(lab, ch, before, 0)
    _exec(lab.db_url, "DROP TRIGGER refuse_take")
    go.set()
    assert done.wait(60)
    t.join(60)
    assert not isinstance(outcome[1], Exception), outcome[1]
    assert outcome[1].counter > before
    assert conns[1] is not conns[0]  # the failed one was dropped, a new one opened


@pytest.mark.postgres
def test_postgres_server_gone_between_begin_and_finish(
    postgres_server: Any, tmp_path: Path
) -> None:
    url = postgres_server.create_database()
    lab = make_lab(tmp_path, url)
    ch, response, before = _prepared(lab)
    rows = _stepup_rows(url)
    postgres_server.stop()
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseError) as err:
            _finish(lab, ch, response)
        assert "nothing was stored" in err.value.message or "refused" in err.value.message
        assert time.monotonic() - started < 60
    finally:
        postgres_server.start_again()
    _nothing_stored(lab, ch, before, rows)
    _accepted_once_after(lab, ch, response, before)


def _kill_when_waiting(dsn: str, holder_sql: str, waits_on: str, lab: Lab, ch: Any,
                       response: Any) -> list[Any]:  # fmt: skip
    """Hold a lock (``holder_sql``), start the finish, terminate its server process once it
    waits on a statement naming ``waits_on``; what the finish raised or returned."""
    import psycopg

    holder = psycopg.connect(dsn)
    holder.execute(holder_sql)  # lock held
    outcome: list[Any] = []

    def worker() -> None:
        try:
            outcome.append(_finish(lab, ch, response))
        except Exception as e:  # noqa: BLE001 - recorded and asserted on below
            outcome.append(e)

    t = threading.Thread(target=worker)
    t.start()
    try:
        with psycopg.connect(dsn, autocommit=True) as admin:
            waiting = None
            deadline = time.monotonic() + 30
            while waiting is None and time.monotonic() < deadline:
                waiting = admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND query LIKE %s",
                    (f"%{waits_on}%",),
                ).fetchone()
                time.sleep(0.02)
            assert waiting is not None, f"the finish never waited on {waits_on}"
            assert admin.execute("SELECT pg_terminate_backend(%s)", waiting).fetchone()[0]
        t.join(60)
    finally:
        holder.rollback()
        holder.close()
    return outcome


@pytest.mark.postgres
def test_postgres_backend_killed_mid_commit(postgres_server: Any, tmp_path: Path) -> None:
    """The step-up's one write statement waits for the credential's row; its server process
    is terminated there. The transaction dies with it: nothing stored."""
    url = postgres_server.create_database()
    lab = make_lab(tmp_path, url)
    ch, response, before = _prepared(lab)
    rows = _stepup_rows(url)
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    outcome = _kill_when_waiting(
        dsn, "SELECT id FROM ka_credential FOR UPDATE", "ka_credential", lab, ch, response
    )
    assert len(outcome) == 1 and isinstance(outcome[0], DatabaseError), outcome
    assert "nothing was stored" in str(outcome[0])
    _nothing_stored(lab, ch, before, rows)
    _accepted_once_after(lab, ch, response, before)


@pytest.mark.postgres
def test_postgres_backend_killed_while_sealing(postgres_server: Any, tmp_path: Path) -> None:
    """The step-up has committed; its seal waits for the log's head (another writer holds it)
    and its server process is terminated there. The step-up is stored and said to be; its
    row waits unsealed, `log verify` says so, the next write seals it; no replay."""
    from keyadmin.store import audit

    url = postgres_server.create_database()
    lab = make_lab(tmp_path, url)
    ch, response, before = _prepared(lab)
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    outcome = _kill_when_waiting(
        dsn, "SELECT seq FROM ka_audit_head WHERE id = 1 FOR UPDATE", "ka_audit_seal", lab, ch,
        response,
    )  # fmt: skip
    assert len(outcome) == 1 and isinstance(outcome[0], DatabaseError), outcome
    assert "the step-up is stored" in str(outcome[0]), outcome[0]
    assert stored(url).sign_count > before
    with transaction(url) as s:
        chain = audit.verify(s)
    assert chain.ok and chain.unsealed == 1, chain
    with pytest.raises(ChallengeRefused):  # stored once: the challenge is used
        _finish(lab, ch, response)
    ch2, response2, _ = _prepared(lab)
    result = _finish(lab, ch2, response2)
    with transaction(url) as s:
        chain = audit.verify(s)
    assert chain.ok and chain.unsealed == 0 and chain.head_seq == result.audit_seq, chain
