"""keyadmin's enrolment and step-up with the software key's ES384 and RS256 credentials
(what a YubiKey 5.7 also offers): a policy that allows only one of them gets a credential of
that algorithm, verified attestation, and step-ups that verify. Real CLI, CTAPHID, SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fido2 import cbor

from tests.e2e.cli import invoke
from tests.support.lab import PIN, make_lab

PASS = "receipt-pass-1"


@pytest.mark.parametrize(("name", "alg"), [("ES384", -35), ("RS256", -257)])
def test_policy_allowing_only_one_algorithm_enrols_and_steps_up(
    tmp_path: Path, name: str, alg: int
) -> None:
    lab = make_lab(
        tmp_path / "lab",
        f"sqlite:///{tmp_path / 'registry.db'}",
        policy_edit={'algorithms = ["ES256", "EdDSA"]': f'algorithms = ["{name}"]'},
    )
    out = invoke(*lab.enrol_args("alice", "--json"), input=f"{PIN}\n")
    assert out.code == 0, out.stderr
    reasons = {r["rule"]: r for r in json.loads(out.stdout)["reasons"]}
    assert reasons["algorithm"]["detail"] == f"{name} is allowed"
    assert reasons["attestation.trusted"]["outcome"] == "pass"
    (row,) = lab.registry_rows()
    assert cbor.decode(bytes.fromhex(row["public_key_cose"]))[3] == alg
    assert lab.key().state.credentials[0].algorithm == alg

    receipt_key = tmp_path / "receipt-key.pem"
    made = invoke("receipt", "keygen", "--receipt-key", str(receipt_key), input=f"{PASS}\n")
    assert made.code == 0, made.stderr
    step = invoke(
        "step-up", "alice", "--action", "rotate", "--policy", str(lab.policy), "-d", lab.device,
        "--receipt-key", str(receipt_key), "--db", lab.db, "--json",
        input=f"{PASS}\n{PIN}\n",
    )  # fmt: skip
    assert step.code == 0, step.stderr
    result = json.loads(step.stdout)
    assert result["counter"] > result["previous_counter"]
