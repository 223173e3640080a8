"""The application's credential table, in the application's own database (SQLite or PostgreSQL).

keyadmin writes approved credentials into that table; the application reads them at sign-in
and advances their counters. A mapping file (``policies/app-mapping.example.toml``, loaded by
:func:`keyadmin.store.appmapping.load_mapping`) names the table and its columns; the
defaults follow the common schema (credential_id, user_id, public_key as COSE bytes,
sign_count, transports, device_type, backed_up, created_at, last_used_at).

Everything here is SQLAlchemy Core on the target URL: table and column names come from the
mapping and are quoted by SQLAlchemy's compiler (``Table``/``Column`` objects, never string
formatting); values always travel as bound parameters. The table is reflected from the
database (its real column types decide how values are encoded); nothing is created unless
``create=True`` (``keyadmin sync --create-table``).

One :meth:`AppStore.transaction` is one database transaction: SQLite begins IMMEDIATE,
PostgreSQL runs READ COMMITTED and every counter write is guarded (never lowers a counter).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keyadmin.b64 import decode_url, encode_url
from keyadmin.errors import KeyadminError
from keyadmin.store.appmapping import DERIVED_PREFIX, FIELDS, Derived, Mapping
from keyadmin.store.appmapping import load_mapping as load_mapping  # the callers' one import
from keyadmin.store.registry import MAX_SIGN_COUNT

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from keyadmin.store.sync_state import RegistryCredential

#: Values per IN list.
CHUNK = 1000
#: The page cache of keyadmin's connection to an application's SQLite file, in KiB.
APP_SQLITE_CACHE_KB = 64 * 1024
#: The column values of one credential's row, keyed by field (``DERIVED_PREFIX`` + column for
#: a derived column): bytes, text, numbers, booleans, datetimes, a list of transports, None.
Values = dict[str, object]


class AppStoreError(KeyadminError):
    """The application's database refused an operation; nothing was written there."""


# -- values ------------------------------------------------------------------------------------


def encode_id(raw: bytes, encoding: str) -> bytes | str:
    if encoding == "bytes":
        return raw
    if encoding == "hex":
        return raw.hex()
    return encode_url(raw)


def decode_id(value: object, encoding: str) -> bytes:
    if value is None:
        return b""
    if isinstance(value, memoryview):
        return value.tobytes()
    if isinstance(value, bytes):
        return value
    text = str(value)
    try:
        if encoding == "hex":
            raw = bytes.fromhex(text)
        else:
            raw = decode_url(text, padding=False)
    except ValueError:
        raw = None
    if raw is not None and encode_id(raw, encoding) == text:
        return raw
    # Not keyadmin's spelling (upper-case hex, padded or standard base64, ...): a row
    # keyadmin never wrote. It stays a distinct key, so it is reported as drift, never
    # taken for (and silently left in place of) the credential it may also spell.
    return NOT_CANONICAL + text.encode("utf-8", "surrogateescape")


#: Marks a credential id column value that is not keyadmin's spelling of any id (the text
#: follows): such a row is keyed, found, reported and pruned by exactly what is stored.
NOT_CANONICAL = b"\x00not-canonical:"


def display_id(raw: bytes) -> str:
    """A decoded id for people: hex, or the stored text of a row spelt otherwise."""
    if raw.startswith(NOT_CANONICAL):
        return "as stored: " + raw[len(NOT_CANONICAL) :].decode("utf-8", "surrogateescape")
    return raw.hex()


def utc(value: object) -> datetime | None:
    """Aware UTC datetimes from whatever a driver returns (naive means UTC)."""
    if value is None:
        return None
    if type(value) is datetime and value.tzinfo is UTC:
        return value
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_counter(value: object) -> int | None:
    """The application's stored counter as an int, or None when it is not a WebAuthn counter
    (not a whole number, negative, above 2^32-1). A NULL counter reads as 0."""
    if value is None:
        return 0
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        n = value
    elif isinstance(value, (float, Decimal)):
        try:
            n = int(value)
        except (ValueError, OverflowError):  # NaN, infinity
            return None
        if n != value:  # a fraction
            return None
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        n = int(value)
    else:
        return None
    return n if 0 <= n <= MAX_SIGN_COUNT else None


@dataclass(frozen=True)
class AppRow:
    """One row of the application's table, decoded to keyadmin's terms."""

    credential_id: bytes
    sign_count: int | None  # None: the stored value is not a counter (values has it as stored)
    values: Values  # field -> value as the database returned it (normalised)
    disabled: bool
    last_used_at: datetime | None
    created_at: datetime | None


# -- the table -----------------------------------------------------------------------------------


def _engine(url: str) -> Any:
    from keyadmin.store.db import new_engine

    def app_sqlite(engine: Any, _path: Any) -> None:
        from sqlalchemy import event

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout=30000")
            # this connection's page cache (SQLite's default is 2 MB): a first sync of a
            # million rows inserts random credential ids into the table's indexes
            cur.execute(f"PRAGMA cache_size={-APP_SQLITE_CACHE_KB}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    # the application's own file: created and permissioned by the application, not by us
    return new_engine(url, sqlite_setup=app_sqlite, private_file=False, what="target")


def redact(url: str) -> str:
    """The URL without its password, for labels and logs."""
    from sqlalchemy.engine import make_url

    try:
        return str(make_url(url).set(password=None)) if "://" in url else url
    except Exception:  # noqa: BLE001 - a label only
        return url.split("@")[-1]


class AppStore:
    """The application's credential table at ``url`` described by ``mapping``."""

    def __init__(self, url: str, mapping: Mapping) -> None:
        self.url = url
        self.mapping = mapping
        self.engine = _engine(url)
        self.table: Any = None
        self._kind: dict[str, str] = {}
        self._naive: dict[str, bool] = {}  # field -> its column holds times without a zone
        self._fields: list[str] = [f for f in FIELDS if mapping.column(f)]
        self._fields += [DERIVED_PREFIX + d.column for d in mapping.derived]
        self._names: list[tuple[str, str]] = [(f, str(mapping.column(f))) for f in self._fields]
        self._transports: dict[tuple[str, ...], Any] = {}
        self.users: Any = None  # the application's user table (mapping.user_lookup)
        # keyadmin user handle -> the application's user id, or why there is none
        self._app_users: dict[bytes, tuple[Any, str]] = {}
        self._handle_writes: dict[Any, Any] = {}  # app user id -> handle to write
        self._handle_inserts: dict[Any, Any] = {}  # the same, where no handle row exists
        self.handles: Any = None  # user_lookup.handle_table

    def close(self) -> None:
        self.engine.dispose()

    def _require_file(self, create: bool) -> None:
        """A SQLite target that does not exist is a typo, not a new database: SQLite would
        create an empty file at the mistyped path. Only --create-table makes one."""
        from sqlalchemy.engine import make_url

        if not self.url.startswith("sqlite") or create:
            return
        path = make_url(self.url).database
        if path and path != ":memory:" and not path.startswith("file:") and not Path(path).exists():
            raise AppStoreError(
                f"no application database at {path}",
                hint="check the path in --target (sqlite:///PATH), or pass --create-table to "
                "create a new database with the common schema",
            )

    # -- schema --------------------------------------------------------------------------------
    def _default_table(self, md: Any) -> Any:
        from sqlalchemy import (
            BigInteger,
            Boolean,
            Column,
            DateTime,
            LargeBinary,
            String,
            Table,
            Text,
        )

        m = self.mapping
        types: dict[str, Any] = {
            "credential_id": LargeBinary if m.credential_id_encoding == "bytes" else String(700),
            "user_id": LargeBinary if m.user_id_encoding == "bytes" else String(400),
            "public_key": LargeBinary,
            "sign_count": BigInteger,  # WebAuthn counters are unsigned 32-bit
            "transports": Text,
            "device_type": String(32),
            "backed_up": Boolean,
            "created_at": DateTime(timezone=True),
            "last_used_at": DateTime(timezone=True),
        }
        cols = []
        for f in FIELDS:
            name = m.column(f)
            if name is None:
                continue
            cols.append(
                Column(
                    name,
                    types[f],
                    primary_key=f == "credential_id",
                    nullable=f not in ("credential_id", "user_id", "public_key", "sign_count"),
                    index=f in ("user_id", "last_used_at", "created_at"),
                )
            )
        if m.disabled_column:
            cols.append(Column(m.disabled_column, Boolean, nullable=False, default=False))
        return Table(m.table, md, *cols, schema=m.schema)

    def prepare(self, conn: Connection, *, create: bool = False) -> None:
        """Reflect the table (or create it when ``create``); check every mapped column exists."""
        from sqlalchemy import MetaData, inspect

        m = self.mapping
        exists = inspect(conn).has_table(m.table, schema=m.schema)
        md = MetaData()
        if not exists:
            if not create:
                raise AppStoreError(
                    f"the application's database has no table {m.describe()!r}",
                    hint="check the mapping file's [table] name, or pass --create-table to "
                    "create it with the common schema",
                )
            table = self._default_table(md)
            md.create_all(conn)
        else:
            table = _columns_of(conn, md, m.table, m.schema)
        wanted = [m.column(f) for f in FIELDS if m.column(f)] + (
            [m.disabled_column] if m.disabled_column else []
        )
        missing = [c for c in wanted if c not in table.c]
        if missing:
            raise AppStoreError(
                f"table {m.describe()!r} has no column(s) {', '.join(map(repr, missing))}",
                hint=f"map the fields to existing columns in {m.source}, or '' to leave one out",
            )
        for d in m.derived:
            if d.column not in table.c:
                raise AppStoreError(
                    f"{m.source}: derived.{d.column}: table {m.describe()!r} has no column "
                    f"{d.column!r}",
                    hint="name an existing column of the credential table",
                )
        self.table = table
        self._naive.clear()
        for f in self._fields:
            name = m.column(f)
            if name:
                self._kind[f] = _kind(table.c[name].type)
        lk = m.user_lookup
        if lk is not None:
            on_users = ("id_column", "match_column")
            self.users = self._reflect(conn, md, "table", lk.table, lk.schema, on_users)
            if lk.handle_table:
                keys = ("handle_user_column", "handle_column")
                self.handles = self._reflect(
                    conn, md, "handle_table", lk.handle_table, lk.schema, keys
                )
            else:
                self._reflect(conn, md, "table", lk.table, lk.schema, ("handle_column",))

    def _reflect(
        self,
        conn: Connection,
        md: Any,
        key: str,
        name: str,
        schema: str | None,
        columns: Sequence[str],
    ) -> Any:
        """A table of the user lookup; an error names the mapping file, key and column."""
        from sqlalchemy import inspect

        lk = self.mapping.user_lookup
        src = self.mapping.source
        shown = f"{schema + '.' if schema else ''}{name}"
        if name in md.tables or (schema and f"{schema}.{name}" in md.tables):
            table = md.tables[f"{schema}.{name}" if schema else name]
        elif not inspect(conn).has_table(name, schema=schema):
            raise AppStoreError(
                f"{src}: user_lookup.{key}: the application's database has no table {shown!r}",
                hint="name the application's table",
            )
        else:
            table = _columns_of(conn, md, name, schema)
        for k in columns:
            col = getattr(lk, k)
            if col is not None and col not in table.c:
                raise AppStoreError(
                    f"{src}: user_lookup.{k}: table {shown!r} has no column {col!r}",
                    hint="name an existing column of that table",
                )
        return table

    # -- the application's users ---------------------------------------------------------------
    def resolve_users(self, conn: Connection, creds: Iterable[RegistryCredential]) -> None:
        """Find the application's user of each credential's keyadmin user (user_lookup):
        by name or user handle, in chunked IN lists. A user with none, or whose WebAuthn
        user handle in the application is another, is remembered with the reason
        (:meth:`user_problem`); an empty handle column is planned to get keyadmin's."""
        lk = self.mapping.user_lookup
        if lk is None or self.users is None:
            return
        wanted: dict[Any, bytes] = {}  # match value -> keyadmin user handle
        for c in creds:
            if c.user_handle in self._app_users:
                continue
            key = (
                c.user_name if lk.match == "user_name" else _spell(c.user_handle, lk.match_encoding)
            )
            if key is None:
                self._app_users[c.user_handle] = (
                    None,
                    f"its user handle cannot be spelt as {lk.match_encoding} text",
                )
                continue
            wanted[key] = c.user_handle
        u = self.users.c
        cols = [u[lk.id_column], u[lk.match_column]]
        if lk.handle_column and self.handles is None:
            cols.append(u[lk.handle_column])
        from sqlalchemy import select

        found: dict[Any, list[Any]] = {}
        keys = list(wanted)
        for i in range(0, len(keys), CHUNK):
            q = select(*cols).where(u[lk.match_column].in_(keys[i : i + CHUNK]))
            for r in conn.execute(q):
                found.setdefault(r[1], []).append(r)
        related: dict[Any, Any] = {}  # app user id -> handle row's value (handle_table)
        if self.handles is not None:
            h = self.handles.c
            ids = [rows[0][0] for rows in found.values() if len(rows) == 1]
            for i in range(0, len(ids), CHUNK):
                q = select(h[lk.handle_user_column], h[str(lk.handle_column)]).where(
                    h[lk.handle_user_column].in_(ids[i : i + CHUNK])
                )
                related.update((r[0], r[1]) for r in conn.execute(q))
        for key, handle in wanted.items():
            rows = found.get(key, [])
            if not rows:
                self._app_users[handle] = (
                    None,
                    f"no user in {lk.describe()!r} with {lk.match_column} = {str(key)[:80]!r}",
                )
                continue
            if len(rows) > 1:
                self._app_users[handle] = (
                    None,
                    f"{len(rows)} users in {lk.describe()!r} with {lk.match_column} = "
                    f"{str(key)[:80]!r}",
                )
                continue
            r = rows[0]
            app_id = r[0]
            if lk.handle_column:
                mine = _spell(handle, lk.handle_encoding)
                theirs = r[2] if self.handles is None else related.get(app_id)
                if isinstance(theirs, memoryview):
                    theirs = theirs.tobytes()
                if theirs is None or theirs == "" or theirs == b"":
                    if mine is None:
                        self._app_users[handle] = (
                            None,
                            f"its keyadmin user handle cannot be written to "
                            f"{lk.handle_column} as {lk.handle_encoding} (enrol the user with "
                            "--user-handle)",
                        )
                        continue
                    if self.handles is not None and app_id not in related:
                        self._handle_inserts[app_id] = mine
                    else:
                        self._handle_writes[app_id] = mine
                elif mine is None or not _same(theirs, mine):
                    self._app_users[handle] = (
                        None,
                        f"the application's user {app_id!r} has another WebAuthn user handle "
                        f"({lk.handle_column}); its sign-in would refuse keyadmin's credential",
                    )
                    continue
            self._app_users[handle] = (app_id, "")

    def user_problem(self, cred: RegistryCredential) -> str | None:
        """Why no row can be written for this credential's user (None: it can)."""
        if self.mapping.user_lookup is None:
            return None
        app_id, why = self._app_users.get(cred.user_handle, (None, "not looked up"))
        return why if app_id is None else None

    def write_user_handles(self, conn: Connection) -> int:
        """Give the application's users planned by :meth:`resolve_users` keyadmin's user
        handle, only where their handle column is still empty."""
        from sqlalchemy import bindparam, or_

        lk = self.mapping.user_lookup
        if lk is None or not lk.handle_column:
            return 0
        done = 0
        if self._handle_inserts:  # handle_table: a new row for each user without one
            h = self.handles.c
            conn.execute(
                self.handles.insert(),
                [
                    {h[str(lk.handle_user_column)].key: k, h[lk.handle_column].key: v}
                    for k, v in self._handle_inserts.items()
                ],
            )
            done += len(self._handle_inserts)
            self._handle_inserts.clear()
        if self._handle_writes:
            table = self.users if self.handles is None else self.handles
            key = lk.id_column if self.handles is None else str(lk.handle_user_column)
            col = table.c[lk.handle_column]
            stmt = (
                table.update()
                .where(table.c[key] == bindparam("k_id"), or_(col.is_(None), col == ""))
                .values({col: bindparam("v_handle")})
            )
            params = [{"k_id": k, "v_handle": v} for k, v in self._handle_writes.items()]
            changed = conn.execute(stmt, params).rowcount
            done += changed if changed is not None and changed >= 0 else len(params)
            self._handle_writes.clear()
        return done

    # -- transactions ----------------------------------------------------------------------------
    @contextmanager
    def transaction(self, *, create: bool = False, commit: bool = True) -> Iterator[Connection]:
        """One transaction on the application's database; ``commit=False`` rolls back."""
        from sqlalchemy.exc import SQLAlchemyError

        self._require_file(create)
        try:
            with self.engine.connect() as conn:
                tx = conn.begin()
                try:
                    self._serialise(conn)
                    self.prepare(conn, create=create)
                    yield conn
                except BaseException:
                    tx.rollback()
                    raise
                if commit:
                    tx.commit()
                else:
                    tx.rollback()
        except Exception as e:
            # SQLAlchemy's errors, and the driver's own from the COPY path (psycopg raises
            # outside SQLAlchemy there)
            if not isinstance(e, SQLAlchemyError) and not (type(e).__module__ or "").startswith(
                ("psycopg", "sqlite3")
            ):
                raise
            raise AppStoreError(
                f"the application's database refused the sync; nothing was written there "
                f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})",
                hint="check the target URL, the mapping and the table's permissions",
            ) from e

    def _serialise(self, conn: Connection) -> None:
        """One sync per table at a time on PostgreSQL (SQLite's BEGIN IMMEDIATE already is).

        A transaction-scoped advisory lock: it serialises keyadmin runs only, never the
        application's own reads and writes, and is released by commit, rollback or a dead
        connection.
        """
        if conn.dialect.name != "postgresql":
            return
        import hashlib

        from sqlalchemy import text

        digest = hashlib.sha256(f"keyadmin-sync:{self.mapping.describe()}".encode()).digest()
        conn.execute(
            text("SELECT pg_advisory_xact_lock(:k)"),
            {"k": int.from_bytes(digest[:8], "big", signed=True)},
        )

    # -- encoding ----------------------------------------------------------------------------------
    def _cid_param(self, raw: bytes) -> bytes | str:
        if raw.startswith(NOT_CANONICAL):  # a row spelt otherwise: its stored text
            return raw[len(NOT_CANONICAL) :].decode("utf-8", "surrogateescape")
        if self._kind.get("credential_id") == "bytes":
            return raw
        enc = self.mapping.credential_id_encoding
        return encode_id(raw, "base64url" if enc == "bytes" else enc)

    def _cid_decode(self, value: object) -> bytes:
        if self._kind.get("credential_id") == "bytes":
            return decode_id(value, "bytes")
        enc = self.mapping.credential_id_encoding
        return decode_id(value, "base64url" if enc == "bytes" else enc)

    def desired(self, cred: RegistryCredential) -> Values:
        """The column values (keyed by field) an approved credential should have.

        With a user lookup, :meth:`resolve_users` must have found the user
        (:meth:`user_problem` is None)."""
        m = self.mapping
        if m.user_lookup is not None:
            user_id: Any = self._app_users[cred.user_handle][0]
        elif m.user_id_source == "user_name":
            user_id = cred.user_name
        elif self._kind.get("user_id") == "bytes":
            user_id = cred.user_handle
        else:
            uenc = m.user_id_encoding
            user_id = encode_id(cred.user_handle, "base64url" if uenc == "bytes" else uenc)
        transports: Any = self._transports.get(cred.transports)
        if transports is None:
            if self._kind.get("transports") == "json":
                transports = list(cred.transports)
            elif m.transports_encoding == "comma":
                transports = ",".join(cred.transports)
            else:
                transports = json.dumps(list(cred.transports), separators=(",", ":"))
            self._transports[cred.transports] = transports
        last_used = utc(cred.last_used_at)
        if last_used is None and m.last_used_unset == "created_at":
            last_used = utc(cred.created_at)
        out: Values = {
            "credential_id": self._cid_param(cred.credential_id),
            "user_id": user_id,
            "public_key": cred.public_key,
            "sign_count": cred.sign_count,
            "transports": transports,
            "device_type": m.device_type_multi if cred.backup_eligible else m.device_type_single,
            "backed_up": bool(cred.backed_up),
            "created_at": utc(cred.created_at),
            "last_used_at": last_used,
        }
        for d in m.derived:
            out[DERIVED_PREFIX + d.column] = self._derive(d, cred)
        if len(out) == len(self._fields):  # every field mapped (the common case): all of them
            return out
        return {f: out[f] for f in self._fields}

    def _derive(self, d: Derived, cred: RegistryCredential) -> object:
        if d.source is None:
            return d.value
        binary = self._kind.get(DERIVED_PREFIX + d.column) == "bytes"
        raw: bytes
        if d.source == "nickname":
            return getattr(cred, "nickname", None) or d.default
        if d.source == "user_name":
            return cred.user_name
        if d.source == "backup_eligible":
            return bool(cred.backup_eligible)
        if d.source == "aaguid":
            import uuid

            text = getattr(cred, "aaguid", "") or ""
            try:
                raw = uuid.UUID(text).bytes
            except ValueError:
                return d.default
            fmt = d.format if d.format != "auto" else ("bytes" if binary else "uuid")
            if fmt == "uuid":
                return str(uuid.UUID(bytes=raw))
        elif d.source == "credential_id_sha256":
            import hashlib

            raw = hashlib.sha256(cred.credential_id).digest()
            fmt = d.format if d.format != "auto" else ("bytes" if binary else "hex")
        else:  # credential_id
            raw = cred.credential_id
            fmt = d.format if d.format != "auto" else ("bytes" if binary else "base64url")
        return raw if fmt == "bytes" else encode_id(raw, fmt)

    def normalise(self, f: str, value: object) -> object:
        if value is None:
            return None
        if isinstance(value, memoryview):
            return value.tobytes()
        if f in ("created_at", "last_used_at"):
            return utc(value)
        if f == "backed_up":
            return bool(value)
        if f == "transports" and self._kind.get("transports") == "json":
            return list(value) if isinstance(value, Iterable) else value
        return value

    # -- reads --------------------------------------------------------------------------------
    def _row(self, r: Any) -> AppRow:
        m = self.mapping
        values = {}
        for f in self._fields:
            name = m.column(f)
            if name:
                values[f] = self.normalise(f, r._mapping[self.table.c[name]])
        disabled = bool(r._mapping[self.table.c[m.disabled_column]]) if m.disabled_column else False
        return AppRow(
            credential_id=self._cid_decode(values["credential_id"]),
            sign_count=parse_counter(values["sign_count"]),
            values=values,
            disabled=disabled,
            last_used_at=utc(values.get("last_used_at")),
            created_at=utc(values.get("created_at")),
        )

    def _select(self) -> Any:
        from sqlalchemy import select

        return select(self.table)

    def rows_for(self, conn: Connection, credential_ids: Sequence[bytes]) -> dict[bytes, AppRow]:
        """The table's rows for these credential ids (chunked IN lists)."""
        col = self.table.c[self.mapping.column("credential_id")]
        out: dict[bytes, AppRow] = {}
        ids = list(credential_ids)
        for i in range(0, len(ids), CHUNK):
            params = [self._cid_param(c) for c in ids[i : i + CHUNK]]
            for r in conn.execute(self._select().where(col.in_(params))):
                row = self._row(r)
                out[row.credential_id] = row
        return out

    def all_rows(self, conn: Connection) -> Iterator[AppRow]:
        for rows in self.row_batches(conn, 5000):
            yield from rows

    def row_batches(self, conn: Connection, size: int) -> Iterator[list[AppRow]]:
        """Every row of the table, ``size`` at a time, streamed: a server-side cursor on
        PostgreSQL (SQLAlchemy's ``yield_per``), SQLite's own stepping cursor. The caller
        may run other statements on ``conn`` between batches, but not write this table."""
        for part in conn.execute(self._select()).yield_per(size).partitions():
            yield [self._row(r) for r in part]

    def _dt(self, field: str, value: object) -> object:
        """A time bound for ``field``'s column as the column holds it: a column without a
        time zone holds UTC wall time (how keyadmin reads it), so it gets a naive UTC value -
        never a timestamptz that PostgreSQL would shift by the session's time zone."""
        if not isinstance(value, datetime) or value.tzinfo is None:
            return value
        naive = self._naive.get(field)
        if naive is None:
            name = self.mapping.column(field)
            col_type = self.table.c[name].type if name else None
            naive = self._naive[field] = (
                col_type is not None and getattr(col_type, "timezone", True) is False
            )
        if naive:
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    def rows_touched_since(
        self, conn: Connection, used_since: datetime | None, created_since: datetime | None
    ) -> list[AppRow]:
        """Rows the application used (last_used_at >= mark) or added (created_at > mark).

        A mark of None means no row carried a value then: every row that has one now.
        Without both columns in the mapping, every row is read.
        """
        from sqlalchemy import or_

        m = self.mapping
        used_col = m.column("last_used_at")
        created_col = m.column("created_at")
        if not used_col or not created_col:
            return list(self.all_rows(conn))
        used, created = self.table.c[used_col], self.table.c[created_col]
        conds = [
            self._has_value(used)
            if used_since is None
            else used >= self._dt("last_used_at", used_since),
            self._has_value(created)
            if created_since is None
            else created > self._dt("created_at", created_since),
        ]
        return [self._row(r) for r in conn.execute(self._select().where(or_(*conds)))]

    def _has_value(self, col: Any) -> Any:
        """``col IS NOT NULL``, spelt ``col >= (SELECT min(col) FROM table)``: the same rows
        (min skips NULLs; every other value is at least the smallest), but a range that an
        index on ``col`` answers. SQLite plans ``IS NOT NULL`` (and an OR holding it) as a
        scan of the whole table: 37 ms at 100,000 rows against 0.1 ms this way."""
        from sqlalchemy import func, select

        return col >= select(func.min(col)).select_from(self.table).scalar_subquery()

    def marks(self, conn: Connection) -> tuple[datetime | None, datetime | None]:
        """(max last_used_at, max created_at) in the table, each None without its column
        (or any value): the next run's marks, read in one statement, each maximum in a
        subquery of its own (an index answers each; one SELECT of two maxima scans the table)."""
        from sqlalchemy import func, select

        m = self.mapping
        cols = [m.column("last_used_at"), m.column("created_at")]
        present = [
            select(func.max(self.table.c[c])).select_from(self.table).scalar_subquery()
            for c in cols
            if c
        ]
        if not present:
            return None, None
        found = iter(conn.execute(select(*present)).one())
        used, created = (utc(next(found)) if c else None for c in cols)
        return used, created

    def census(self, conn: Connection, created_since: datetime | None) -> tuple[int, int]:
        """(rows in the table, rows added since the mark: created_at after ``created_since``,
        or with any created_at when there was no mark). Without a created_at column no row
        can be told to be new: (rows, 0).

        One statement of two counts: both see the same snapshot (under PostgreSQL's READ
        COMMITTED two statements would not, and a back-dated row plus a new one committed
        between them would cancel out), and each is answered its own way - the row count
        from the table's smallest index, the new rows from an index on created_at where the
        table has one (the common schema does) - instead of judging every row in one scan."""
        from sqlalchemy import func, select

        total = select(func.count()).select_from(self.table).scalar_subquery()
        created_col = self.mapping.column("created_at")
        if not created_col:
            return int(conn.execute(select(total)).scalar_one()), 0
        created = self.table.c[created_col]
        new = (
            self._has_value(created)
            if created_since is None
            else created > self._dt("created_at", created_since)
        )
        added = select(func.count()).select_from(self.table).where(new).scalar_subquery()
        r = conn.execute(select(total, added)).one()
        return int(r[0]), int(r[1])

    # -- writes -------------------------------------------------------------------------------
    def _cols(self, values: Values) -> Values:
        return {name: self._dt(f, values[f]) for f, name in self._names if f in values}

    def insert(self, conn: Connection, rows: Sequence[Values]) -> int:
        if not rows:
            return 0
        if conn.dialect.name == "sqlite" and self._executemany(conn, rows):
            return len(rows)
        m = self.mapping
        payload = []
        for values in rows:
            cols = self._cols(values)
            if m.disabled_column:
                cols[m.disabled_column] = False
            payload.append(cols)
        if conn.dialect.name == "postgresql" and "json" not in self._kind.values():
            self._copy_in(conn, payload)
            return len(payload)
        for i in range(0, len(payload), 5000):
            conn.execute(self.table.insert(), payload[i : i + 5000])
        return len(payload)

    def _executemany(self, conn: Connection, rows: Sequence[Values]) -> bool:
        """SQLite: the INSERT compiled by SQLAlchemy for these columns, each value encoded by
        its column type's own bind processor (SQLAlchemy's, so the stored text of a datetime
        is exactly what SQLAlchemy writes and reads), run by the driver's ``executemany`` on
        the same connection and transaction. SQLAlchemy's per-row parameter handling would
        cost more than SQLite's own work at 100,000s of rows: each row's parameters are built
        in one pass from its values. False (nothing written) when the statement is not the
        plain positional one expected."""
        from sqlalchemy import Boolean, LargeBinary

        dialect = conn.dialect
        m = self.mapping
        field_of: dict[str, str | None] = {n: f for f, n in self._names if f in rows[0]}
        if m.disabled_column:
            field_of[m.disabled_column] = None  # always False: a row keyadmin writes is enabled
        compiled = self.table.insert().compile(dialect=dialect, column_keys=list(field_of))
        order = list(compiled.positiontup or ())
        if sorted(order) != sorted(field_of):
            return False
        plan: list[tuple[str | None, bool, Callable[[object], object] | None]] = []
        for k in order:
            col_type = self.table.c[k].type
            proc = col_type.dialect_impl(dialect).bind_processor(dialect)
            f = field_of[k]
            if isinstance(col_type, (LargeBinary, Boolean)) and not (f or "").startswith(
                DERIVED_PREFIX
            ):
                # keyadmin's own fields hold bytes and bools here: sqlite3.Binary is a
                # memoryview and SQLite's Boolean processor int(), and the driver binds bytes
                # and bools (an int subclass) the same way without them. A derived column's
                # configured value still goes through its type's processor (and its checks).
                proc = None
            plan.append((f, f is not None and self._kind.get(f) == "datetime", proc))
        params = []
        for values in rows:
            vals: list[object] = []
            for f, when, proc in plan:
                v = False if f is None else values[f]
                if when and f is not None:
                    v = self._dt(f, v)
                if v is not None and proc is not None:
                    v = proc(v)
                vals.append(v)
            params.append(vals)
        raw = conn.connection.dbapi_connection
        assert raw is not None  # a connection checked out of the pool
        cur = raw.cursor()
        try:
            cur.executemany(str(compiled), params)
        finally:
            cur.close()
        return True

    def _copy_in(self, conn: Connection, payload: Sequence[Values]) -> None:
        """PostgreSQL: COPY … FROM STDIN on the same connection (and transaction).

        Names are composed with psycopg.sql.Identifier (quoted); values are rows handed to
        psycopg's COPY writer, never SQL text.
        """
        from psycopg import sql

        m = self.mapping
        cols = list(payload[0])
        ident = sql.Identifier(m.schema, m.table) if m.schema else sql.Identifier(m.table)
        stmt = sql.SQL("COPY {} ({}) FROM STDIN").format(
            ident, sql.SQL(", ").join(sql.Identifier(c) for c in cols)
        )
        raw: Any = conn.connection.dbapi_connection  # psycopg's Connection (its COPY API)
        with raw.cursor() as cur, cur.copy(stmt) as copy:
            for row in payload:
                copy.write_row(tuple(row[c] for c in cols))

    def update(self, conn: Connection, changes: Sequence[tuple[bytes, Values]]) -> int:
        """Apply per-row changes (field -> value); sign_count never goes down."""
        from sqlalchemy import bindparam, case, or_

        if not changes:
            return 0
        m = self.mapping
        t = self.table
        cid_col = t.c[m.column("credential_id")]
        count_col = t.c[m.column("sign_count")]
        groups: dict[tuple[str, ...], list[Values]] = {}
        for cid, values in changes:
            key = tuple(sorted(values))
            one = {f"v_{f}": self._dt(f, v) if f != "disabled" else v for f, v in values.items()}
            one["k_cid"] = self._cid_param(cid)
            groups.setdefault(key, []).append(one)
        done = 0
        for fields, params in groups.items():
            assign: dict[Any, Any] = {}
            for f in fields:
                if f == "disabled":
                    assign[t.c[m.disabled_column]] = bindparam("v_disabled")
                elif f == "sign_count":
                    new: Any = bindparam("v_sign_count")
                    assign[count_col] = case((count_col < new, new), else_=count_col)
                elif f == "last_used_at":  # like the counter: never moved back (a sign-in
                    used = t.c[m.column(f)]  # committed after this run read the row stays)
                    when: Any = bindparam("v_last_used_at")
                    assign[used] = case((or_(used.is_(None), used < when), when), else_=used)
                else:
                    assign[t.c[m.column(f)]] = bindparam(f"v_{f}")
            stmt = t.update().where(cid_col == bindparam("k_cid")).values(assign)
            for i in range(0, len(params), 5000):
                batch = params[i : i + 5000]
                changed = conn.execute(stmt, batch).rowcount
                done += changed if changed is not None and changed >= 0 else len(batch)
        return done

    def delete(self, conn: Connection, credential_ids: Iterable[bytes]) -> int:
        ids = [self._cid_param(c) for c in credential_ids]
        if not ids:
            return 0
        col = self.table.c[self.mapping.column("credential_id")]
        done = 0
        for i in range(0, len(ids), CHUNK):
            batch = ids[i : i + CHUNK]
            gone = conn.execute(self.table.delete().where(col.in_(batch))).rowcount
            done += gone if gone is not None and gone >= 0 else len(batch)
        return done


def _columns_of(conn: Connection, md: Any, name: str, schema: str | None) -> Any:
    """The table's columns (names, reflected types, nullability) as a ``Table`` in ``md``: one
    catalog query, where a full reflection asks for keys, indexes, constraints and comments
    too (most of a no-change sync's time on PostgreSQL). keyadmin's statements name their
    columns and never rely on the table's keys or defaults."""
    from sqlalchemy import Column, Table, inspect

    cols = inspect(conn).get_columns(name, schema=schema)
    return Table(
        name,
        md,
        *(Column(c["name"], c["type"], nullable=c.get("nullable", True)) for c in cols),
        schema=schema,
    )


def _spell(handle: bytes, encoding: str) -> bytes | str | None:
    """A user handle as the application's column spells it (None: it cannot)."""
    if encoding == "utf8":
        try:
            return handle.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return encode_id(handle, encoding)


def _same(stored: object, mine: object) -> bool:
    import hmac

    a = stored if isinstance(stored, bytes) else str(stored).encode("utf-8")
    b = mine if isinstance(mine, bytes) else str(mine).encode("utf-8")
    return hmac.compare_digest(a, b)


def _kind(sa_type: object) -> str:
    """bytes, json, int, bool, datetime or text: how values for a column are encoded."""
    from sqlalchemy import JSON, Boolean, DateTime, Integer, LargeBinary
    from sqlalchemy.types import ARRAY

    if isinstance(sa_type, LargeBinary):
        return "bytes"
    if isinstance(sa_type, (JSON, ARRAY)):
        return "json"
    if isinstance(sa_type, Boolean):
        return "bool"
    if isinstance(sa_type, Integer):
        return "int"
    if isinstance(sa_type, DateTime):
        return "datetime"
    return "text"
