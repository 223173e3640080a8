"""ML-DSA end to end over USB HID: the software key made with ``--alg ML-DSA-44`` enrols under
a policy that allows ML-DSA-44 (direct attestation, the COSE key stored as the key encoded
it) and steps up (ML-DSA assertion verified, ES256 receipt). Through the real CLI, the real
CTAPHID transport and a real SQLite registry."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path

import pytest
from fido2 import cbor

from tests.e2e.cli import invoke
from tests.support.lab import PIN, Lab, make_lab

PASS = "receipt-pass-1"
ACTION = "rotate signing key"
MLDSA_ONLY = {'algorithms = ["ES256", "EdDSA"]': 'algorithms = ["ML-DSA-44"]'}


def _lab(tmp_path: Path, **key_options: object) -> Lab:
    return make_lab(
        tmp_path / "lab",
        f"sqlite:///{tmp_path / 'registry.db'}",
        key_options={"algorithms": [-48], **key_options},
        policy_edit=MLDSA_ONLY,
    )


@pytest.fixture
def receipt_key(tmp_path: Path) -> Path:
    path = tmp_path / "receipt-key.pem"
    out = invoke("receipt", "keygen", "--receipt-key", str(path), "--json", input=f"{PASS}\n")
    assert out.code == 0, out.stderr
    return path


def _step_up(lab: Lab, receipt_key: Path):
    return invoke(
        "step-up", "alice", "--action", ACTION, "--policy", str(lab.policy), "-d", lab.device,
        "--receipt-key", str(receipt_key), "--db", lab.db, "--json",
        input=f"{PASS}\n{PIN}\n",
    )  # fmt: skip


def test_sim_init_offers_the_algorithms_it_is_given(tmp_path: Path) -> None:
    out = invoke("sim", "init", "--state", str(tmp_path / "pq.key"), "--alg", "ML-DSA-44", "--json")
    assert out.code == 0, out.stderr
    assert json.loads(out.stdout)["algorithms"] == ["ML-DSA-44"]
    shown = invoke("sim", "show", "--state", str(tmp_path / "pq.key"), "--json")
    assert json.loads(shown.stdout)["algorithms"] == ["ML-DSA-44"]
    info = invoke("device", "info", "-d", f"sim:{tmp_path / 'pq.key'}")  # getInfo over HID
    assert info.code == 0, info.stderr
    assert "ML-DSA-44 (-48)" in info.stdout
    bad = invoke("sim", "init", "--state", str(tmp_path / "bad.key"), "--alg", "ML-DSA-99")
    assert bad.code == 2 and "unknown algorithm 'ML-DSA-99'" in bad.stderr
    assert not (tmp_path / "bad.key").exists()


def test_mldsa_softkey_enrols_and_steps_up(tmp_path: Path, receipt_key: Path) -> None:
    lab = _lab(tmp_path)
    out = invoke(*lab.enrol_args("alice", "--json"), input=f"{PIN}\n")
    assert out.code == 0, out.stderr
    reasons = {r["rule"]: r for r in json.loads(out.stdout)["reasons"]}
    assert reasons["algorithm"]["outcome"] == "pass"
    assert reasons["algorithm"]["detail"] == "ML-DSA-44 is allowed"
    assert reasons["attestation.trusted"]["outcome"] == "pass"
    # the registry holds the COSE_Key exactly as the key encoded it in authenticator data
    (row,) = lab.registry_rows()
    cose = bytes.fromhex(row["public_key_cose"])
    key = lab.key()
    (cred,) = key.state.credentials
    from keyadmin.sim.authenticator import _load_key
    from keyadmin.sim.credkeys import cose_public

    assert cose == cbor.encode(cose_public(-48, _load_key(cred.private_key_pem)))
    assert cbor.decode(cose)[1] == 7 and cbor.decode(cose)[3] == -48
    # and the application's credential table gets the same bytes
    app_db = tmp_path / "app.db"
    synced = invoke(
        "sync", "--target", f"sqlite:///{app_db}", "--create-table", "--db", lab.db, "--json"
    )
    assert synced.code == 0, synced.stderr
    con = sqlite3.connect(app_db)
    try:
        (app_key,) = con.execute("SELECT public_key FROM webauthn_credentials").fetchone()
    finally:
        con.close()
    assert bytes(app_key) == cose

    first = _step_up(lab, receipt_key)
    assert first.code == 0, first.stderr
    result = json.loads(first.stdout)
    assert result["counter"] > result["previous_counter"]
    header = json.loads(base64.urlsafe_b64decode(result["receipt"].split(".")[0] + "=="))
    assert header["alg"] == "ES256"  # receipts stay ES256 whatever the credential's algorithm
    ok = invoke(
        "receipt",
        "verify",
        result["receipt"],
        "--action",
        ACTION,
        "--receipt-key",
        str(receipt_key),
    )
    assert ok.code == 0, ok.stderr
    second = _step_up(lab, receipt_key)
    assert second.code == 0, second.stderr
    assert json.loads(second.stdout)["previous_counter"] == result["counter"]


def test_mldsa_softkey_with_a_broken_signature_is_refused(
    tmp_path: Path, receipt_key: Path
) -> None:
    from keyadmin.sim.state import save_state

    lab = _lab(tmp_path)
    enrolled = invoke(*lab.enrol_args("alice", "--json"), input=f"{PIN}\n")
    assert enrolled.code == 0, enrolled.stderr
    state = lab.key().state
    state.faults = ["bad-signature"]  # from now on the key breaks its ML-DSA signatures
    save_state(lab.key_path, state)
    out = _step_up(lab, receipt_key)
    assert out.code == 3, out.stderr
    assert "signature does not verify" in out.stderr
    assert "Traceback" not in out.stderr


def test_mldsa_only_key_cannot_enrol_under_an_es256_policy(tmp_path: Path) -> None:
    lab = make_lab(
        tmp_path / "lab",
        f"sqlite:///{tmp_path / 'registry.db'}",
        key_options={"algorithms": [-48]},
    )
    out = invoke(*lab.enrol_args("alice", "--json"), input=f"{PIN}\n")
    assert out.code == 3, out.stderr  # refused by policy, not a device failure
    assert "none of the algorithms requested (ES256, EdDSA" in out.stderr
    assert "Traceback" not in out.stderr
    assert lab.registry_rows() == [] and lab.credentials_on_key() == 0
