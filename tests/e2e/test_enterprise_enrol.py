"""Enterprise attestation at enrolment: the policy's [enterprise_attestation] table, the CTAP
enterpriseAttestation request, epAtt checked, the serial read from the id-fido-gen-ce-sernum
extension of a verified chain and kept in the registry (creds list/show). The software key over
python-fido2's CTAPHID code; SQLite registry (PostgreSQL in the inventory tests)."""

from __future__ import annotations

import json

import pytest

from tests.e2e.cli import invoke
from tests.support.enterprise import ea_table, make_ea_lab
from tests.support.lab import PIN, make_lab


def _enrol(lab, user: str = "alice", *extra: str):
    return invoke(*lab.enrol_args(user, "--json", *extra), input=f"{PIN}\n")


@pytest.fixture
def db(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


def test_vendor_facilitated_enrolment_stores_and_shows_the_serial(tmp_path, db) -> None:
    lab = make_ea_lab(tmp_path / "lab", db, key_rp_ids=["example.com"], serial=31415926)
    out = _enrol(lab)
    assert out.code == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["approved"] is True and result["key_serial"] == "31415926"
    rules = {r["rule"]: r for r in result["reasons"]}
    assert rules["enterprise_attestation"]["outcome"] == "pass"
    assert "31415926" in rules["enterprise_attestation"]["detail"]
    rows = lab.registry_rows()
    assert [r["key_serial"] for r in rows] == ["31415926"]
    shown = invoke("creds", "show", str(rows[0]["id"]), "--db", db)
    assert shown.code == 0 and "31415926" in shown.stdout
    listed = invoke("creds", "list", "--db", db)
    assert "31415926" in listed.stdout


def test_vendor_facilitated_for_an_rp_the_key_does_not_list_is_refused(tmp_path, db) -> None:
    lab = make_ea_lab(tmp_path / "lab", db, key_rp_ids=["corp.example"])
    out = _enrol(lab)
    assert out.code == 3, out.stdout
    assert "enterprise_attestation" in out.stderr
    assert "did not give an enterprise attestation" in out.stderr
    assert lab.registry_rows() == [] and lab.credentials_on_key() == 0


def test_platform_facilitated_for_an_rp_the_policy_does_not_list_is_refused(tmp_path, db) -> None:
    table = ea_table("platform", ["corp.example"])
    lab = make_ea_lab(tmp_path / "lab", db, key_rp_ids=[], policy_table=table)
    out = _enrol(lab)
    assert out.code == 3
    assert "platform-facilitated" in out.stderr and "corp.example" in out.stderr
    assert "example.com" in out.stderr
    assert lab.registry_rows() == [] and lab.credentials_on_key() == 0
    log = json.loads(invoke("log", "show", "--json", "--db", db).stdout)
    assert log[-1]["action"] == "enrol.refused"
    assert log[-1]["details"]["reasons"][0]["rule"] == "enterprise_attestation"


def test_platform_facilitated_for_a_listed_rp_needs_no_list_on_the_key(tmp_path, db) -> None:
    table = ea_table("platform", ["example.com"])
    lab = make_ea_lab(tmp_path / "lab", db, key_rp_ids=[], policy_table=table, serial=27182818)
    out = _enrol(lab)
    assert out.code == 0, out.stderr
    assert json.loads(out.stdout)["key_serial"] == "27182818"


def test_required_but_disabled_on_the_key_is_refused_naming_the_fix(tmp_path, db) -> None:
    lab = make_ea_lab(tmp_path / "lab", db, key_rp_ids=["example.com"], enabled=False)
    out = _enrol(lab)
    assert out.code == 3
    assert "enable-ep" in out.stderr
    assert lab.credentials_on_key() == 0


def test_not_required_enrols_without_it_and_stores_no_serial(tmp_path, db) -> None:
    table = ea_table("vendor", ["example.com"], required=False)
    lab = make_ea_lab(tmp_path / "lab", db, key_rp_ids=["corp.example"], policy_table=table)
    out = _enrol(lab)
    assert out.code == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["key_serial"] is None
    rules = {r["rule"]: r["outcome"] for r in result["reasons"]}
    assert rules["enterprise_attestation"] == "skip"


def test_without_the_table_no_enterprise_attestation_is_asked(tmp_path, db) -> None:
    lab = make_lab(tmp_path / "lab", db)
    from keyadmin.sim.enterprise import configure
    from tests.support.enterprise import enable_ep

    configure(lab.key(), rp_ids=["example.com"])
    enable_ep(lab.key_path)
    out = _enrol(lab)
    assert out.code == 0, out.stderr
    assert json.loads(out.stdout)["key_serial"] is None  # the batch certificate, no serial


def test_a_bad_facilitation_is_a_policy_error(tmp_path, db) -> None:
    lab = make_ea_lab(
        tmp_path / "lab", db, key_rp_ids=[], policy_table=ea_table("vendorish", ["example.com"])
    )
    out = invoke("policy", "check", str(lab.policy))
    assert out.code != 0
    assert "enterprise_attestation.facilitation" in out.stderr


def test_inventory_required_without_required_enterprise_attestation_is_a_policy_error(
    tmp_path, db
) -> None:
    lab = make_lab(
        tmp_path / "lab",
        db,
        policy_edit={"[keys_per_user]": "[inventory]\nrequired = true\n\n[keys_per_user]"},
    )
    out = invoke("policy", "check", str(lab.policy))
    assert out.code != 0
    assert "inventory.required" in out.stderr and "enterprise_attestation" in out.stderr
