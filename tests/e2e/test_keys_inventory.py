"""The physical key inventory: keys import/list/show, the lifecycle in-stock -> issued -> lost /
returned -> destroyed with every transition in the tamper-evident log, enrolment binding the
credential, the serial and the user, the policy's [inventory] rules, and a lost key suspending
its credentials. The software key with enterprise attestation; SQLite and a real PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.cli import invoke
from tests.support.enterprise import ea_table, make_ea_lab
from tests.support.lab import PIN

SOFTKEY_AAGUID = "6b657961-646d-4e00-8000-736f66746b79"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return str(request.getfixturevalue("pg_url"))


def _csv(
    tmp_path: Path, rows: list[str], header: str = "serial,model,aaguid,batch,location"
) -> Path:
    path = tmp_path / "delivery.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _import(db: str, path: Path):
    return invoke("keys", "import", str(path), "--db", db, "--json")


def _show(db: str, serial: str) -> dict:
    out = invoke("keys", "show", serial, "--db", db, "--json")
    assert out.code == 0, out.stderr
    return json.loads(out.stdout)


def _log(db: str) -> list[dict]:
    return json.loads(invoke("log", "show", "--json", "--db", db).stdout)


def _enrol(lab, user: str = "alice"):
    return invoke(*lab.enrol_args(user, "--json"), input=f"{PIN}\n")


def _lab(tmp_path: Path, db: str, serial: int, name: str = "k", inventory: str = "", **kw):
    table = ea_table("vendor", ["example.com"]) + inventory
    return make_ea_lab(
        tmp_path / name, db, key_rp_ids=["example.com"], serial=serial, policy_table=table, **kw
    )


def test_import_list_and_show(tmp_path, db) -> None:
    path = _csv(
        tmp_path,
        [
            f"10000001,YubiKey 5 NFC,{SOFTKEY_AAGUID},PO-2026-114,Stockholm desk",
            "10000002,YubiKey 5C NFC,,PO-2026-114,Stockholm desk",
        ],
    )
    out = _import(db, path)
    assert out.code == 0, out.stderr
    assert json.loads(out.stdout)["imported"] == 2
    listed = json.loads(invoke("keys", "list", "--db", db, "--json").stdout)
    assert [(k["serial"], k["state"]) for k in listed] == [
        ("10000001", "in-stock"),
        ("10000002", "in-stock"),
    ]
    key = _show(db, "10000001")
    assert key["model"] == "YubiKey 5 NFC" and key["aaguid"] == SOFTKEY_AAGUID
    assert key["batch"] == "PO-2026-114" and key["location"] == "Stockholm desk"
    assert key["user"] is None and key["credentials"] == []
    actions = [r["action"] for r in _log(db)]
    assert actions.count("key.import") == 2
    table = invoke("keys", "list", "--db", db)
    assert "10000002" in table.stdout and "in-stock" in table.stdout


@pytest.mark.parametrize(
    ("rows", "header", "words"),
    [
        (["10000001,YubiKey 5 NFC,,b,l", "10000001,YubiKey 5 NFC,,b,l"], None, "line 3"),
        ([",YubiKey 5 NFC,,b,l"], None, "serial"),
        (["10000001,,,b,l"], None, "model or aaguid"),
        (["10000001,YubiKey,not-a-uuid,b,l"], None, "AAGUID"),
        (["10000001,YubiKey"], "serial,model,colour", "colour"),
        (["10000001,Yubi\x1bKey,,b,l"], None, "line 2"),
    ],
)
def test_a_bad_file_imports_nothing_and_names_the_line(tmp_path, rows, header, words) -> None:
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    path = _csv(tmp_path, rows, header) if header else _csv(tmp_path, rows)
    out = _import(db, path)
    assert out.code == 2, (out.stdout, out.stderr)
    assert words in out.stderr
    if (tmp_path / "registry.db").exists():  # refused before the registry was opened: none
        assert json.loads(invoke("keys", "list", "--db", db, "--json").stdout) == []


def test_importing_a_serial_twice_is_refused(tmp_path) -> None:
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    assert _import(db, _csv(tmp_path, ["10000001,YubiKey 5 NFC,,b,l"])).code == 0
    again = _import(db, _csv(tmp_path, ["10000001,YubiKey 5 NFC,,b,l"]))
    assert again.code == 2 and "already in the inventory" in again.stderr


def test_enrolment_binds_credential_serial_and_user(tmp_path, db) -> None:
    assert _import(db, _csv(tmp_path, [f"20000001,softkey,{SOFTKEY_AAGUID},b,desk"])).code == 0
    lab = _lab(tmp_path, db, 20000001)
    out = _enrol(lab)
    assert out.code == 0, out.stderr
    cred = json.loads(out.stdout)["credential_id"]
    key = _show(db, "20000001")
    assert key["state"] == "issued" and key["user"] == "alice"
    assert [c["credential_id"] for c in key["credentials"]] == [cred]
    assert key["firmware"] == "5.7.0"
    issued = [r for r in _log(db) if r["action"] == "key.issued"]
    assert len(issued) == 1 and issued[0]["details"]["credential"] == cred
    assert issued[0]["details"]["from"] == "in-stock"


def test_policy_requiring_inventory_refuses_an_unknown_key(tmp_path, db) -> None:
    lab = _lab(tmp_path, db, 20000002, inventory="[inventory]\nrequired = true\n\n")
    out = _enrol(lab)
    assert out.code == 3
    assert "20000002 is not in the inventory" in out.stderr
    assert lab.credentials_on_key() == 0 and lab.registry_rows() == []


def test_policy_requiring_inventory_refuses_a_key_not_in_stock(tmp_path, db) -> None:
    assert _import(db, _csv(tmp_path, [f"20000003,softkey,{SOFTKEY_AAGUID},b,desk"])).code == 0
    lost = invoke("keys", "lost", "20000003", "--reason", "left on a train", "--force", "--db", db)
    assert lost.code == 0, lost.stderr
    lab = _lab(tmp_path, db, 20000003, inventory="[inventory]\nrequired = true\n\n")
    out = _enrol(lab)
    assert out.code == 3 and "lost" in out.stderr and "in-stock" in out.stderr
    assert lab.credentials_on_key() == 0


@pytest.mark.parametrize("reuse", ["refuse", "flag"])
def test_a_serial_seen_for_a_second_user(tmp_path, db, reuse) -> None:
    inv = f'[inventory]\nserial_reuse = "{reuse}"\n\n'
    first = _lab(tmp_path, db, 30000001, name="a", inventory=inv)
    assert _enrol(first, "alice").code == 0
    # a second software key with the same serial (a cloned or re-labelled key)
    second = _lab(tmp_path, db, 30000001, name="b", inventory=inv)
    out = _enrol(second, "bob")
    if reuse == "refuse":
        assert out.code == 3
        assert "30000001" in out.stderr and "alice" in out.stderr
        assert second.credentials_on_key() == 0
        assert [r["user"] for r in first.registry_rows()] == ["alice"]
    else:
        assert out.code == 0, out.stderr
        result = json.loads(out.stdout)
        assert any("alice" in f for f in result["flags"])
        approved = [r for r in _log(db) if r["action"] == "enrol.approved"]
        assert approved[-1]["details"]["flags"] == result["flags"]


def test_lost_key_suspends_its_credentials_and_every_transition_is_logged(tmp_path, db) -> None:
    assert _import(db, _csv(tmp_path, [f"40000001,softkey,{SOFTKEY_AAGUID},b,desk"])).code == 0
    lab = _lab(tmp_path, db, 40000001)
    assert _enrol(lab).code == 0
    lost = invoke(
        "keys", "lost", "40000001", "--reason", "reported lost by alice", "--force", "--db", db,
        "--json",
    )  # fmt: skip
    assert lost.code == 0, lost.stderr
    result = json.loads(lost.stdout)
    assert result["state"] == "lost" and len(result["suspended"]) == 1
    assert "keyadmin sync" in lost.stderr
    assert [r["status"] for r in lab.registry_rows()] == ["suspended"]
    ret = invoke("keys", "return", "40000001", "--reason", "found", "--force", "--db", db)
    assert ret.code == 0, ret.stderr
    destroy = invoke("keys", "destroy", "40000001", "--reason", "shredded", "--force", "--db", db)
    assert destroy.code == 0, destroy.stderr
    again = invoke("keys", "lost", "40000001", "--reason", "x", "--force", "--db", db)
    assert again.code == 2 and "destroyed" in again.stderr
    actions = [r["action"] for r in _log(db) if r["action"].startswith(("key.", "credential."))]
    assert actions == [
        "key.import",
        "key.issued",
        "key.lost",
        "credential.suspend",
        "key.returned",
        "key.destroyed",
    ]
    assert invoke("log", "verify", "--db", db).code == 0


def test_a_lost_key_enrolled_without_the_inventory_rule_is_flagged_and_stays_lost(
    tmp_path, db
) -> None:
    assert _import(db, _csv(tmp_path, [f"20000004,softkey,{SOFTKEY_AAGUID},b,desk"])).code == 0
    lost = invoke("keys", "lost", "20000004", "--reason", "train", "--force", "--db", db)
    assert lost.code == 0
    out = _enrol(_lab(tmp_path, db, 20000004))
    assert out.code == 0, out.stderr
    assert any("lost" in f for f in json.loads(out.stdout)["flags"])
    key = _show(db, "20000004")
    assert key["state"] == "lost" and len(key["credentials"]) == 1
