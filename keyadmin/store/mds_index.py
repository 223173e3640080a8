"""The metadata index in the registry database: tables ``mds_*`` and their queries.

* Writes (one transaction per imported snapshot) go through SQLAlchemy Core, for SQLite and
  PostgreSQL alike; the schema is created idempotently from this module's own ``MetaData``
  (``metadata``), independent of any sqlmodel/Alembic tables that share the database.
  An Alembic ``env.py`` that autogenerates should either include ``metadata`` here or skip
  tables named ``mds_*``.
* Reads use the same SQL text with named parameters. On a SQLite registry they run through the
  standard library's ``sqlite3`` (read-only), so a lookup in a fresh process costs milliseconds
  and imports neither SQLAlchemy nor cryptography; on any other URL through SQLAlchemy Core.

Only the current snapshot's entries are kept; every snapshot's header row is kept, for the
rollback check (``no`` only goes up within a series) and as evidence.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlite3

    from sqlalchemy import ForeignKey, MetaData
    from sqlalchemy.engine import Connection
    from sqlmodel import Session

#: The index layout a snapshot was written with (``mds_snapshot.schema_version``). 2 added the
#: table ``mds_entry_facet`` (MDS 3.1: FIPS level, certification profiles, retirement); a
#: registry from before keeps working (the new table is created on the next write) and its
#: version-1 snapshot is reported as outdated by the queries that need version 2.
SCHEMA_VERSION = 2

# The SQL of the lookups: constant text with named parameters, valid for sqlite3 and for
# SQLAlchemy's text(). "The current snapshot" is the subquery CUR below, spelled out.
SQL_CURRENT_SNAPSHOT = (
    "SELECT * FROM mds_snapshot WHERE is_current = :true ORDER BY id DESC LIMIT 1"
)
SQL_MAX_NO = "SELECT MAX(no) AS no FROM mds_snapshot WHERE series = :series"
SQL_LAST_ETAG = (
    "SELECT etag FROM mds_snapshot WHERE source = :source AND etag IS NOT NULL "
    "ORDER BY id DESC LIMIT 1"
)
SQL_ENTRY_BY_AAGUID = (
    "SELECT doc FROM mds_entry WHERE aaguid = :v AND snapshot_id = "
    "(SELECT id FROM mds_snapshot WHERE is_current = :true ORDER BY id DESC LIMIT 1)"
)
SQL_ENTRY_BY_AAID = (
    "SELECT doc FROM mds_entry WHERE aaid = :v AND snapshot_id = "
    "(SELECT id FROM mds_snapshot WHERE is_current = :true ORDER BY id DESC LIMIT 1)"
)
SQL_ENTRY_BY_KEY_ID = (
    "SELECT e.doc FROM mds_key_id k JOIN mds_entry e "
    "ON e.snapshot_id = k.snapshot_id AND e.entry_index = k.entry_index "
    "WHERE k.key_id = :v AND k.snapshot_id = "
    "(SELECT id FROM mds_snapshot WHERE is_current = :true ORDER BY id DESC LIMIT 1)"
)
SQL_RAW_ENTRY = (
    "SELECT raw FROM mds_entry WHERE entry_index = :v AND snapshot_id = "
    "(SELECT id FROM mds_snapshot WHERE is_current = :true ORDER BY id DESC LIMIT 1)"
)
SQL_SKIPPED = (
    "SELECT entry_index, aaguid, aaid, description, reason FROM mds_skipped WHERE snapshot_id = "
    "(SELECT id FROM mds_snapshot WHERE is_current = :true ORDER BY id DESC LIMIT 1) "
    "ORDER BY entry_index"
)
SQL_SKIPPED_BY_ID = (
    "SELECT entry_index, aaguid, aaid, description, reason, raw FROM mds_skipped "
    "WHERE (aaguid = :v OR aaid = :v) AND snapshot_id = "
    "(SELECT id FROM mds_snapshot WHERE is_current = :true ORDER BY id DESC LIMIT 1)"
)
SQL_ROOTS_BY_AAGUID = (
    "SELECT r.der_b64 FROM mds_attestation_root r JOIN mds_entry e "
    "ON e.snapshot_id = r.snapshot_id AND e.entry_index = r.entry_index "
    "WHERE e.aaguid = :v AND r.snapshot_id = "
    "(SELECT id FROM mds_snapshot WHERE is_current = :true ORDER BY id DESC LIMIT 1) "
    "ORDER BY r.position"
)
SQL_STATUS_REPORTS = (
    "SELECT status, effective_date, certificate_number, url FROM mds_status_report "
    "WHERE entry_index = :v AND snapshot_id = "
    "(SELECT id FROM mds_snapshot WHERE is_current = :true ORDER BY id DESC LIMIT 1) "
    "ORDER BY position"
)
# search(): fixed clauses, combined by AND; user values only ever travel as parameters.
_SEARCH_HEAD = (
    "SELECT e.entry_index, e.aaguid, e.aaid, e.description, e.vendor, e.status, "
    "e.status_date, e.certification_level, e.blocked, e.key_protection, e.transports "
    "FROM mds_entry e WHERE e.snapshot_id = "
    "(SELECT id FROM mds_snapshot WHERE is_current = :true ORDER BY id DESC LIMIT 1)"
)
_SEARCH_TAIL = " ORDER BY e.description, e.entry_index LIMIT :limit"
_FACET = (
    " AND EXISTS (SELECT 1 FROM mds_entry_facet f WHERE f.snapshot_id = e.snapshot_id "
    "AND f.entry_index = e.entry_index AND f.facet = '{name}' AND f.value {op} :{param})"
)
_SEARCH_CLAUSES = {
    "vendor": " AND e.haystack LIKE :vendor",
    "descr": " AND LOWER(e.description) LIKE :descr",
    "status": " AND e.status = :status",
    "any_status": (
        " AND EXISTS (SELECT 1 FROM mds_status_report s WHERE s.snapshot_id = e.snapshot_id "
        "AND s.entry_index = e.entry_index AND s.status = :any_status)"
    ),
    "cert": " AND e.certification_level = :cert",
    "transport": " AND e.transports LIKE :transport",
    "kp": " AND e.key_protection LIKE :kp",
    "blocked": " AND e.blocked = :blocked",
    "fips": _FACET.format(name="fips_level", op=">=", param="fips"),
    "profile": _FACET.format(name="profile", op="=", param="profile"),
    "retired": (
        " AND {neg}EXISTS (SELECT 1 FROM mds_entry_facet f WHERE f.snapshot_id = e.snapshot_id "
        "AND f.entry_index = e.entry_index AND f.facet = 'retired')"
    ),
}


@dataclass(frozen=True)
class SnapshotInfo:
    """A stored snapshot's header (no entries)."""

    id: int
    series: str
    no: int
    next_update: str
    legal_header: str
    source: str
    source_kind: str  # "url", "file" or "package"
    signed: bool
    sha256: str
    etag: str | None
    alg: str | None
    anchor_name: str | None
    anchor_sha256: str | None
    anchor_pinned: bool | None
    operator_roots: list[dict[str, Any]]
    allow_missing_crl: bool
    verified_at: str | None
    at_explicit: bool
    imported_at: str
    entry_count: int
    skipped_count: int
    provenance: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> SnapshotInfo:
        return cls(
            id=int(row["id"]),
            series=row["series"],
            no=int(row["no"]),
            next_update=row["next_update"],
            legal_header=row["legal_header"],
            source=row["source"],
            source_kind=row["source_kind"],
            signed=bool(row["signed"]),
            sha256=row["sha256"],
            etag=row["etag"],
            alg=row["alg"],
            anchor_name=row["anchor_name"],
            anchor_sha256=row["anchor_sha256"],
            anchor_pinned=None if row["anchor_pinned"] is None else bool(row["anchor_pinned"]),
            operator_roots=json.loads(row["operator_roots"] or "[]"),
            allow_missing_crl=bool(row["allow_missing_crl"]),
            verified_at=row["verified_at"],
            at_explicit=bool(row["at_explicit"]),
            imported_at=row["imported_at"],
            entry_count=int(row["entry_count"]),
            skipped_count=int(row["skipped_count"]),
            provenance=json.loads(row["provenance"] or "{}"),
            schema_version=int(row.get("schema_version") or 1),
        )


@dataclass(frozen=True)
class NewSnapshot:
    """What ingest hands to :meth:`MdsIndex.store_snapshot`."""

    series: str
    no: int
    next_update: str
    legal_header: str
    source: str
    source_kind: str
    signed: bool
    sha256: str
    imported_at: str
    etag: str | None = None
    alg: str | None = None
    anchor_name: str | None = None
    anchor_sha256: str | None = None
    anchor_pinned: bool | None = None
    operator_roots: list[dict[str, object]] = field(default_factory=list)
    allow_missing_crl: bool = False
    verified_at: str | None = None
    at_explicit: bool = False
    provenance: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class NewEntry:
    """One entry row plus its child rows, prepared by ingest (plain data)."""

    index: int
    key: str
    aaguid: str | None
    aaid: str | None
    description: str
    vendor: str | None
    haystack: str  # lower-cased text the vendor/description search matches
    status: str
    status_date: str | None
    certification_level: str | None
    blocked: bool
    key_protection: Sequence[str]
    transports: Sequence[str]
    doc: dict[str, object]
    raw: dict[str, object]
    key_ids: Sequence[str]
    status_reports: Sequence[dict[str, object]]  # status, effective_date, certificate_number, url
    roots: Sequence[dict[str, object]]  # sha256, subject, der_b64
    facets: Sequence[tuple[str, str]] = ()  # (facet, value): fips_level, profile, retired


@dataclass(frozen=True)
class NewSkipped:
    index: int
    aaguid: str | None
    aaid: str | None
    description: str | None
    reason: str
    raw: object  # the entry as the BLOB lists it (JSON)


#: ``check(max_no_in_series, same_no_row)`` of :meth:`MdsIndex.store_snapshot`.
RollbackCheck = Callable[[int | None, dict[str, object] | None], None]
#: Writes the log row of a stored snapshot, in its transaction: (session, snapshot, number of
#: entries, number of skipped entries).
SnapshotLog = Callable[["Session", NewSnapshot, int, int], None]


@dataclass(frozen=True)
class SearchFilters:
    vendor: str | None = None  # substring of vendor, description, root subjects, names
    description: str | None = None
    status: str | None = None  # the latest status
    any_status: str | None = None  # any status report, e.g. a past compromise
    certification_level: str | None = None
    transport: str | None = None
    key_protection: str | None = None
    blocked: bool | None = None
    fips_level_min: int | None = None  # a FIPS140_CERTIFIED_Lx report at level >= this (1..4)
    profile: str | None = None  # a certification profile, e.g. "enterprise"
    retired: bool | None = None
    limit: int = 1000

    @property
    def needs_facets(self) -> bool:
        """Filters that need index schema version 2."""
        return (
            self.fips_level_min is not None or self.profile is not None or self.retired is not None
        )


def _set_text(values: Sequence[str]) -> str:
    """``,a,b,`` so that ``LIKE '%,a,%'`` matches a whole member in every SQL dialect."""
    return "," + ",".join(v.lower() for v in values) + "," if values else ""


# -- the tables (SQLAlchemy Core, built lazily so that reads never import SQLAlchemy) ----------

_sa_metadata: MetaData | None = None


def sa_metadata() -> MetaData:
    """The ``MetaData`` holding the ``mds_*`` tables (imports SQLAlchemy)."""
    global _sa_metadata
    if _sa_metadata is not None:
        return _sa_metadata
    from sqlalchemy import (
        Boolean,
        Column,
        ForeignKey,
        Index,
        Integer,
        MetaData,
        String,
        Table,
        Text,
    )

    md = MetaData()
    Table(
        "mds_snapshot",
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("series", String(200), nullable=False),
        Column("no", Integer, nullable=False),
        Column("next_update", String(10), nullable=False),
        Column("legal_header", Text, nullable=False),
        Column("source", Text, nullable=False),
        Column("source_kind", String(16), nullable=False),
        Column("signed", Boolean, nullable=False),
        Column("sha256", String(64), nullable=False),
        Column("etag", Text),
        Column("alg", String(16)),
        Column("anchor_name", Text),
        Column("anchor_sha256", String(64)),
        Column("anchor_pinned", Boolean),
        Column("operator_roots", Text, nullable=False),
        Column("allow_missing_crl", Boolean, nullable=False),
        Column("verified_at", String(40)),
        Column("at_explicit", Boolean, nullable=False),
        Column("imported_at", String(40), nullable=False),
        Column("entry_count", Integer, nullable=False),
        Column("skipped_count", Integer, nullable=False),
        Column("is_current", Boolean, nullable=False),
        Column("provenance", Text, nullable=False),
        Column("schema_version", Integer, nullable=False),
        Index("ix_mds_snapshot_series_no", "series", "no"),
    )

    def snap_fk() -> ForeignKey:
        return ForeignKey("mds_snapshot.id", ondelete="CASCADE")

    Table(
        "mds_entry",
        md,
        Column("snapshot_id", Integer, snap_fk(), primary_key=True),
        Column("entry_index", Integer, primary_key=True),
        Column("entry_key", Text, nullable=False),
        Column("aaguid", String(36)),
        Column("aaid", String(9)),
        Column("description", Text, nullable=False),
        Column("vendor", Text),
        Column("haystack", Text, nullable=False),
        Column("status", String(64), nullable=False),
        Column("status_date", String(10)),
        Column("certification_level", String(64)),
        Column("blocked", Boolean, nullable=False),
        Column("key_protection", Text, nullable=False),
        Column("transports", Text, nullable=False),
        Column("doc", Text, nullable=False),
        Column("raw", Text, nullable=False),
        Index("ix_mds_entry_aaguid", "snapshot_id", "aaguid"),
        Index("ix_mds_entry_aaid", "snapshot_id", "aaid"),
    )
    Table(
        "mds_key_id",
        md,
        Column("snapshot_id", Integer, snap_fk(), primary_key=True),
        Column("key_id", String(40), primary_key=True),
        Column("entry_index", Integer, primary_key=True),
    )
    Table(
        "mds_status_report",
        md,
        Column("snapshot_id", Integer, snap_fk(), primary_key=True),
        Column("entry_index", Integer, primary_key=True),
        Column("position", Integer, primary_key=True),
        Column("status", String(64), nullable=False),
        Column("effective_date", String(10)),
        Column("certificate_number", Text),
        Column("url", Text),
        Index("ix_mds_status_report_status", "snapshot_id", "status"),
    )
    Table(
        "mds_entry_facet",
        md,
        Column("snapshot_id", Integer, snap_fk(), primary_key=True),
        Column("entry_index", Integer, primary_key=True),
        Column("facet", String(32), primary_key=True),
        Column("value", String(64), primary_key=True),
    )
    Table(
        "mds_attestation_root",
        md,
        Column("snapshot_id", Integer, snap_fk(), primary_key=True),
        Column("entry_index", Integer, primary_key=True),
        Column("position", Integer, primary_key=True),
        Column("sha256", String(64), nullable=False),
        Column("subject", Text),
        Column("der_b64", Text, nullable=False),
    )
    Table(
        "mds_skipped",
        md,
        Column("snapshot_id", Integer, snap_fk(), primary_key=True),
        Column("entry_index", Integer, primary_key=True),
        Column("aaguid", String(36)),
        Column("aaid", String(9)),
        Column("description", Text),
        Column("reason", Text, nullable=False),
        Column("raw", Text, nullable=False),
    )
    _sa_metadata = md
    return md


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///…`` URL, or None for other databases (and in-memory SQLite)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+")[0] != "sqlite":
        return None
    path = rest[1:] if rest.startswith("/") else rest
    path = path.split("?")[0]
    if not path or path == ":memory:":
        return None
    return Path(path)


class MdsIndex:
    """The ``mds_*`` tables of one registry database."""

    def __init__(self, url: str, *, log: SnapshotLog | None = None) -> None:
        self.url = url
        self._sqlite = sqlite_path(url)
        self._engine: Any = None
        self._local = threading.local()  # this thread's read connection (SQLite), see _reader
        self.log = log  # writes each stored snapshot's log row, in the snapshot's transaction

    # -- plumbing -------------------------------------------------------------------------------

    def engine(self) -> Any:
        if self._engine is None:
            from keyadmin.store.db import new_engine

            # the registry's database: a SQLite file is created 0600, like the registry
            self._engine = new_engine(self.url, what="database")
        return self._engine

    def ensure_schema(self) -> None:
        """Create the ``mds_*`` tables when missing (idempotent; touches no other table)."""
        sa_metadata().create_all(self.engine(), checkfirst=True)

    def _rows(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        from keyadmin.store.db import database_errors

        with database_errors("the metadata index cannot be read"):
            return self._read(sql, {"true": True, **(params or {})})

    def _read(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self._sqlite is not None:
            import sqlite3

            con = self._reader()
            if con is None:
                return []
            try:
                cur = con.execute(sql, params)
            except sqlite3.OperationalError as e:
                if "no such table" in str(e):
                    return []
                raise
            return [dict(r) for r in cur.fetchall()]
        from sqlalchemy import inspect, text

        with self.engine().connect() as conn:
            if not inspect(conn).has_table("mds_snapshot"):
                return []
            return [dict(r) for r in conn.execute(text(sql), params).mappings().all()]

    def _reader(self) -> sqlite3.Connection | None:
        """This thread's read-only connection to the SQLite file (None: no file yet).

        Kept while the path names the same file (device and inode) in this process, so that a
        lookup does not open the database and read its schema again each time (a policy
        decision makes one or two). Its statements run outside any transaction: each one sees
        every commit."""
        import os
        import sqlite3
        import stat

        assert self._sqlite is not None
        try:
            st = os.stat(self._sqlite)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(st.st_mode):  # a fifo would block the read forever
            from keyadmin.errors import ConfigError

            raise ConfigError(f"the registry database {self._sqlite} is not a regular file")
        which = (os.getpid(), st.st_dev, st.st_ino)  # not a connection inherited by a fork
        held = getattr(self._local, "reader", None)
        if held is not None and held[0] == which:
            return held[1]
        if held is not None and held[0][0] == which[0]:
            held[1].close()
        from keyadmin.store.db import open_read_only

        con = open_read_only(self._sqlite)
        con.row_factory = sqlite3.Row
        self._local.reader = (which, con)
        return con

    # -- reads ------------------------------------------------------------------------------------

    def current_snapshot(self) -> SnapshotInfo | None:
        rows = self._rows(SQL_CURRENT_SNAPSHOT)
        return SnapshotInfo.from_row(rows[0]) if rows else None

    def max_no(self, series: str) -> int | None:
        rows = self._rows(SQL_MAX_NO, {"series": series})
        return None if not rows or rows[0]["no"] is None else int(rows[0]["no"])

    def last_etag(self, source: str) -> str | None:
        rows = self._rows(SQL_LAST_ETAG, {"source": source})
        return rows[0]["etag"] if rows else None

    def entry_doc(self, identifier: str) -> dict[str, Any] | None:
        """The stored entry for an AAGUID, an attestation key identifier (hex) or an AAID."""
        ident = identifier.strip().lower()
        if len(ident) == 40 and all(c in "0123456789abcdef" for c in ident):
            sql = SQL_ENTRY_BY_KEY_ID
        elif "#" in ident:
            sql = SQL_ENTRY_BY_AAID
        else:
            sql = SQL_ENTRY_BY_AAGUID
            ident = _canonical_uuid(ident) or ident
        rows = self._rows(sql, {"v": ident})
        if not rows and sql is SQL_ENTRY_BY_AAID:
            rows = self._rows(sql, {"v": identifier.strip().upper()})
        return json.loads(rows[0]["doc"]) if rows else None

    def raw_entry(self, index: int) -> dict[str, Any] | None:
        rows = self._rows(SQL_RAW_ENTRY, {"v": index})
        return json.loads(rows[0]["raw"]) if rows else None

    def skipped(self) -> list[dict[str, Any]]:
        return self._rows(SQL_SKIPPED)

    def skipped_by_id(self, identifier: str) -> dict[str, Any] | None:
        ident = _canonical_uuid(identifier.strip().lower()) or identifier.strip()
        rows = self._rows(SQL_SKIPPED_BY_ID, {"v": ident})
        if not rows:
            return None
        row = rows[0]
        row["raw"] = json.loads(row["raw"])
        return row

    def attestation_roots(self, aaguid: str) -> list[str]:
        """Base64 DER attestation roots of the model with ``aaguid`` (current snapshot)."""
        ident = _canonical_uuid(aaguid.lower()) or aaguid
        return [r["der_b64"] for r in self._rows(SQL_ROOTS_BY_AAGUID, {"v": ident})]

    def status_reports(self, entry_index: int) -> list[dict[str, Any]]:
        return self._rows(SQL_STATUS_REPORTS, {"v": entry_index})

    def search(self, f: SearchFilters) -> list[dict[str, Any]]:
        """Summaries of the current snapshot's entries matching every given filter."""
        params: dict[str, Any] = {"limit": max(1, min(f.limit, 100000))}
        if f.vendor:
            params["vendor"] = f"%{f.vendor.lower()}%"
        if f.description:
            params["descr"] = f"%{f.description.lower()}%"
        if f.status:
            params["status"] = f.status.upper()
        if f.any_status:
            params["any_status"] = f.any_status.upper()
        if f.certification_level:
            params["cert"] = f.certification_level
        if f.transport:
            params["transport"] = f"%,{f.transport.lower()},%"
        if f.key_protection:
            params["kp"] = f"%,{f.key_protection.lower()},%"
        if f.blocked is not None:
            params["blocked"] = f.blocked
        if f.fips_level_min is not None:
            params["fips"] = str(f.fips_level_min)  # one digit: text order is numeric order
        if f.profile:
            params["profile"] = f.profile.lower()
        clauses = [clause for name, clause in _SEARCH_CLAUSES.items() if name in params]
        if f.retired is not None:
            clauses.append(_SEARCH_CLAUSES["retired"].format(neg="" if f.retired else "NOT "))
        sql = _SEARCH_HEAD + "".join(clauses) + _SEARCH_TAIL
        out = []
        for r in self._rows(sql, params):
            r["blocked"] = bool(r["blocked"])
            r["key_protection"] = [v for v in r["key_protection"].split(",") if v]
            r["transports"] = [v for v in r["transports"].split(",") if v]
            out.append(r)
        return out

    # -- writes -----------------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[tuple[Session, Connection]]:
        """One registry transaction (keyadmin.store.db.transaction: the registry's engine, its
        writers' lock on SQLite) for a snapshot, its entries and its log row."""
        from keyadmin.store.db import database_errors, transaction

        with transaction(self.url) as session:
            with database_errors("the metadata index refused the write; nothing was stored"):
                conn = session.connection()
                sa_metadata().create_all(conn, checkfirst=True)
                if conn.dialect.name == "postgresql":
                    from sqlalchemy import text

                    conn.execute(text("LOCK TABLE mds_snapshot IN EXCLUSIVE MODE"))
                yield session, conn

    def store_snapshot(
        self,
        snap: NewSnapshot,
        entries: Sequence[NewEntry],
        skipped: Sequence[NewSkipped],
        *,
        check: RollbackCheck | None = None,
    ) -> int:
        """Store a snapshot and make it current, in one transaction, with its log row
        (``self.log``) in the same transaction: both are stored, or neither.

        ``check(max_no_in_series, same_no_row)`` runs inside the transaction, before anything
        is written, and may raise to refuse (rollback check).
        """
        from sqlalchemy import func, select, update

        md = sa_metadata()
        t_snap = md.tables["mds_snapshot"]
        with self._write() as (session, conn):
            if check is not None:
                max_no = conn.execute(
                    select(func.max(t_snap.c.no)).where(t_snap.c.series == snap.series)
                ).scalar()
                same = conn.execute(
                    select(t_snap.c.no, t_snap.c.sha256)
                    .where(t_snap.c.series == snap.series, t_snap.c.no == snap.no)
                    .order_by(t_snap.c.id.desc())
                ).first()
                check(max_no, dict(same._mapping) if same is not None else None)
            conn.execute(update(t_snap).values(is_current=False))
            # Only the current snapshot keeps its entries.
            for name in (
                "mds_entry_facet",
                "mds_key_id",
                "mds_status_report",
                "mds_attestation_root",
                "mds_skipped",
                "mds_entry",
            ):
                conn.execute(md.tables[name].delete())
            res = conn.execute(
                t_snap.insert().values(
                    series=snap.series,
                    no=snap.no,
                    next_update=snap.next_update,
                    legal_header=snap.legal_header,
                    source=snap.source,
                    source_kind=snap.source_kind,
                    signed=snap.signed,
                    sha256=snap.sha256,
                    etag=snap.etag,
                    alg=snap.alg,
                    anchor_name=snap.anchor_name,
                    anchor_sha256=snap.anchor_sha256,
                    anchor_pinned=snap.anchor_pinned,
                    operator_roots=json.dumps(snap.operator_roots),
                    allow_missing_crl=snap.allow_missing_crl,
                    verified_at=snap.verified_at,
                    at_explicit=snap.at_explicit,
                    imported_at=snap.imported_at,
                    entry_count=len(entries),
                    skipped_count=len(skipped),
                    is_current=True,
                    provenance=json.dumps(snap.provenance),
                    schema_version=SCHEMA_VERSION,
                )
            )
            key = res.inserted_primary_key
            assert key is not None  # an INSERT of one row
            sid = int(key[0])
            self._insert_entries(conn, sid, entries, skipped)
            if self.log is not None:
                self.log(session, snap, len(entries), len(skipped))
        return sid

    def _insert_entries(
        self, conn: Connection, sid: int, entries: Sequence[NewEntry], skipped: Sequence[NewSkipped]
    ) -> None:
        md = sa_metadata()
        rows, keyids, reports, roots, facets = [], [], [], [], []
        for e in entries:
            rows.append(
                {
                    "snapshot_id": sid,
                    "entry_index": e.index,
                    "entry_key": e.key,
                    "aaguid": e.aaguid,
                    "aaid": e.aaid,
                    "description": e.description,
                    "vendor": e.vendor,
                    "haystack": e.haystack,
                    "status": e.status,
                    "status_date": e.status_date,
                    "certification_level": e.certification_level,
                    "blocked": e.blocked,
                    "key_protection": _set_text(e.key_protection),
                    "transports": _set_text(e.transports),
                    "doc": json.dumps(e.doc, separators=(",", ":")),
                    "raw": json.dumps(e.raw, separators=(",", ":")),
                }
            )
            for k in dict.fromkeys(e.key_ids):
                keyids.append({"snapshot_id": sid, "key_id": k, "entry_index": e.index})
            for pos, r in enumerate(e.status_reports):
                reports.append({"snapshot_id": sid, "entry_index": e.index, "position": pos, **r})
            for facet, value in dict.fromkeys(e.facets):
                facets.append(
                    {"snapshot_id": sid, "entry_index": e.index, "facet": facet, "value": value}
                )
            for pos, r in enumerate(e.roots):
                roots.append({"snapshot_id": sid, "entry_index": e.index, "position": pos, **r})
        skipped_rows = [
            {
                "snapshot_id": sid,
                "entry_index": s.index,
                "aaguid": s.aaguid,
                "aaid": s.aaid,
                "description": s.description,
                "reason": s.reason,
                "raw": json.dumps(s.raw, separators=(",", ":")),
            }
            for s in skipped
        ]
        for name, batch in (
            ("mds_entry", rows),
            ("mds_key_id", keyids),
            ("mds_status_report", reports),
            ("mds_attestation_root", roots),
            ("mds_entry_facet", facets),
            ("mds_skipped", skipped_rows),
        ):
            if batch:
                conn.execute(md.tables[name].insert(), batch)


def _canonical_uuid(text: str) -> str | None:
    """``2fc0579f-8113-…`` from any common spelling (with or without dashes, braces, case)."""
    h = text.strip().strip("{}").replace("-", "").lower()
    if len(h) != 32 or any(c not in "0123456789abcdef" for c in h):
        return None
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
