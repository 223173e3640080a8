"""Engines for the registry: SQLite by default (a 0600 file), PostgreSQL by URL.

The schema is brought to the current Alembic revision on first use
(keyadmin/store/migrations). SQLite transactions begin IMMEDIATE, so two writers
serialise instead of failing halfway through a read-then-write.

SQLite runs in WAL mode with ``PRAGMA synchronous=FULL``: every commit is fsynced, so a
committed step-up counter survives a power loss (a lost counter update would reopen a replay
window for the assertions it had retired). ``KEYADMIN_SQLITE_SYNCHRONOUS=normal`` is the
explicit opt-in to ``synchronous=NORMAL``: commits are still atomic and survive a crash of
the process, but the last few may be lost on a power loss or OS crash (see docs/stepup.md).
Only ``full`` (the default) and ``normal`` are accepted.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from keyadmin.errors import ConfigError, KeyadminError

_engines: dict[str, Any] = {}
_lock = threading.Lock()

#: The environment variable that opts SQLite into ``synchronous=NORMAL``.
SYNCHRONOUS_ENV = "KEYADMIN_SQLITE_SYNCHRONOUS"
_SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL"}


class DatabaseError(KeyadminError):
    """The registry database refused or failed an operation; nothing was written."""


def sqlite_file(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def ensure_private_file(path: Path) -> None:
    """Create the SQLite file with mode 0600 (and its directory 0700) before SQLite does."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)


def sqlite_synchronous() -> str:
    """``FULL`` unless $KEYADMIN_SQLITE_SYNCHRONOUS opts into ``NORMAL``; anything else refused."""
    value = os.environ.get(SYNCHRONOUS_ENV, "").strip().lower() or "full"
    mode = _SYNCHRONOUS.get(value)
    if mode is None:
        raise ConfigError(
            f"{SYNCHRONOUS_ENV}={value!r} is not one of: full, normal",
            hint=f"unset {SYNCHRONOUS_ENV} (full, the durable default) or set it to normal",
        )
    return mode


def get_engine(url: str) -> Any:
    """One engine per URL per process, migrated to the current schema."""
    with _lock:
        engine = _engines.get(url)
        if engine is not None:
            return engine
        engine = _create(url)
        _migrate(engine)
        _engines[url] = engine
        return engine


def ping(url: str) -> None:
    """Connect and run SELECT 1 (no migration); raises what the driver raises."""
    from sqlalchemy import text

    engine = _create(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    finally:
        engine.dispose()


def dispose_all() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def _create(url: str) -> Any:
    from sqlalchemy import create_engine, event

    path = sqlite_file(url)
    if path is not None:
        synchronous = sqlite_synchronous()  # validated before anything is created
        ensure_private_file(path)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")  # FULL or NORMAL, nothing else
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith(("postgresql", "postgres")):
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://") :]
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        try:
            return create_engine(url, pool_pre_ping=True)
        except ImportError:
            raise ConfigError(
                "PostgreSQL support is not installed",
                hint="pip install 'keyadmin[postgres]'",
            ) from None
    if url.startswith("sqlite://"):
        return create_engine(url)
    raise ConfigError(
        f"unsupported database URL {url.split('://', 1)[0]}://…",
        hint="use sqlite:///PATH or postgresql://USER@HOST/DB",
    )


def _migrate(engine: Any) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


@contextmanager
def transaction(url: str) -> Iterator[Any]:
    """A sqlmodel Session in one transaction: committed at the end, rolled back on any error.

    A failure of the database itself (gone away, refused the commit) becomes DatabaseError,
    with nothing written.
    """
    from sqlalchemy.exc import SQLAlchemyError
    from sqlmodel import Session

    engine = get_engine(url)
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except SQLAlchemyError as e:
        session.rollback()
        raise DatabaseError(
            f"the registry database refused the write; nothing was stored ({type(e).__name__})",
            hint="check that the database is reachable and writable, then retry",
        ) from e
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
