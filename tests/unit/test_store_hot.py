"""The step-up hot path's own SQLite connection: one per thread and process, configured like
the engine's, never reused after dispose_all, after a failure, or across fork()."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from keyadmin.store import db


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


def _pragma(conn: Any, name: str) -> Any:
    return conn.execute(f"PRAGMA {name}").fetchone()[0]


def test_one_connection_per_thread_configured_like_the_engine(url: str) -> None:
    first = db.hot_sqlite_connection(url)
    assert first is db.hot_sqlite_connection(url)
    assert _pragma(first, "journal_mode") == "wal"
    assert _pragma(first, "synchronous") == 2  # FULL, the durable default
    assert _pragma(first, "foreign_keys") == 1
    assert _pragma(first, "busy_timeout") == 30000
    assert _pragma(first, "wal_autocheckpoint") == db.WAL_AUTOCHECKPOINT_PAGES  # FULL
    assert first.in_transaction is False and first.isolation_level is None
    other: list[Any] = []
    t = threading.Thread(target=lambda: other.append(db.hot_sqlite_connection(url)))
    t.start()
    t.join()
    assert other[0] is not first


def test_normal_only_by_the_documented_opt_in(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    db.dispose_all()
    monkeypatch.setenv(db.SYNCHRONOUS_ENV, "normal")
    try:
        conn = db.hot_sqlite_connection(url)
        assert _pragma(conn, "synchronous") == 1
        # the WAL is synced only at checkpoints under NORMAL: SQLite's default interval kept
        assert _pragma(conn, "wal_autocheckpoint") == db.WAL_AUTOCHECKPOINT_PAGES_NORMAL == 1000
    finally:
        db.dispose_all()


def test_dispose_all_and_drop_give_a_new_connection(url: str) -> None:
    first = db.hot_sqlite_connection(url)
    db.dispose_all()
    second = db.hot_sqlite_connection(url)
    assert second is not first
    with pytest.raises(Exception, match="closed"):
        first.execute("SELECT 1")
    db.drop_hot_connection(url)
    assert db.hot_sqlite_connection(url) is not second


def test_not_for_memory_urls() -> None:
    assert db.hot_sqlite_connection("sqlite://") is None


@pytest.mark.postgres
def test_not_for_postgres(pg_url: str) -> None:
    assert db.hot_sqlite_connection(pg_url) is None


def test_bounded_per_thread(tmp_path: Path) -> None:
    conns = [db.hot_sqlite_connection(f"sqlite:///{tmp_path / f'r{i}.db'}") for i in range(6)]
    with pytest.raises(Exception, match="closed"):  # the oldest were closed, not leaked
        conns[0].execute("SELECT 1")
    assert conns[-1].execute("SELECT 1").fetchone() == (1,)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")
def test_a_forked_child_opens_its_own(url: str) -> None:
    parent = db.hot_sqlite_connection(url)
    parent.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: must not reuse the parent's connection
        ok = 0
        try:
            child = db.hot_sqlite_connection(url)
            child.execute("INSERT INTO t VALUES (1)")
            ok = int(child is not parent)
        finally:
            os.write(write, bytes([ok]))
            os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"\x01"
    os.waitpid(pid, 0)
    os.close(read)
    assert parent.execute("SELECT count(*) FROM t").fetchone() == (1,)  # the parent's works


def test_writers_queue_and_a_wait_is_bounded(tmp_path, monkeypatch) -> None:
    """The writers' queue beside a SQLite registry: a writer waits while another holds it,
    gets it as soon as it is released, and gives up (nothing stored) after the bound."""
    import fcntl
    import os
    import threading
    import time

    from keyadmin.store import db

    path = tmp_path / "registry.db"
    holder = os.open(f"{path}-writers", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(holder, fcntl.LOCK_EX)  # another process's open file: another writer
    monkeypatch.setattr(db, "WRITER_WAIT_SECONDS", 0.3)
    t0 = time.monotonic()
    with pytest.raises(db.DatabaseError, match="nothing was stored"):
        db.writer_lock(path)
    assert 0.25 < time.monotonic() - t0 < 2.0
    got = []
    monkeypatch.setattr(db, "WRITER_WAIT_SECONDS", 5.0)
    waiter = threading.Thread(target=lambda: (db.writer_lock(path), got.append(time.monotonic())))
    waiter.start()
    time.sleep(0.2)
    assert got == []  # queued behind the holder
    released = time.monotonic()
    fcntl.flock(holder, fcntl.LOCK_UN)
    waiter.join(5)
    assert got and got[0] - released < 0.5
    os.close(holder)
