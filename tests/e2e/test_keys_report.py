"""keyadmin keys report: every category from an estate seeded through the real commands
(enrolment with enterprise attestation, keys import, creds revoke/reinstate, keys lost), as a
table, JSON and CSV, exit 3 when something needs action and 0 when nothing does."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.e2e.cli import invoke
from tests.support.enterprise import ea_table, make_ea_lab
from tests.support.lab import PIN

SOFTKEY_AAGUID = "6b657961-646d-4e00-8000-736f66746b79"


def _lab(tmp_path: Path, db: str, serial: int, name: str):
    return make_ea_lab(
        tmp_path / name,
        db,
        key_rp_ids=["example.com"],
        serial=serial,
        policy_table=ea_table("vendor", ["example.com"]),
        policy_edit={"minimum = 1": "minimum = 2"},
    )


def _enrol(lab, user: str) -> dict:
    out = invoke(*lab.enrol_args(user, "--json"), input=f"{PIN}\n")
    assert out.code == 0, out.stderr
    return json.loads(out.stdout)


def _import(tmp_path: Path, db: str, serials: list[int]) -> None:
    path = tmp_path / "delivery.csv"
    rows = [f"{s},softkey,{SOFTKEY_AAGUID},PO-1,desk" for s in serials]
    path.write_text("serial,model,aaguid,batch,location\n" + "\n".join(rows) + "\n")
    out = invoke("keys", "import", str(path), "--db", db)
    assert out.code == 0, out.stderr


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return str(request.getfixturevalue("pg_url"))


def _seed(tmp_path: Path, db: str) -> tuple[str, Path]:
    _import(tmp_path, db, [50000001, 50000003, 50000004])
    # alice: enrolled on 50000001, credential revoked -> an issued key without an active credential
    a = _lab(tmp_path, db, 50000001, "a")
    cred_a = _enrol(a, "alice")
    revoke = ["creds", "revoke", str(cred_a["registry_id"]), "--reason", "left", "--force"]
    assert invoke(*revoke, "--db", db).code == 0
    # bob: enrolled on 50000002, which was never imported
    _enrol(_lab(tmp_path, db, 50000002, "b"), "bob")
    # carol: 50000003 lost, her credential reinstated by mistake -> lost key, active credential
    cred_c = _enrol(_lab(tmp_path, db, 50000003, "c"), "carol")
    lost = ["keys", "lost", "50000003", "--reason", "train", "--force", "--db", db]
    assert invoke(*lost).code == 0
    reinstate = ["creds", "reinstate", str(cred_c["registry_id"]), "--reason", "oops", "--force"]
    assert invoke(*reinstate, "--db", db).code == 0
    # dave: 50000004 destroyed, his credential reinstated -> destroyed key, active credential
    cred_d = _enrol(_lab(tmp_path, db, 50000004, "d"), "dave")
    gone = ["keys", "destroy", "50000004", "--reason", "shredded", "--force", "--db", db]
    assert invoke(*gone).code == 0
    reinstate = ["creds", "reinstate", str(cred_d["registry_id"]), "--reason", "oops", "--force"]
    assert invoke(*reinstate, "--db", db).code == 0
    return db, a.policy


def test_every_category_from_a_seeded_estate(tmp_path, db) -> None:
    db, policy = _seed(tmp_path, db)
    out = invoke("keys", "report", "--policy", str(policy), "--db", db, "--json")
    assert out.code == 3, out.stderr
    report = json.loads(out.stdout)
    found = {(f["category"], f["serial"], f["user"]) for f in report["findings"]}
    assert ("issued-without-credential", "50000001", "alice") in found
    assert ("credential-not-in-inventory", "50000002", "bob") in found
    assert ("lost-key-with-active-credential", "50000003", "carol") in found
    assert ("destroyed-key-with-active-credential", "50000004", "dave") in found
    below = {f["user"] for f in report["findings"] if f["category"] == "user-below-minimum"}
    # alice has no active credential; bob's key is not in the inventory but counts (the policy
    # does not require inventory); carol's only key is lost: all below the minimum of 2
    assert below == {"alice", "bob", "carol", "dave"}
    assert report["ok"] is False and report["counts"]["lost-key-with-active-credential"] == 1
    assert all(f["action"] for f in report["findings"])

    table = invoke("keys", "report", "--policy", str(policy), "--db", db)
    assert table.code == 3
    assert "lost-key-with-active-credential" in table.stdout and "50000003" in table.stdout

    as_csv = invoke("keys", "report", "--policy", str(policy), "--db", db, "--format", "csv")
    assert as_csv.code == 3
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert {r["category"] for r in rows} == {
        "issued-without-credential",
        "credential-not-in-inventory",
        "lost-key-with-active-credential",
        "destroyed-key-with-active-credential",
        "user-below-minimum",
    }


def test_a_clean_estate_exits_zero(tmp_path) -> None:
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    _import(tmp_path, db, [60000001])
    lab = make_ea_lab(tmp_path / "a", db, key_rp_ids=["example.com"], serial=60000001)
    _enrol(lab, "alice")
    out = invoke("keys", "report", "--policy", str(lab.policy), "--db", db, "--json")
    assert out.code == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] is True and report["findings"] == []
    assert report["keys"] == 1 and report["credentials"] == 1


def test_without_a_policy_the_minimum_is_not_checked(tmp_path) -> None:
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    _import(tmp_path, db, [70000001])
    out = invoke("keys", "report", "--db", db, "--json")
    assert out.code == 0
    report = json.loads(out.stdout)
    assert report["minimum"] is None and report["findings"] == []
