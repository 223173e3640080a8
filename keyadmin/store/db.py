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
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

from keyadmin.errors import ConfigError, KeyadminError

if TYPE_CHECKING:
    import sqlite3

    from psycopg import Connection as _PsycopgConnection
    from psycopg.rows import TupleRow
    from sqlalchemy import Connection, Engine
    from sqlalchemy.engine import Dialect
    from sqlalchemy.engine.interfaces import DBAPIConnection as DbapiConnection
    from sqlalchemy.pool import ConnectionPoolEntry
    from sqlmodel import Session

    PgConnection = _PsycopgConnection[TupleRow]

_engines: dict[str, Engine] = {}
_lock = threading.Lock()

#: The environment variable that opts SQLite into ``synchronous=NORMAL``.
SYNCHRONOUS_ENV = "KEYADMIN_SQLITE_SYNCHRONOUS"
_SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL"}
#: WAL pages between automatic checkpoints under synchronous=FULL (SQLite's default is
#: 1000). Hot rows are rewritten commit after commit, so a longer WAL copies each page back
#: once for more commits; the WAL file stays bounded (about 16 MiB at 4 KiB pages). Every
#: FULL commit is fsynced, so this changes no durability. Under the opt-in NORMAL the WAL
#: is only synced at a checkpoint, and a longer interval would widen what a power loss can
#: take: NORMAL keeps SQLite's default.
WAL_AUTOCHECKPOINT_PAGES = 4000
WAL_AUTOCHECKPOINT_PAGES_NORMAL = 1000


_NAMED = re.compile(r":([a-z_]+)")
_PG_SQL: dict[str, str] = {}  # the %(name)s spelling of each statement, made once


def dbapi_sql(text: str, postgres: bool) -> str:
    """A statement with ``:name`` parameters as the DBAPI driver takes it: sqlite3 takes it
    as it is, psycopg as ``%(name)s``. The one spelling of raw statements in store/."""
    if not postgres:
        return text
    out = _PG_SQL.get(text)
    if out is None:
        out = _PG_SQL[text] = _NAMED.sub(r"%(\1)s", text)
    return out


_sqlite_time: Callable[[datetime], str] | None = None


def sqlite_time(at: datetime) -> str:
    """``at`` (an aware datetime) as the ORM stores it in SQLite: SQLAlchemy's own DateTime
    bind processor for the dialect, in UTC, for statements written without the ORM."""
    global _sqlite_time
    from datetime import UTC

    if _sqlite_time is None:
        from sqlalchemy import DateTime
        from sqlalchemy.dialects import sqlite

        dialect = sqlite.dialect()
        _sqlite_time = DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect)
    assert _sqlite_time is not None
    return _sqlite_time(at.astimezone(UTC))


class DatabaseError(KeyadminError):
    """The registry database refused or failed an operation; nothing was written."""


def database_failure(exc: BaseException) -> KeyadminError | None:
    """A database that cannot be used (a URL that does not parse, a server that refuses the
    connection, a file that is not a database) as a declared error; None for anything else
    (a failing statement is a bug, reported as unexpected)."""
    import sqlite3

    from sqlalchemy import exc as sa

    if isinstance(exc, (sa.ArgumentError, sa.NoSuchModuleError)):
        return ConfigError(
            f"not a usable database URL ({exc})",
            hint="use sqlite:///PATH or postgresql://USER@HOST/DB",
        )
    usable = (sa.OperationalError, sa.InterfaceError, sqlite3.OperationalError)
    if isinstance(exc, usable) or type(exc) in (sa.DatabaseError, sqlite3.DatabaseError):
        first = str(getattr(exc, "orig", None) or exc).splitlines()[0][:300]
        return DatabaseError(
            f"cannot use the database: {first}",
            hint="check the --db URL (or KEYADMIN_DATABASE_URL) and that the database is "
            "reachable and is keyadmin's",
        )
    return None


def sqlite_file(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def ensure_private_file(path: Path) -> None:
    """Create the SQLite file with mode 0600 (and a missing directory 0700) before SQLite
    does, never through a symlink. The registry and its -wal/-shm must be ours and writable
    by no one else (refused otherwise: someone could have changed them), in directories no
    one else can write (keyadmin.files); when others can only read them they are tightened
    to 0600. SQLite gives its -wal and -shm files the main file's mode."""
    import stat

    from keyadmin.files import check_own_file, open_private

    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    os.close(open_private(path))
    for each in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            st = os.lstat(each)
        except FileNotFoundError:
            continue
        check_own_file(each, st)  # a symlink is not a regular file: refused
        if stat.S_IMODE(st.st_mode) & 0o077:
            each.chmod(0o600)


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


def get_engine(url: str) -> Engine:
    """One engine per URL per process, migrated to the current schema.

    A database that cannot be reached (or refuses the migration) is DatabaseError."""
    with _lock:
        engine = _engines.get(url)
        if engine is not None:
            return engine
        engine = _create(url)
        try:
            with database_errors("the registry database cannot be opened"):
                _migrate(engine)
        except BaseException:
            engine.dispose()
            raise
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
    global _generation
    with _lock:
        _generation += 1
        drop_all = [*_hot.by_url, *_hot.pg_by_url]
        for url in drop_all:
            drop_hot_connection(url)
        _sqlite_settings.clear()
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def driver_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` spelled with keyadmin's driver (psycopg 3)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def new_engine(
    url: str,
    *,
    sqlite_setup: Callable[[Engine, Path | None], None] | None = None,
    private_file: bool = True,
    what: str = "database",
) -> Engine:
    """The one engine factory: the registry, the metadata index and the application's table.

    PostgreSQL URLs in any spelling (``postgres://``, ``postgresql://``,
    ``postgresql+psycopg://``) get psycopg 3 and a pre-ping; SQLite files are created 0600
    first when ``private_file`` (keyadmin's own files), then ``sqlite_setup(engine, path)``
    installs the caller's connection events. Anything else is a ConfigError. No connection is
    opened here: the first one is made by the caller, inside its own error mapping
    (:func:`database_errors`).
    """
    from sqlalchemy import create_engine
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    url = driver_url(url)
    scheme = url.split("://", 1)[0]
    if scheme.split("+")[0] == "postgresql":
        try:
            return create_engine(url, pool_pre_ping=True)
        except ImportError:
            raise ConfigError(
                "PostgreSQL support is not installed",
                hint="pip install 'keyadmin[postgres]'",
            ) from None
        except (NoSuchModuleError, ArgumentError) as e:
            raise ConfigError(
                f"unsupported {what} URL {scheme}://… ({type(e).__name__})",
                hint="use postgresql://USER@HOST/DB",
            ) from None
    if scheme.split("+")[0] == "sqlite":
        path = sqlite_file(url)
        if path is None:
            engine = create_engine(url)
        else:
            if private_file:
                ensure_private_file(path)
            engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        if sqlite_setup is not None:
            sqlite_setup(engine, path)
        return engine
    raise ConfigError(
        f"unsupported {what} URL {scheme}://…",
        hint="use sqlite:///PATH or postgresql://USER@HOST/DB",
    )


def driver_error(e: BaseException) -> bool:
    """Whether ``e`` comes from the database or its driver (SQLAlchemy, psycopg, sqlite3):
    recognised by its module, so asking imports nothing."""
    return (type(e).__module__ or "").startswith(("sqlalchemy", "psycopg", "sqlite3"))


@contextmanager
def database_errors(doing: str) -> Iterator[None]:
    """A failure of the database or its driver (unreachable, refused) becomes DatabaseError.

    Recognised by the exception's module, so entering this imports nothing (the SQLite read
    path of the metadata index runs without SQLAlchemy)."""
    try:
        yield
    except DatabaseError:
        raise
    except Exception as e:
        if not driver_error(e):
            raise
        first = str(getattr(e, "orig", None) or e).splitlines()
        raise DatabaseError(
            f"{doing} ({type(e).__name__}: {first[0][:200] if first else ''})",
            hint="check that the database is reachable and the URL names it, then retry",
        ) from e


def _create(url: str) -> Engine:
    synchronous = sqlite_synchronous() if sqlite_file(url) is not None else ""

    def registry_sqlite(engine: Engine, path: Path | None) -> None:
        if path is None:
            return
        from sqlalchemy import event

        _sqlite_settings[url] = (path, synchronous)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
            _configure_sqlite(dbapi_conn, synchronous)

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            writer_lock(path)
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                writer_unlock(path)
                raise

        @event.listens_for(engine, "commit")
        def _on_commit(_conn: Connection) -> None:
            writer_unlock(path)

        @event.listens_for(engine, "rollback")
        def _on_rollback(_conn: Connection) -> None:
            writer_unlock(path)

    return new_engine(url, sqlite_setup=registry_sqlite, what="database")


def _configure_sqlite(dbapi_conn: sqlite3.Connection, synchronous: str) -> None:
    """Every SQLite connection keyadmin opens, pooled or hot: the same settings."""
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA synchronous={synchronous}")  # FULL or NORMAL, nothing else
    cur.execute("PRAGMA busy_timeout=30000")
    pages = WAL_AUTOCHECKPOINT_PAGES if synchronous == "FULL" else WAL_AUTOCHECKPOINT_PAGES_NORMAL
    cur.execute(f"PRAGMA wal_autocheckpoint={pages}")
    cur.close()


# ----------------------------------------------------------------------------- the writers' queue
class _WriterLocks(threading.local):
    def __init__(self) -> None:
        self.held: dict[str, list[int]] = {}  # file -> [fd, depth, pid]


_writers = _WriterLocks()
WRITER_WAIT_SECONDS = 30.0  # as SQLite's busy timeout: then the write fails, nothing stored


def writer_lock(path: Path) -> None:
    """Queue for the one SQLite write lock on a lock file beside the registry, before
    BEGIN IMMEDIATE: waiting writers sleep in the kernel's queue (``flock``) and the next one
    is woken when the lock is released, instead of retrying in SQLite's busy handler, whose
    sleeps grow to 100 ms (the tail latency of concurrent step-ups). Re-entrant per thread;
    each thread and process has its own open file (flock locks belong to it). A writer waits
    at most WRITER_WAIT_SECONDS, then fails with nothing stored."""
    import fcntl

    key = str(path)
    entry = _writers.held.get(key)
    if entry is not None and entry[2] != os.getpid():  # inherited through fork(): not ours
        entry = None
    if entry is None:
        fd = os.open(
            f"{path}-writers", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        entry = _writers.held[key] = [fd, 0, os.getpid()]
    if entry[1] == 0:
        try:
            fcntl.flock(entry[0], fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not _queue_for(entry[0], WRITER_WAIT_SECONDS):
                del _writers.held[key]  # the abandoned wait owns that file now
                raise DatabaseError(
                    f"another writer held the registry for {WRITER_WAIT_SECONDS:.0f} s; "
                    "nothing was stored",
                    hint="see which keyadmin command is still running, then retry",
                ) from None
    entry[1] += 1


def _queue_for(fd: int, timeout: float) -> bool:
    """A blocking flock with a deadline: the kernel's wait runs in a helper thread; a wait
    that outlives the deadline releases the lock as soon as it gets it and closes ``fd``."""
    import fcntl

    got, gave_up, done, guard = [False], [False], threading.Event(), threading.Lock()

    def wait() -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with guard:
            if gave_up[0]:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            else:
                got[0] = True
        done.set()

    threading.Thread(target=wait, name="keyadmin-writer-queue", daemon=True).start()
    done.wait(timeout)
    with guard:
        gave_up[0] = not got[0]
        return got[0]


def writer_unlock(path: Path) -> None:
    import fcntl

    entry = _writers.held.get(str(path))
    if entry is None or entry[1] == 0 or entry[2] != os.getpid():
        return
    entry[1] -= 1
    if entry[1] == 0:
        fcntl.flock(entry[0], fcntl.LOCK_UN)


# ----------------------------------------------------------------------------- hot connections
#: URL -> (file, synchronous) of every SQLite engine made here (what a hot connection copies).
_sqlite_settings: dict[str, tuple[Path, str]] = {}
#: Bumped by ``dispose_all``: a hot connection from an older generation is closed, not used.
_generation = 0
_HOT_PER_THREAD = 4


class _HotConnections(threading.local):
    def __init__(self) -> None:
        # url -> (pid, generation, conn)
        self.by_url: dict[str, tuple[int, int, sqlite3.Connection]] = {}
        self.pg_by_url: dict[str, tuple[int, int, PgConnection]] = {}


_hot = _HotConnections()


def hot_sqlite_connection(url: str) -> sqlite3.Connection | None:
    """This thread's own sqlite3 connection to ``url`` (None when ``url`` is not a SQLite
    file): opened once per thread and process, configured like the engine's connections,
    never shared. The step-up hot path uses it instead of a pool checkout (which costs more
    than the SQL it runs). The caller must leave it with no transaction open; a connection
    that failed is dropped with ``drop_hot_connection``.
    """
    get_engine(url)  # created and migrated, its settings recorded
    settings = _sqlite_settings.get(url)
    if settings is None:
        return None
    pid = os.getpid()
    hit = _hot.by_url.get(url)
    if hit is not None:
        if hit[0] == pid and hit[1] == _generation :
            return hit[2]
        drop_hot_connection(url)
    import sqlite3

    conn = sqlite3.connect(settings[0], timeout=30, check_same_thread=False)
    try:
        _configure_sqlite(conn, settings[1])
    except BaseException:
        conn.close()
        raise
    while len(_hot.by_url) >= _HOT_PER_THREAD:  # a few databases per thread, not hundreds
        drop_hot_connection(next(iter(_hot.by_url)))
    _hot.by_url[url] = (pid, _generation, conn)
    return conn


def hot_postgres_connection(url: str) -> tuple[PgConnection | None, bool]:
    """This thread's own psycopg connection to ``url`` in autocommit mode, and whether it was
    used before; (None, False) when ``url`` is not PostgreSQL. Taken once from the engine's
    pool (pre-pinged there) and detached from it, then kept for the thread's next step-ups
    (a checkout's pre-ping costs a round trip each time). A connection that failed is
    dropped with ``drop_hot_connection``; the caller replaces one found dead at its first,
    read-only statement.
    """
    engine = get_engine(url)
    if engine.dialect.name != "postgresql":
        return None, False
    pid = os.getpid()
    hit = _hot.pg_by_url.get(url)
    if hit is not None:
        if hit[0] == pid and hit[1] == _generation:
            return hit[2], True
        drop_hot_connection(url)
    proxied = engine.raw_connection()
    proxied.detach()  # closed when dropped, never given back to the pool
    conn = cast("PgConnection", proxied.dbapi_connection)
    try:
        conn.rollback()
        conn.autocommit = True
    except BaseException:
        conn.close()
        raise
    while len(_hot.pg_by_url) >= _HOT_PER_THREAD:
        drop_hot_connection(next(iter(_hot.pg_by_url)))
    _hot.pg_by_url[url] = (pid, _generation, conn)
    return conn, False


def drop_hot_connection(url: str) -> None:
    """Forget (and, in the process that opened it, close) this thread's hot connection.

    One inherited through fork() is never touched in the child, not even closed (SQLite
    forbids using a connection across fork): it is parked here for the child's lifetime."""
    hit = _hot.by_url.pop(url, None) or _hot.pg_by_url.pop(url, None)
    if hit is None:
        return
    if hit[0] != os.getpid():
        _inherited.append(hit[2])
        return
    try:
        hit[2].close()
    except Exception:  # noqa: BLE001, S110 - a broken connection is being discarded
        pass


_inherited: list[sqlite3.Connection | PgConnection | Engine] = []


def _migrate(engine: Engine) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


@contextmanager
def transaction(url: str) -> Iterator[Session]:
    """A sqlmodel Session in one transaction: committed at the end, rolled back on any error.

    A failure of the database itself (gone away, refused the commit) becomes DatabaseError,
    with nothing written.
    """
    from sqlmodel import Session

    engine = get_engine(url)
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
        pending = session.info.pop("keyadmin_notify", None)  # audit.PENDING_NOTIFICATIONS
        if pending:
            from keyadmin.notify import send

            send(pending)
    except Exception as e:
        session.rollback()
        # the ORM's errors, and the driver's own from statements run on the session's
        # connection (the log's append writes and seals through its DBAPI cursor)
        if driver_error(e):
            raise DatabaseError(
                f"the registry database refused the write; nothing was stored "
                f"({type(e).__name__})",
                hint="check that the database is reachable and writable, then retry",
            ) from e
        raise
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def open_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to a SQLite file (``mode=ro``): it can never write, and it
    waits up to 30 s for a lock, as keyadmin's other connections do."""
    import sqlite3

    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)


@contextmanager
def reading(url: str) -> Iterator[tuple[DbapiConnection, Dialect]]:
    """A read-only snapshot of the registry for a long read (the audit's scan): a DBAPI
    connection in one transaction, and the dialect to compile statements for; rolled back
    at the end.

    On SQLite a connection of its own, opened read-only, whose deferred transaction takes
    no writer lock: in WAL mode enrolments and step-ups go on while it reads (a
    ``transaction`` would hold the one writer lock throughout). Elsewhere a connection of
    the process's engine for the URL."""
    engine = get_engine(url)  # created and migrated
    path = sqlite_file(url)
    with database_errors("the registry database cannot be read"):
        if path is not None:
            con = open_read_only(path)
            try:
                con.isolation_level = None
                con.execute("BEGIN")
                yield cast("DbapiConnection", con), engine.dialect
            finally:
                con.close()  # ends the read transaction
            return
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            try:
                yield raw, engine.dialect
            finally:
                conn.rollback()


def in_forked_child() -> None:
    """Call first in a process made by fork() that will use the registry. The parent's
    engines (with their pooled connections) and hot connections are parked: never used,
    never closed here (SQLite forbids using a connection across fork; closing a PostgreSQL
    one would end the parent's session). This process opens its own; the schema was
    migrated by the parent, so its engines are not migrated again."""
    global _lock
    _lock = threading.Lock()  # another thread of the parent may have held it at the fork
    for url, engine in list(_engines.items()):
        _inherited.append(engine)
        _engines[url] = _create(url)
    for url in [*_hot.by_url, *_hot.pg_by_url]:
        drop_hot_connection(url)  # opened by another pid: parked


@dataclass(frozen=True)
class Registry:
    """keyadmin's registry database, named by its URL (``sqlite:///PATH`` or
    ``postgresql://…``): the handle the step-up API is given, instead of a bare string.

    ``transaction()`` is its unit of work (a sqlmodel Session, committed at the end); its
    engine is the process's one engine for the URL (``get_engine``). The URL may carry a
    password: it is left out of ``repr``.
    """

    url: str = field(repr=False)

    @classmethod
    def of(cls, db: Registry | str) -> Registry:
        """``db`` as a Registry (a URL string is wrapped)."""
        return db if isinstance(db, Registry) else cls(db)

    def transaction(self) -> AbstractContextManager[Session]:
        return transaction(self.url)

    def engine(self) -> Engine:
        return get_engine(self.url)

    def __repr__(self) -> str:
        return f"Registry({self.url.split('://', 1)[0]}://…)"
