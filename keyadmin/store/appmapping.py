"""The mapping of the application's credential table: which table and columns hold what, how
values are spelt there, derived columns and the application's user lookup.

A mapping file (TOML; ``policies/app-mapping.example.toml``) is read by :func:`load_mapping`
into a :class:`Mapping`, validated as a whole (unknown keys, encodings and sources are
refused with the file and key named). Nothing here touches a database: the table itself, in
the application's database, is :mod:`keyadmin.store.appstore`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path

from keyadmin.errors import ConfigError
from keyadmin.files import read_input

FIELDS = (
    "credential_id",
    "user_id",
    "public_key",
    "sign_count",
    "transports",
    "device_type",
    "backed_up",
    "created_at",
    "last_used_at",
)
REQUIRED_FIELDS = ("credential_id", "user_id", "public_key", "sign_count")
ENCODINGS = ("bytes", "base64url", "hex")
USER_ID_SOURCES = ("user_handle", "user_name")
ON_INACTIVE = ("delete", "disable")
TRANSPORT_ENCODINGS = ("json", "comma")
LAST_USED_UNSET = ("null", "created_at")
#: What a derived column can hold (``[derived.COLUMN] from = …``); or a constant ``value``.
DERIVED_SOURCES = (
    "credential_id_sha256",
    "aaguid",
    "nickname",
    "user_name",
    "credential_id",
    "backup_eligible",
)
DERIVED_FORMATS = ("auto", "bytes", "hex", "base64url", "uuid")
#: How a user handle is spelt in an application's column (``utf8``: the handle's bytes are
#: the UTF-8 text in the column, as Flask-Security-Too compares them).
HANDLE_ENCODINGS = ("bytes", "hex", "base64url", "utf8")
LOOKUP_MATCH = ("user_name", "user_handle")

#: A TOML scalar: what a derived column's constant ``value`` (or ``default``) can be.
Scalar = str | int | float | bool | datetime | date | time | None
#: Makes the error for a key of the mapping file: ``bad(key, why)``.
Bad = Callable[[str, str], ConfigError]


@dataclass(frozen=True)
class UserLookup:
    """The application's user table: the credential row's user id is that table's
    ``id_column`` of the user whose ``match_column`` equals the keyadmin user's name (or
    user handle). ``handle_column``: the user row's WebAuthn user handle, which must be
    keyadmin's (written there when empty)."""

    table: str
    schema: str | None
    id_column: str
    match_column: str
    match: str = "user_name"
    match_encoding: str = "utf8"
    handle_column: str | None = None
    handle_encoding: str = "utf8"
    # the handle in a related table (one row per user) rather than on the user row
    handle_table: str | None = None
    handle_user_column: str | None = None

    def describe(self) -> str:
        return f"{self.schema + '.' if self.schema else ''}{self.table}"


@dataclass(frozen=True)
class Derived:
    """A column of the credential table computed from the credential, or a constant."""

    column: str
    source: str | None  # one of DERIVED_SOURCES; None: ``value``
    value: Scalar = None
    format: str = "auto"
    default: Scalar = None  # for a source that may be empty (nickname)


@dataclass(frozen=True)
class Mapping:
    """Where and how credentials go in the application's table (see the example file)."""

    table: str = "webauthn_credentials"
    schema: str | None = None
    columns: dict[str, str | None] = field(default_factory=lambda: {f: f for f in FIELDS})
    credential_id_encoding: str = "bytes"
    user_id_source: str = "user_handle"
    user_id_encoding: str = "bytes"
    on_inactive: str = "delete"
    disabled_column: str | None = None
    device_type_single: str = "singleDevice"
    device_type_multi: str = "multiDevice"
    source: str = "(defaults)"
    transports_encoding: str = "json"
    last_used_unset: str = "null"
    user_lookup: UserLookup | None = None
    derived: tuple[Derived, ...] = ()

    def column(self, name: str) -> str | None:
        if name.startswith(DERIVED_PREFIX):
            return name[len(DERIVED_PREFIX) :]
        return self.columns.get(name)

    def describe(self) -> str:
        return f"{self.schema + '.' if self.schema else ''}{self.table}"


def load_mapping(path: str | Path | None) -> Mapping:
    """Read a mapping file (TOML); ``None`` gives the common-schema defaults."""
    if path is None:
        return Mapping()
    p = Path(path)
    try:
        doc = tomllib.loads(read_input(p).decode("utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read mapping file {p}: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from e

    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"{p}: {key}: {why}", hint="see policies/app-mapping.example.toml")

    known = {"table", "columns", "encoding", "inactive", "device_type", "user_lookup", "derived"}
    for key in doc:
        if key not in known:
            raise bad(key, f"unknown section (known: {', '.join(sorted(known))})")
    table = doc.get("table", {})
    if not isinstance(table, dict) or not isinstance(table.get("name", "x"), str):
        raise bad("table", "must be a table with name = '…'")
    name = table.get("name", Mapping.table)
    schema = table.get("schema") or None
    columns: dict[str, str | None] = {f: f for f in FIELDS}
    for key, value in (doc.get("columns") or {}).items():
        if key not in FIELDS:
            raise bad(f"columns.{key}", f"unknown field (known: {', '.join(FIELDS)})")
        if not isinstance(value, str):
            raise bad(f"columns.{key}", "must be a column name, or '' to leave it out")
        if value == "" and key in REQUIRED_FIELDS:
            raise bad(f"columns.{key}", "this column is required")
        columns[key] = value or None
    enc = doc.get("encoding") or {}
    cid_enc = enc.get("credential_id", "bytes")
    uid_src = enc.get("user_id_source", "user_handle")
    uid_enc = enc.get("user_id", "bytes")
    if cid_enc not in ENCODINGS:
        raise bad("encoding.credential_id", f"one of {', '.join(ENCODINGS)}")
    if uid_src not in USER_ID_SOURCES:
        raise bad("encoding.user_id_source", f"one of {', '.join(USER_ID_SOURCES)}")
    if uid_enc not in ENCODINGS:
        raise bad("encoding.user_id", f"one of {', '.join(ENCODINGS)}")
    inactive = doc.get("inactive") or {}
    action = inactive.get("action", "delete")
    if action not in ON_INACTIVE:
        raise bad("inactive.action", f"one of {', '.join(ON_INACTIVE)}")
    disabled = inactive.get("disabled_column") or None
    if action == "disable" and not disabled:
        raise bad("inactive.disabled_column", "needed with action = 'disable'")
    transports_enc = enc.get("transports", "json")
    if transports_enc not in TRANSPORT_ENCODINGS:
        raise bad("encoding.transports", f"one of {', '.join(TRANSPORT_ENCODINGS)}")
    unset = enc.get("last_used_at_unset", "null")
    if unset not in LAST_USED_UNSET:
        raise bad("encoding.last_used_at_unset", f"one of {', '.join(LAST_USED_UNSET)}")
    lookup = _load_lookup(doc.get("user_lookup"), bad)
    derived = _load_derived(doc.get("derived"), bad, {c for c in columns.values() if c})
    dt = doc.get("device_type") or {}
    return Mapping(
        table=name,
        schema=schema,
        columns=columns,
        credential_id_encoding=cid_enc,
        user_id_source=uid_src,
        user_id_encoding=uid_enc,
        on_inactive=action,
        disabled_column=disabled if action == "disable" else None,
        device_type_single=str(dt.get("single", "singleDevice")),
        device_type_multi=str(dt.get("multi", "multiDevice")),
        source=str(p),
        transports_encoding=transports_enc,
        last_used_unset=unset,
        user_lookup=lookup,
        derived=derived,
    )


DERIVED_PREFIX = "derived:"


def _name(value: object, key: str, bad: Bad, *, required: bool = True) -> str | None:
    if value is None or value == "":
        if required:
            raise bad(key, "a column or table name is required")
        return None
    if not isinstance(value, str):
        raise bad(key, "must be a name (a string)")
    return value


def _load_lookup(doc: object, bad: Bad) -> UserLookup | None:
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise bad("user_lookup", "must be a table")
    known = {"table", "schema", "id_column", "match_column", "match", "match_encoding"}
    known |= {"handle_column", "handle_encoding", "handle_table", "handle_user_column"}
    for key in doc:
        if key not in known:
            raise bad(f"user_lookup.{key}", f"unknown key (known: {', '.join(sorted(known))})")
    match = doc.get("match", "user_name")
    if doc.get("handle_table") and not doc.get("handle_column"):
        raise bad("user_lookup.handle_column", "needed with handle_table")
    if match not in LOOKUP_MATCH:
        raise bad("user_lookup.match", f"one of {', '.join(LOOKUP_MATCH)}")
    for key in ("match_encoding", "handle_encoding"):
        if doc.get(key, "utf8") not in HANDLE_ENCODINGS:
            raise bad(f"user_lookup.{key}", f"one of {', '.join(HANDLE_ENCODINGS)}")
    return UserLookup(
        table=str(_name(doc.get("table"), "user_lookup.table", bad)),
        schema=_name(doc.get("schema"), "user_lookup.schema", bad, required=False),
        id_column=str(_name(doc.get("id_column"), "user_lookup.id_column", bad)),
        match_column=str(_name(doc.get("match_column"), "user_lookup.match_column", bad)),
        match=match,
        match_encoding=doc.get("match_encoding", "utf8"),
        handle_column=_name(
            doc.get("handle_column"), "user_lookup.handle_column", bad, required=False
        ),
        handle_encoding=doc.get("handle_encoding", "utf8"),
        handle_table=_name(
            doc.get("handle_table"), "user_lookup.handle_table", bad, required=False
        ),
        handle_user_column=_name(
            doc.get("handle_user_column"),
            "user_lookup.handle_user_column",
            bad,
            required=bool(doc.get("handle_table")),
        ),
    )


def _load_derived(doc: object, bad: Bad, mapped: set[str]) -> tuple[Derived, ...]:
    if doc is None:
        return ()
    if not isinstance(doc, dict):
        raise bad("derived", "must be a table of [derived.COLUMN] tables")
    out = []
    for column, spec in doc.items():
        key = f"derived.{column}"
        if not isinstance(spec, dict):
            raise bad(key, "must be a table with from = '…' or value = …")
        if column in mapped:
            raise bad(key, "this column is already mapped in [columns]")
        for k in spec:
            if k not in ("from", "value", "format", "default"):
                raise bad(f"{key}.{k}", "unknown key (known: default, format, from, value)")
        source = spec.get("from")
        if (source is None) == ("value" not in spec):
            raise bad(key, "give exactly one of from = '…' and value = …")
        if source is not None and source not in DERIVED_SOURCES:
            raise bad(f"{key}.from", f"one of {', '.join(DERIVED_SOURCES)}")
        fmt = spec.get("format", "auto")
        if fmt not in DERIVED_FORMATS:
            raise bad(f"{key}.format", f"one of {', '.join(DERIVED_FORMATS)}")
        if fmt == "uuid" and source != "aaguid":
            raise bad(f"{key}.format", "uuid is for from = 'aaguid'")
        value = spec.get("value")
        if isinstance(value, (dict, list)):
            raise bad(f"{key}.value", "must be a string, number or boolean")
        out.append(Derived(column, source, value, fmt, spec.get("default")))
    return tuple(out)
