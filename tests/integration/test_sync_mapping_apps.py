"""Mapping features real applications' schemas need (docs/sync.md): the application's user id
found in its user table, derived columns, the user handle on the user row; and errors that
name the mapping file, key and column. Real enrolments with the software key, real SQLite."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from pathlib import Path

import pytest

from keyadmin.errors import ConfigError
from keyadmin.store.appstore import load_mapping
from tests.e2e.cli import invoke
from tests.support.lab import PIN, Lab, make_lab

SCHEMA = """
CREATE TABLE accounts (pk INTEGER PRIMARY KEY, login TEXT UNIQUE NOT NULL, handle TEXT);
CREATE TABLE creds (
  id INTEGER PRIMARY KEY,
  credential_id BLOB UNIQUE NOT NULL,
  credential_id_sha256 TEXT UNIQUE NOT NULL,
  public_key BLOB NOT NULL,
  sign_count INTEGER NOT NULL,
  aaguid TEXT NOT NULL,
  aaguid_raw BLOB,
  transports TEXT,
  kind TEXT NOT NULL,
  label TEXT NOT NULL,
  owner INTEGER NOT NULL REFERENCES accounts(pk)
);
"""

MAPPING = """
[table]
name = "creds"
[columns]
credential_id = "credential_id"
user_id = "owner"
public_key = "public_key"
sign_count = "sign_count"
transports = "transports"
device_type = ""
backed_up = ""
created_at = ""
last_used_at = ""
[encoding]
transports = "comma"
[user_lookup]
table = "accounts"
id_column = "pk"
match_column = "login"
match = "user_name"
handle_column = "handle"
handle_encoding = "hex"
[derived.credential_id_sha256]
from = "credential_id_sha256"
[derived.aaguid]
from = "aaguid"
[derived.aaguid_raw]
from = "aaguid"
[derived.kind]
value = "passkey"
[derived.label]
from = "nickname"
default = "key"
"""


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return make_lab(tmp_path / "lab", f"sqlite:///{tmp_path / 'registry.db'}")


def _sync(lab: Lab, app: Path, mapping: Path) -> dict:
    out = invoke(
        "sync", "--target", f"sqlite:///{app}", "--mapping", str(mapping), "--db", lab.db,
        "--json",
    )  # fmt: skip
    assert out.code == 0, out.stderr
    return json.loads(out.stdout)


def test_user_lookup_derived_columns_and_the_user_handle(lab: Lab, tmp_path: Path) -> None:
    app = tmp_path / "app.db"
    with sqlite3.connect(app) as c:
        c.executescript(SCHEMA)
        c.execute("INSERT INTO accounts (pk, login) VALUES (7, 'alice')")
    mapping = tmp_path / "m.toml"
    mapping.write_text(MAPPING)
    for user in ("alice", "mallory"):
        out = invoke(*lab.enrol_args(user, "--nickname", f"{user}'s key"), input=f"{PIN}\n")
        assert out.code == 0, out.stderr
    rows = {r["user"]: r for r in lab.registry_rows()}
    result = _sync(lab, app, mapping)
    assert result["inserted"] == 1 and result["user_handles_written"] == 1
    assert [u["user"] for u in result["unknown_users"]] == ["mallory"]
    with sqlite3.connect(app) as c:
        (row,) = c.execute(
            "SELECT credential_id, credential_id_sha256, aaguid, aaguid_raw, transports, kind, "
            "label, owner FROM creds"
        ).fetchall()
        (handle,) = c.execute("SELECT handle FROM accounts WHERE pk = 7").fetchone()
    cid = bytes(row[0])
    alice = rows["alice"]
    assert cid.hex() == alice["credential_id"]
    assert row[1] == hashlib.sha256(cid).hexdigest()
    assert row[2] == str(uuid.UUID(alice["aaguid"]))
    assert bytes(row[3]) == uuid.UUID(alice["aaguid"]).bytes  # a BLOB column: raw bytes
    assert row[4] == "usb,nfc" or set(row[4].split(",")) == {"usb", "nfc"}
    assert row[5:] == ("passkey", "alice's key", 7)
    assert handle == alice["user_handle"]  # keyadmin's handle, hex as the mapping says

    # a second run changes nothing; the application row's derived values are compared
    again = _sync(lab, app, mapping)
    assert again["app_writes"] == 0 and again["updated"] == 0, again
    assert again["unknown_users_count"] == 1
    # a derived column changed behind keyadmin's back is written back
    with sqlite3.connect(app) as c:
        c.execute("UPDATE creds SET kind = 'other'")
    _sync_full = invoke(
        "sync", "--target", f"sqlite:///{app}", "--mapping", str(mapping), "--db", lab.db,
        "--full", "--json",
    )  # fmt: skip
    assert _sync_full.code == 0, _sync_full.stderr
    with sqlite3.connect(app) as c:
        assert c.execute("SELECT kind FROM creds").fetchone()[0] == "passkey"


def test_errors_name_the_mapping_file_key_and_column(lab: Lab, tmp_path: Path) -> None:
    app = tmp_path / "app.db"
    with sqlite3.connect(app) as c:
        c.executescript(SCHEMA)
    out = invoke(*lab.enrol_args("alice"), input=f"{PIN}\n")
    assert out.code == 0, out.stderr
    mapping = tmp_path / "m.toml"
    for old, new, words in (
        ('match_column = "login"', 'match_column = "mail"', "user_lookup.match_column"),
        ('table = "accounts"', 'table = "people"', "user_lookup.table"),
        ("[derived.kind]", "[derived.kinds]", "derived.kinds"),
    ):
        mapping.write_text(MAPPING.replace(old, new))
        bad = invoke(
            "sync", "--target", f"sqlite:///{app}", "--mapping", str(mapping), "--db", lab.db
        )
        assert bad.code == 1, bad.stderr
        assert str(mapping) in bad.stderr and words in bad.stderr, bad.stderr
        with sqlite3.connect(app) as c:
            assert c.execute("SELECT count(*) FROM creds").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('match = "user_name"', 'match = "email"', "user_lookup.match"),
        ('handle_encoding = "hex"', 'handle_encoding = "rot13"', "user_lookup.handle_encoding"),
        ('id_column = "pk"', 'id_column = ""', "user_lookup.id_column"),
        ('from = "credential_id_sha256"', 'from = "secret"', "derived.credential_id_sha256.from"),
        ('value = "passkey"', 'value = "passkey"\nfrom = "nickname"', "derived.kind"),
        ("[derived.label]", '[derived.label]\nformat = "uuid"', "derived.label.format"),
        ("[derived.kind]", "[derived.owner]", "derived.owner"),
        ('transports = "comma"', 'transports = "csv"', "encoding.transports"),
    ],
)  # fmt: skip
def test_bad_mapping_names_the_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    p = tmp_path / "m.toml"
    assert old in MAPPING
    p.write_text(MAPPING.replace(old, new))
    with pytest.raises(ConfigError) as e:
        load_mapping(p)
    assert str(e.value).startswith(f"{p}: {key}:"), str(e.value)


@pytest.mark.postgres
def test_the_same_mapping_on_postgresql(lab: Lab, tmp_path: Path, pg_url: str) -> None:
    """PostgreSQL takes the insert through COPY (no json column here): derived values and
    the looked-up user id travel with it; the handle is written on the user row."""
    import psycopg

    dsn = pg_url.replace("postgresql+psycopg://", "postgresql://")
    schema = SCHEMA.replace("BLOB", "BYTEA").replace(
        "id INTEGER PRIMARY KEY", "id SERIAL PRIMARY KEY"
    )
    with psycopg.connect(dsn) as c:
        c.execute(schema)  # type: ignore[arg-type]
        c.execute("INSERT INTO accounts (pk, login) VALUES (7, 'alice')")
    mapping = tmp_path / "m.toml"
    mapping.write_text(MAPPING)
    out = invoke(*lab.enrol_args("alice", "--nickname", "blue"), input=f"{PIN}\n")
    assert out.code == 0, out.stderr
    (alice,) = lab.registry_rows()
    result = json.loads(
        invoke("sync", "--target", dsn, "--mapping", str(mapping), "--db", lab.db, "--json").stdout
    )
    assert result["inserted"] == 1 and result["user_handles_written"] == 1, result
    with psycopg.connect(dsn) as c:
        row = c.execute(
            "SELECT credential_id_sha256, aaguid, aaguid_raw, kind, label, owner FROM creds"
        ).fetchone()
        (handle,) = c.execute("SELECT handle FROM accounts WHERE pk = 7").fetchone()  # type: ignore[misc]
    cid = bytes.fromhex(alice["credential_id"])
    assert row is not None
    assert row[0] == hashlib.sha256(cid).hexdigest()
    assert row[1] == str(uuid.UUID(alice["aaguid"]))
    assert bytes(row[2]) == uuid.UUID(alice["aaguid"]).bytes
    assert tuple(row[3:]) == ("passkey", "blue", 7)
    assert handle == alice["user_handle"]
    again = json.loads(
        invoke("sync", "--target", dsn, "--mapping", str(mapping), "--db", lab.db, "--json").stdout
    )
    assert again["app_writes"] == 0, again
