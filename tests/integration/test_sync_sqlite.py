"""keyadmin sync into a SQLite application database with a non-default mapping, and the CLI."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from keyadmin.cli.main import app
from keyadmin.errors import ConfigError
from keyadmin.store import registry
from keyadmin.store.appstore import load_mapping
from keyadmin.store.db import transaction
from tests.support.bulk import generate, lab_model

TABLE = 'App Creds"; DROP TABLE x; --'


def _b64u(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture
def setup(tmp_path: Path):
    reg = f"sqlite:///{tmp_path / 'registry.db'}"
    ids = generate(reg, 12, [lab_model("6b657961-646d-4e00-8000-736f66746b79")], users=5)
    app_path = tmp_path / "app.db"
    con = sqlite3.connect(app_path)
    # the application's own table: text ids, a user-name column, its own column names
    con.execute(
        f'CREATE TABLE "{TABLE.replace(chr(34), chr(34) * 2)}" ('
        "cred TEXT PRIMARY KEY, owner TEXT NOT NULL, cose BLOB NOT NULL, counter INTEGER "
        "NOT NULL, transports_json TEXT, kind TEXT, synced_bs BOOLEAN, added TIMESTAMP, "
        "used TIMESTAMP, off BOOLEAN NOT NULL DEFAULT 0, app_note TEXT)"
    )
    con.commit()
    con.close()
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(
        f"[table]\nname = {json.dumps(TABLE)}\n"
        '[columns]\ncredential_id = "cred"\nuser_id = "owner"\npublic_key = "cose"\n'
        'sign_count = "counter"\ntransports = "transports_json"\ndevice_type = "kind"\n'
        'backed_up = "synced_bs"\ncreated_at = "added"\nlast_used_at = "used"\n'
        '[encoding]\ncredential_id = "base64url"\nuser_id_source = "user_name"\n'
        '[inactive]\naction = "disable"\ndisabled_column = "off"\n'
    )
    return reg, f"sqlite:///{app_path}", app_path, mapping, ids


def _app() -> typer.Typer:
    """keyadmin's app, as the console script runs it."""
    return app


def _rows(path: Path) -> dict[str, tuple]:
    con = sqlite3.connect(path)
    try:
        q = 'SELECT cred, owner, counter, transports_json, kind, off FROM "{}"'.format(
            TABLE.replace('"', '""')
        )
        return {r[0]: r[1:] for r in con.execute(q)}
    finally:
        con.close()


def test_custom_mapping_quoted_names_text_ids_and_disable(setup) -> None:
    reg, app, app_path, mapping, ids = setup
    runner = CliRunner()
    dry = runner.invoke(
        _app(),
        ["sync", "--target", app, "--mapping", str(mapping), "--db", reg, "--dry-run", "--json"],
    )
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["inserted"] == 12 and _rows(app_path) == {}

    out = runner.invoke(_app(), ["sync", "--target", app, "--mapping", str(mapping), "--db", reg])
    assert out.exit_code == 0, out.output
    assert "inserted" in out.stdout
    rows = _rows(app_path)
    assert set(rows) == {_b64u(c) for c in ids}
    with transaction(reg) as s:
        creds = {c.credential_id: c for c in registry.list_credentials(s)}
    first = creds[ids[0].hex()]
    assert rows[_b64u(ids[0])] == (first.user, 0, '["nfc","usb"]', "singleDevice", 0)

    with transaction(reg) as s:
        registry.change_status(s, ids[1].hex(), "revoke", reason="lost", actor="t")
    again = json.loads(
        runner.invoke(
            _app(), ["sync", "--target", app, "--mapping", str(mapping), "--db", reg, "--json"]
        ).stdout
    )
    assert (again["disabled"], again["removed"], again["examined"]) == (1, 0, 1)
    assert _rows(app_path)[_b64u(ids[1])][-1] == 1  # disabled, still there

    # the application's table was not altered in shape
    con = sqlite3.connect(app_path)
    names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    con.close()
    assert names == [TABLE]


def test_missing_table_and_bad_mapping_are_reported(setup, tmp_path: Path) -> None:
    reg, _, _, mapping, _ = setup
    con = sqlite3.connect(tmp_path / "empty.db")  # a database without the table (a missing
    con.execute("CREATE TABLE other (x INTEGER)")  # file is a typo: tests/e2e/test_cli_gates.py)
    con.close()
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    out = CliRunner().invoke(_app(), ["sync", "--target", empty, "--db", reg])
    assert out.exit_code == 1
    assert "no table 'webauthn_credentials'" in out.stderr
    assert "--create-table" in out.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[inactive]\naction = "archive"\n')
    with pytest.raises(ConfigError, match="inactive.action: one of delete, disable"):
        load_mapping(bad)
    bad.write_text('[columns]\nsign_count = ""\n')
    with pytest.raises(ConfigError, match="columns.sign_count: this column is required"):
        load_mapping(bad)


def test_rows_gone_or_back_dated_behind_keyadmins_back_are_found(setup) -> None:
    reg, app_url, app_path, mapping, ids = setup
    run = ["sync", "--target", app_url, "--mapping", str(mapping), "--db", reg, "--json"]

    def sync_json() -> dict:
        out = CliRunner().invoke(_app(), run)
        assert out.exit_code == 0, out.stderr
        return json.loads(out.stdout)

    def app_sql(sql: str, *params: object) -> None:
        con = sqlite3.connect(app_path)
        con.execute(sql.format(t=TABLE.replace('"', '""')), params)
        con.commit()
        con.close()

    sync_json()
    app_sql('DELETE FROM "{t}" WHERE cred = ?', _b64u(ids[0]))
    restored = sync_json()
    assert (restored["full"], restored["inserted"]) == (True, 1)
    assert _b64u(ids[0]) in _rows(app_path)
    app_sql(
        'INSERT INTO "{t}" (cred, owner, cose, counter, added) VALUES (?, ?, ?, 1, ?)',
        "cm9ndWU", "mallory", b"\xa1", "2001-01-01 00:00:00",
    )  # fmt: skip
    found = sync_json()
    assert (found["full"], found["drift_count"], found["app_writes"]) == (True, 1, 0)
    quiet = sync_json()
    assert (quiet["full"], quiet["app_writes"], quiet["drift_count"]) == (False, 0, 1)


def test_ids_spelt_otherwise_are_drift_and_counts_are_what_happened(tmp_path: Path) -> None:
    """Found by review: upper-case hex (or padded base64) ids were read as keyadmin's own but
    never matched by its writes, so a revoked credential stayed while sync said "removed"."""
    from keyadmin.flows.sync import sync

    reg = f"sqlite:///{tmp_path / 'registry.db'}"
    ids = generate(reg, 3, [lab_model("6b657961-646d-4e00-8000-736f66746b79")], users=2)
    app_path = tmp_path / "app.db"
    con = sqlite3.connect(app_path)
    con.execute(
        "CREATE TABLE webauthn_credentials (credential_id TEXT PRIMARY KEY, user_id TEXT, "
        "public_key BLOB, sign_count INTEGER, created_at TIMESTAMP, last_used_at TIMESTAMP)"
    )
    con.commit()
    con.close()
    mapping = tmp_path / "m.toml"
    mapping.write_text(
        '[encoding]\ncredential_id = "hex"\nuser_id = "hex"\n'
        '[columns]\ntransports = ""\ndevice_type = ""\nbacked_up = ""\n'
    )
    m = load_mapping(mapping)
    app = f"sqlite:///{app_path}"

    def run(**kw):  # type: ignore[no-untyped-def]
        return sync(registry_url=reg, target_url=app, mapping=m, actor="t", **kw)

    assert run().inserted == 3
    con = sqlite3.connect(app_path)
    con.execute("UPDATE webauthn_credentials SET credential_id = upper(credential_id)")
    con.commit()
    con.close()
    with transaction(reg) as s:
        registry.change_status(s, ids[0].hex(), "revoke", reason="lost", actor="t")
    quiet = run()
    assert quiet.removed == 0  # nothing under keyadmin's spelling: nothing claimed
    full = run(full=True)
    assert full.removed == 0 and full.drift_count == 3 and full.inserted == 2
    assert {d.credential_id for d in full.drift} == {f"as stored: {i.hex().upper()}" for i in ids}
    pruned = run(prune=True)
    assert pruned.pruned == 3
    con = sqlite3.connect(app_path)
    left = sorted(r[0] for r in con.execute("SELECT credential_id FROM webauthn_credentials"))
    con.close()
    assert left == sorted(i.hex() for i in ids[1:])  # the revoked one is gone in every spelling


def test_credentials_from_before_change_seq_are_synced(tmp_path: Path) -> None:
    """Found by review: migration 0002 left older credentials at change_seq 0, and a first
    (or --full) run read change_seq > 0 only: they never reached the application."""
    from sqlalchemy import text

    from keyadmin.flows.sync import sync
    from keyadmin.store.db import get_engine

    reg = f"sqlite:///{tmp_path / 'registry.db'}"
    ids = generate(reg, 4, [lab_model("6b657961-646d-4e00-8000-736f66746b79")], users=2)
    with get_engine(reg).begin() as conn:  # as migration 0002 leaves pre-existing rows
        conn.execute(text("UPDATE ka_credential SET change_seq = 0"))
    app = f"sqlite:///{tmp_path / 'app.db'}"
    first = sync(
        registry_url=reg, target_url=app, mapping=load_mapping(None), actor="t",
        create_table=True,
    )  # fmt: skip
    assert first.inserted == 4 and first.examined == 4
    con = sqlite3.connect(tmp_path / "app.db")
    assert con.execute("SELECT count(*) FROM webauthn_credentials").fetchone() == (len(ids),)
    con.close()


def test_census_with_created_at_but_no_last_used_at(tmp_path: Path) -> None:
    """Found by review: without a last_used_at column no created mark was saved, so every
    later run's census counted every row as added and turned into a full run."""
    from keyadmin.flows.sync import sync

    reg = f"sqlite:///{tmp_path / 'registry.db'}"
    generate(reg, 20, [lab_model("6b657961-646d-4e00-8000-736f66746b79")], users=5)
    mapping = tmp_path / "m.toml"
    mapping.write_text('[columns]\nlast_used_at = ""\n')
    m, app = load_mapping(mapping), f"sqlite:///{tmp_path / 'app.db'}"
    runs = [
        sync(registry_url=reg, target_url=app, mapping=m, actor="t", create_table=True)
        for _ in range(3)
    ]
    assert [r.full for r in runs] == [True, False, False]
    assert all(not r.notes for r in runs[1:])
