"""ML-DSA (FIPS 204) credential keys on real data: the three registrations from a Yubico key
model (../shared/data/attestations_pqc, COSE algorithms -48/-49/-50, key type AKP) and their
paired assertions. Forged cases are in test_mldsa_forged.py."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import mldsa

from keyadmin.attestation import (
    AttestationType,
    parse_registration,
)
from keyadmin.attestation.formats import verify_statement
from keyadmin.policy import evaluate_registration, load_policy
from keyadmin.policy.loader import PolicyLoadError
from keyadmin.stepup.errors import StepUpRefused, UserVerificationMissing
from keyadmin.stepup.verify import check_auth_data, check_client_data, check_signature
from tests.conftest import require
from tests.unit.test_policy_support import (
    POLICIES,
    SHARED_DATA,
    metadata_for,
    policy_variant,
    registry_url,
)

PQC = SHARED_DATA / "attestations_pqc"
#: inside the attestation leaf's validity and before metadata no. 291's nextUpdate
AT = datetime(2026, 10, 15, tzinfo=UTC)
MODEL = uuid.UUID("11111111-2222-4333-8444-555555555555")

# capture -> (COSE alg, policy name, key class, public key bytes, signature bytes)
CASES: dict[str, tuple[int, str, type, int, int]] = {
    "jws-realexamples-Mldsa44": (-48, "ML-DSA-44", mldsa.MLDSA44PublicKey, 1312, 2420),
    "jws-realexamples-Mldsa65": (-49, "ML-DSA-65", mldsa.MLDSA65PublicKey, 1952, 3309),
    "jws-realexamples-Mldsa87": (-50, "ML-DSA-87", mldsa.MLDSA87PublicKey, 2592, 4627),
}
ALL_MLDSA = 'algorithms = ["ES256", "ML-DSA-44", "ML-DSA-65", "ML-DSA-87"]'
HARDWARE_ALGS = 'algorithms = ["ES256", "EdDSA", "ES384", "RS256"]'


def b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Pqc:
    name: str
    attestation_object: bytes
    client_data_json: bytes
    rp_id: str
    origin: str
    assertion: dict[str, Any]


def pqc(name: str) -> Pqc:
    path = PQC / f"{name}.json"
    if not path.is_file():
        require(False, f"shared data missing: {path}")
    record = json.loads(path.read_text())
    cdj = b64u_decode(record["clientDataJSON"])
    return Pqc(
        name,
        b64u_decode(record["attestationObject"]),
        cdj,
        record["rp_id"],
        json.loads(cdj)["origin"],
        record["assertion"],
    )


@pytest.fixture(scope="module")
def metadata(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return metadata_for(registry_url(tmp_path_factory))


def judge(policy: Any, cap: Pqc, metadata: Any) -> Any:
    return evaluate_registration(
        policy,
        cap.attestation_object,
        cap.client_data_json,
        at=AT,
        metadata=metadata,
        rp_id=cap.rp_id,
        origins=[cap.origin],
    )


def failed(decision: Any) -> dict[str, str]:
    return {r.rule: r.detail for r in decision.reasons if r.outcome == "fail"}


def no_internal_error(decision: Any) -> None:
    for r in decision.reasons:
        assert "internal error" not in r.detail, r


# -- the real registrations ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_real_mldsa_registration_parses_to_its_akp_key(name: str) -> None:
    alg, _, cls, pub_len, _ = CASES[name]
    cap = pqc(name)
    parsed = parse_registration(cap.attestation_object, cap.client_data_json)
    assert parsed.algorithm == alg
    assert parsed.credential_public_key[1] == 7  # kty AKP
    assert isinstance(parsed.credential_key, cls)
    raw = parsed.credential_key.public_bytes_raw()
    assert len(raw) == pub_len and raw == parsed.credential_public_key[-1]
    # the statement (ES256 by the attestation key, x5c) verifies: full attestation
    result = verify_statement(parsed, AT)
    assert result.attestation_type is AttestationType.BASIC


@pytest.mark.parametrize("name", sorted(CASES))
def test_real_mldsa_registration_under_fido_certified_hardware(name: str, metadata: Any) -> None:
    """Refused, for its true reasons: the leaf chains to "Yubico 2026 FIDO Preview CA", which
    is no root of the model's metadata entry; the key did not verify the user; and the shipped
    policy does not list ML-DSA."""
    _, alg_name, _, _, _ = CASES[name]
    decision = judge(load_policy(POLICIES / "fido-certified-hardware.toml"), pqc(name), metadata)
    no_internal_error(decision)
    assert not decision.allowed
    fails = failed(decision)
    assert set(fails) == {
        "attestation.trusted",
        "authenticator.allowed",
        "user_verification",
        "algorithm",
    }
    assert decision.first_failure.rule == "attestation.trusted"
    assert decision.reason("attestation.parse").outcome == "pass"
    assert decision.reason("attestation.statement").outcome == "pass"
    assert decision.reason("metadata.entry").outcome == "pass"
    assert "UV=0" in fails["user_verification"]
    assert fails["algorithm"].startswith(f"{alg_name} is not allowed")


@pytest.mark.parametrize("name", sorted(CASES))
def test_real_mldsa_registration_under_yubikey_fips(name: str, metadata: Any) -> None:
    _, alg_name, _, _, _ = CASES[name]
    decision = judge(load_policy(POLICIES / "yubikey-fips.toml"), pqc(name), metadata)
    no_internal_error(decision)
    assert not decision.allowed
    fails = failed(decision)
    assert decision.first_failure.rule == "metadata.signed"
    assert fails["algorithm"].startswith(f"{alg_name} is not allowed")
    assert "attestation.trusted" in fails and "user_verification" in fails


@pytest.mark.parametrize("name", sorted(CASES))
def test_real_mldsa_registration_under_a_policy_allowing_mldsa(
    name: str, metadata: Any, tmp_path: Path
) -> None:
    """With ML-DSA allowed and UV optional, the algorithm passes; the registration is still
    refused because its attestation chain reaches no trust anchor."""
    _, alg_name, _, _, _ = CASES[name]
    policy = load_policy(
        policy_variant(
            tmp_path,
            "fido-certified-hardware.toml",
            {
                HARDWARE_ALGS: ALL_MLDSA,
                'user_verification = "required"': 'user_verification = "preferred"',
            },
        )
    )
    decision = judge(policy, pqc(name), metadata)
    no_internal_error(decision)
    assert decision.reason("algorithm").outcome == "pass"
    assert decision.reason("algorithm").detail == f"{alg_name} is allowed"
    assert set(failed(decision)) == {"attestation.trusted", "authenticator.allowed"}
    assert not decision.allowed


def test_policy_loader_knows_the_mldsa_names(tmp_path: Path) -> None:
    policy = load_policy(
        policy_variant(tmp_path, "fido-certified-hardware.toml", {HARDWARE_ALGS: ALL_MLDSA})
    )
    assert {-48, -49, -50} <= policy.credential.algorithms
    assert {"ML-DSA-44", "ML-DSA-65", "ML-DSA-87"} <= set(
        policy.summary()["credential"]["algorithms"]
    )
    bad = tmp_path / "bad"
    bad.mkdir()
    with pytest.raises(PolicyLoadError, match="ML-DSA-99"):
        load_policy(
            policy_variant(
                bad, "fido-certified-hardware.toml", {HARDWARE_ALGS: 'algorithms = ["ML-DSA-99"]'}
            )
        )


# -- the paired assertions, through the step-up verifier -----------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_real_mldsa_assertion_verifies_with_the_stepup_verifier(name: str) -> None:
    cap = pqc(name)
    parsed = parse_registration(cap.attestation_object, cap.client_data_json)
    a = cap.assertion
    assert b64u_decode(a["credentialId"]) == parsed.credential_id
    auth_data = b64u_decode(a["authenticatorData"])
    cdj = b64u_decode(a["clientDataJSON"])
    sig = b64u_decode(a["signature"])
    assert len(sig) == CASES[name][4]
    cose = parsed.credential_public_key_cbor
    check_signature(cose, auth_data, cdj, sig)  # raises if it does not verify
    challenge = b64u_decode(json.loads(cdj)["challenge"])
    check_client_data(cdj, challenge=challenge, origins=(cap.origin,))
    # the real key did not verify the user for this assertion: step-up refuses, saying so
    from keyadmin.stepup.verify import parse_auth_data

    with pytest.raises(UserVerificationMissing):
        check_auth_data(
            parse_auth_data(auth_data),
            rp_id=cap.rp_id,
            registered_backup_eligible=False,
            device_bound=True,
        )


@pytest.mark.parametrize("name", sorted(CASES))
def test_mutated_mldsa_assertion_signature_is_refused(name: str) -> None:
    cap = pqc(name)
    parsed = parse_registration(cap.attestation_object, cap.client_data_json)
    a = cap.assertion
    auth_data = b64u_decode(a["authenticatorData"])
    cdj = b64u_decode(a["clientDataJSON"])
    sig = bytearray(b64u_decode(a["signature"]))
    sig[len(sig) // 2] ^= 0x01
    cose = parsed.credential_public_key_cbor
    with pytest.raises(StepUpRefused, match="does not verify"):
        check_signature(cose, auth_data, cdj, bytes(sig))
    with pytest.raises(StepUpRefused, match="does not verify"):
        check_signature(cose, auth_data, cdj, bytes(sig[:-1]))
    # the right signature over other data
    with pytest.raises(StepUpRefused, match="does not verify"):
        check_signature(cose, auth_data[:-1] + b"\x06", cdj, b64u_decode(a["signature"]))


def test_py_webauthn_agrees_on_the_real_mldsa_assertion() -> None:
    """An independent verifier (py_webauthn 3, a test-only dependency) accepts what keyadmin
    accepts, so the COSE reading is not keyadmin's private convention."""
    try:
        import webauthn
    except ImportError:
        require(False, "py_webauthn (dev dependency 'webauthn') is not installed")
        raise
    cap = pqc("jws-realexamples-Mldsa44")
    parsed = parse_registration(cap.attestation_object, cap.client_data_json)
    a = cap.assertion
    cdj = b64u_decode(a["clientDataJSON"])
    result = webauthn.verify_authentication_response(
        credential={
            "id": a["credentialId"],
            "rawId": a["credentialId"],
            "type": "public-key",
            "response": {
                "clientDataJSON": a["clientDataJSON"],
                "authenticatorData": a["authenticatorData"],
                "signature": a["signature"],
            },
        },
        expected_challenge=b64u_decode(json.loads(cdj)["challenge"]),
        expected_rp_id=cap.rp_id,
        expected_origin=cap.origin,
        credential_public_key=parsed.credential_public_key_cbor,
        credential_current_sign_count=0,
        require_user_verification=False,
    )
    assert result.new_sign_count == 5
