"""Every change keyadmin makes to a key writes a row to the registry's tamper-evident log, with
the key's identity and what changed, never a PIN. The SOFTWARE key over python-fido2's real
CTAPHID code, a real SQLite registry, the CLI as an operator runs it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from keyadmin.sim.authenticator import SoftKey
from tests.e2e.cli import invoke

PIN = "4821-lab"
NEW_PIN = "7390-new-pin"
SOFTKEY_AAGUID = "6b657961-646d-4e00-8000-736f66746b79"
OPERATOR = "olivia"


@pytest.fixture(autouse=True)
def _operator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYADMIN_OPERATOR", OPERATOR)
    monkeypatch.delenv("KEYADMIN_DATABASE_URL", raising=False)


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture
def dev(key_path: Path) -> str:
    SoftKey.create(key_path)
    return f"sim:{key_path}"


def _set_pin(dev: str, db: str, pin: str = PIN) -> None:
    out = invoke("device", "pin", "set", "-d", dev, "--db", db, input=f"{pin}\n")
    assert out.code == 0, out.stderr


def _rows(db: str, action: str | None = None) -> list[dict[str, Any]]:
    args = ["log", "show", "--json", "--db", db] + (["--action", action] if action else [])
    out = invoke(*args)
    assert out.code == 0, out.stderr
    rows: list[dict[str, Any]] = json.loads(out.stdout)
    return rows


def _audit_table_text(db: str) -> str:
    """Every column of every log row (and the head), as text: where a PIN must never be."""
    conn = sqlite3.connect(db[len("sqlite:///") :])
    try:
        rows = conn.execute("SELECT * FROM ka_audit").fetchall()
        rows += conn.execute("SELECT * FROM ka_audit_head").fetchall()
    finally:
        conn.close()
    return "\n".join(repr(r) for r in rows)


def _logged(db: str, action: str, dev: str, *pins: str) -> dict[str, Any]:
    """The one row of ``action``: by the operator, with the key's identity; the log still
    verifies and no PIN appears anywhere in it."""
    rows = _rows(db, action)
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["actor"] == OPERATOR
    device = row["details"]["device"]
    assert f"{device['transport']}:{device['path']}" == dev
    assert device["aaguid"] == SOFTKEY_AAGUID and device["firmware"] == "5.7.0"
    assert len(device["info_sha256"]) == 64 and int(device["info_sha256"], 16) >= 0
    assert "SOFTWARE" in device["product"]
    verified = invoke("log", "verify", "--json", "--db", db)
    assert verified.code == 0 and json.loads(verified.stdout)["ok"] is True
    text = _audit_table_text(db)
    for pin in (PIN, NEW_PIN, *pins):
        assert pin not in text
    return row


def test_pin_set_is_logged_without_the_pin(dev, db) -> None:
    _set_pin(dev, db)
    row = _logged(db, "device.pin.set", dev)
    assert row["subject"] == dev


def test_pin_change_is_logged_without_either_pin(dev, db) -> None:
    _set_pin(dev, db)
    out = invoke("device", "pin", "change", "-d", dev, "--db", db, input=f"{PIN}\n{NEW_PIN}\n")
    assert out.code == 0, out.stderr
    row = _logged(db, "device.pin.change", dev)
    assert row["subject"] == dev


def test_config_changes_are_logged_with_old_and_new_values(dev, db, monkeypatch) -> None:
    _set_pin(dev, db)
    uv = invoke("device", "config", "always-uv", "on", "-d", dev, "--db", db, input=f"{PIN}\n")
    assert uv.code == 0, uv.stderr
    again = invoke("device", "config", "always-uv", "on", "-d", dev, "--db", db, input=f"{PIN}\n")
    assert again.code == 0 and "nothing to change" in again.stdout
    row = _logged(db, "device.config.always-uv", dev)  # exactly one: no change, no row
    assert row["details"]["always_uv"] == {"from": False, "to": True}

    monkeypatch.setenv("KEYADMIN_DATABASE_URL", db)  # the environment names the registry too
    args = ("device", "config", "min-pin-length", "6", "--rp-id", "example.com", "-d", dev)
    mpl = invoke(*args, input=f"{PIN}\n")
    assert mpl.code == 0, mpl.stderr
    row = _logged(db, "device.config.min-pin-length", dev)
    assert row["details"]["min_pin_length"] == {"from": 4, "to": 6}
    assert row["details"]["rp_ids"] == ["example.com"]
    assert row["details"]["force_pin_change"] is False

    ep = invoke("device", "config", "enable-ep", "-d", dev, input=f"{PIN}\n")
    assert ep.code == 0, ep.stderr
    row = _logged(db, "device.config.enable-ep", dev)
    assert row["details"]["ep"] == {"from": False, "to": True}

    # the identity is the key's, not its state: the same before and after every change
    ids = {r["details"]["device"]["info_sha256"] for r in _rows(db)}
    assert len(ids) == 1


def test_credential_delete_is_logged_with_its_id_and_rp(dev, db, key_path) -> None:
    from keyadmin.sim.hid import open_hid
    from tests.webauthn_helpers import RP_ID, register

    _set_pin(dev, db)
    hid = open_hid(SoftKey.open(key_path))
    register(hid, PIN, user_name="alice")
    register(hid, PIN, user_name="bob")
    listed = invoke("device", "credentials", "list", "-d", dev, "--json", input=f"{PIN}\n")
    creds = json.loads(listed.stdout)
    bob = next(c for c in creds if c["user_name"] == "bob")
    args = ("device", "credentials", "delete", bob["credential_id"], "-d", dev, "--db", db)
    out = invoke(*args, "--force", input=f"{PIN}\n")
    assert out.code == 0, out.stderr
    row = _logged(db, "device.credential.delete", dev)
    assert row["subject"] == bob["credential_id"]
    details = row["details"]
    assert details["credential_id"] == bob["credential_id"]
    assert details["rp_id"] == RP_ID and details["user_name"] == "bob"
    assert details["user_id"] == bob["user_id"]


def test_reset_is_logged(dev, db, key_path) -> None:
    _set_pin(dev, db)
    before = _rows(db, "device.pin.set")[0]["details"]["device"]["info_sha256"]
    out = invoke("device", "reset", "-d", dev, "--db", db, "--force")
    assert out.code == 0, out.stderr
    assert SoftKey.open(key_path).state.pin_hash is None
    row = _logged(db, "device.reset", dev)
    assert row["subject"] == dev and row["details"]["pin_was_set"] is True
    assert row["details"]["device"]["info_sha256"] == before  # the same key after its reset


def test_another_key_has_another_identity(dev, db, tmp_path) -> None:
    other = tmp_path / "other.json"
    SoftKey.create(other, aaguid="11111111-2222-3333-4444-555555555555")
    _set_pin(dev, db)
    _set_pin(f"sim:{other}", db)
    ids = [r["details"]["device"]["info_sha256"] for r in _rows(db, "device.pin.set")]
    assert len(set(ids)) == 2


def test_prepare_logs_settings_and_the_stray_credentials_it_deleted(tmp_path, db) -> None:
    from keyadmin.sim.hid import open_hid
    from tests.support.lab import make_lab
    from tests.webauthn_helpers import register

    lab = make_lab(
        tmp_path / "prep",
        db,
        pin=None,
        policy_edit={
            "min_pin_length = 4": "min_pin_length = 8",
            "always_uv = false": "always_uv = true",
        },
    )

    def prepare() -> None:
        args = ("--policy", str(lab.policy), "-d", lab.device, "--db", db)
        out = invoke("device", "prepare", *args, input=f"{NEW_PIN}\n")
        assert out.code == 0, out.stderr

    prepare()
    row = _logged(db, "device.prepare", lab.device)
    details = row["details"]
    assert details["policy"] == "lab-softkey" and len(details["policy_sha256"]) == 64
    assert details["pin_set"] is True
    assert details["min_pin_length"] == {"from": 4, "to": 8}
    assert details["always_uv"] == {"from": False, "to": True}
    assert details["deleted"] == [] and details["ready"] is True

    register(open_hid(lab.key()), NEW_PIN, user_name="stray")
    listed = invoke(
        "device", "credentials", "list", "-d", lab.device, "--json", input=f"{NEW_PIN}\n"
    )
    stray = json.loads(listed.stdout)[0]
    prepare()
    rows = _rows(db, "device.prepare")
    assert len(rows) == 2
    second = rows[1]["details"]
    assert second["deleted"] == [
        {
            "credential_id": stray["credential_id"],
            "rp_id": "example.com",
            "user_name": "stray",
            "user_id": stray["user_id"],
        }
    ]
    assert second["pin_set"] is False and "min_pin_length" not in second
    prepare()  # nothing to change: no row
    assert len(_rows(db, "device.prepare")) == 2
    assert NEW_PIN not in _audit_table_text(db)


def _not_a_database(tmp_path: Path) -> str:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are notes, not a database\n" * 200)
    return f"sqlite:///{path}"


def _under_a_file(tmp_path: Path) -> str:
    (tmp_path / "plain-file").write_text("x")
    return f"sqlite:///{tmp_path / 'plain-file' / 'registry.db'}"


@pytest.mark.parametrize("bad_db", [_not_a_database, _under_a_file])
def test_no_key_is_touched_when_the_log_cannot_be_opened(dev, key_path, tmp_path, bad_db) -> None:
    """Fail closed: the registry's log is opened before the key is, and a change that could not
    be logged is never made."""
    from tests.support.lab import make_lab

    url = bad_db(tmp_path)
    out = invoke("device", "pin", "set", "-d", dev, "--db", url, input=f"{PIN}\n")
    assert out.code == 1, out.stderr
    assert "nothing was done to the key" in out.stderr and "Traceback" not in out.stderr
    assert SoftKey.open(key_path).state.pin_hash is None
    good = f"sqlite:///{tmp_path / 'good.db'}"
    _set_pin(dev, good)
    for args in (
        ("config", "always-uv", "on"),
        ("config", "min-pin-length", "6"),
        ("config", "enable-ep"),
        ("reset", "--force"),
        ("credentials", "delete", "00" * 16, "--force"),
        ("pin", "change"),
    ):
        out = invoke("device", *args, "-d", dev, "--db", url, input=f"{PIN}\n{NEW_PIN}\n")
        assert out.code == 1, (args, out.stderr)
        assert "nothing was done to the key" in out.stderr
    key = SoftKey.open(key_path)
    assert key.state.pin_hash is not None and not key.state.always_uv and not key.state.ep_enabled
    assert key.state.min_pin_length == 4
    assert invoke("device", "pin", "verify", "-d", dev, input=f"{PIN}\n").code == 0
    lab = make_lab(tmp_path / "prep", good, pin=None)
    out = invoke("device", "prepare", "--policy", str(lab.policy), "-d", lab.device, "--db", url)
    assert out.code == 1 and "nothing was done to the key" in out.stderr, out.stderr
    assert lab.key().state.pin_hash is None


def test_a_change_whose_log_row_cannot_be_written_says_so_loudly(dev, db, key_path) -> None:
    """The registry opens, then refuses the row (a real SQLite trigger): the key's PIN is set
    and cannot be unset, so the command exits 1 and says exactly that."""
    from keyadmin.store.db import get_engine

    get_engine(db)  # creates the registry (read commands never do)
    conn = sqlite3.connect(db[len("sqlite:///") :])
    conn.execute(
        "CREATE TRIGGER refuse_device_rows BEFORE INSERT ON ka_audit "
        "WHEN NEW.action LIKE 'device.%' BEGIN SELECT RAISE(ABORT, 'refused by test'); END"
    )
    conn.commit()
    conn.close()
    out = invoke("device", "pin", "set", "-d", dev, "--db", db, "--json", input=f"{PIN}\n")
    assert out.code == 1, out.stderr
    assert SoftKey.open(key_path).state.pin_hash is not None  # the change happened
    assert "WAS changed" in out.stderr and "NOT in the log" in out.stderr
    assert "device.pin.set" in out.stderr and "cannot be undone" in out.stderr
    assert PIN not in out.stderr + out.stdout and "Traceback" not in out.stderr
    assert _rows(db) == []
    assert invoke("log", "verify", "--db", db).code == 0


def test_the_default_registry_is_the_one_other_commands_use(dev, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KEYADMIN_HOME", str(tmp_path / "home"))
    out = invoke("device", "pin", "set", "-d", dev, input=f"{PIN}\n")
    assert out.code == 0, out.stderr
    default = f"sqlite:///{tmp_path / 'home' / 'keyadmin.db'}"
    _logged(default, "device.pin.set", dev)
    shown = invoke("log", "show", "--json", "--action", "device.pin.set")  # no --db either
    assert len(json.loads(shown.stdout)) == 1


def test_prepare_stopped_after_a_change_still_logs_what_it_changed(tmp_path, db, monkeypatch):
    """The key is pulled when prepare has set the PIN and goes on to its configuration: the
    PIN stays set, so the row is written (completed: false, the error) before exit 4."""
    import errno

    from keyadmin.sim import hid
    from tests.support.lab import make_lab

    lab = make_lab(
        tmp_path / "prep", db, pin=None, policy_edit={"min_pin_length = 4": "min_pin_length = 8"}
    )
    real = hid.SimHidConnection.write_packet

    def pulled_at_config(self, data):  # type: ignore[no-untyped-def]
        if data[4] == 0x90 and data[7] == 0x0D:  # CTAPHID_CBOR, authenticatorConfig
            raise OSError(errno.ENODEV, "No such device")
        return real(self, data)

    monkeypatch.setattr(hid.SimHidConnection, "write_packet", pulled_at_config)
    args = ("--policy", str(lab.policy), "-d", lab.device, "--db", db)
    out = invoke("device", "prepare", *args, input=f"{NEW_PIN}\n")
    assert out.code == 4, out.stderr
    assert lab.key().state.pin_hash is not None and lab.key().state.min_pin_length == 4
    details = _logged(db, "device.prepare", lab.device)["details"]
    assert details["completed"] is False and details["pin_set"] is True
    assert "min_pin_length" not in details and "cannot be reached" in details["error"]


def test_postgres_registry_logs_and_a_read_only_role_touches_no_key(pg_url, dev, key_path):
    """PostgreSQL: the row lands there; a role that may read but not write the log is
    refused before the key is touched (the head row is locked FOR UPDATE, which needs the
    right to write it)."""
    import uuid

    import psycopg

    _set_pin(dev, pg_url)
    rows = _rows(pg_url, "device.pin.set")
    assert len(rows) == 1 and rows[0]["details"]["device"]["aaguid"] == SOFTKEY_AAGUID
    assert invoke("log", "verify", "--db", pg_url).code == 0
    role = f"reader_{uuid.uuid4().hex[:8]}"
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    reader = pg_url.replace("//postgres@", f"//{role}@")
    assert invoke("log", "show", "--db", reader).code == 0  # it can read the log
    out = invoke("device", "config", "always-uv", "on", "-d", dev, "--db", reader, input=f"{PIN}\n")
    assert out.code == 1, out.stderr
    assert "nothing was done to the key" in out.stderr and "Traceback" not in out.stderr
    assert not SoftKey.open(key_path).state.always_uv
    assert len(_rows(pg_url)) == 1
