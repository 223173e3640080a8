"""ML-DSA cases no real capture shows, forged in the test: packed self attestation with each
parameter set, a mutated signature, a key that does not fit its alg, malformed AKP keys, an
algorithm keyadmin does not know (-999), and stored keys step-up cannot use."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import mldsa
from fido2 import cbor as fido_cbor

from keyadmin.attestation import (
    AttestationInvalid,
    AttestationMalformed,
    AttestationType,
    parse_registration,
    verify_attestation,
)
from keyadmin.policy import evaluate_registration, load_policy
from keyadmin.stepup.errors import StepUpRefused
from keyadmin.stepup.verify import check_signature
from tests.support.forge import NOW, Vendor, lab_policy_trusting, packed_registration
from tests.unit.test_mldsa import MODEL, failed, no_internal_error
from tests.unit.test_policy_support import POLICIES


def _mldsa_key(alg: int) -> Any:
    return {
        -48: mldsa.MLDSA44PrivateKey,
        -49: mldsa.MLDSA65PrivateKey,
        -50: mldsa.MLDSA87PrivateKey,
    }[alg].generate()


def akp(alg: int, key: Any) -> dict[int, Any]:
    return {1: 7, 3: alg, -1: key.public_key().public_bytes_raw()}


def self_attested(
    key: Any, cose: dict[int, Any], stmt_alg: int, *, flags: int = 0x45
) -> tuple[bytes, bytes]:
    """A packed self-attestation registration signed by the credential key itself."""
    cred_id = os.urandom(32)
    auth = (
        hashlib.sha256(b"example.com").digest()
        + bytes([flags])
        + (0).to_bytes(4, "big")
        + MODEL.bytes
        + len(cred_id).to_bytes(2, "big")
        + cred_id
        + fido_cbor.encode(cose)
    )
    challenge = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    cdj = json.dumps(
        {"type": "webauthn.create", "challenge": challenge, "origin": "https://example.com"}
    ).encode()
    sig = key.sign(auth + hashlib.sha256(cdj).digest())
    att = fido_cbor.encode(
        {"fmt": "packed", "attStmt": {"alg": stmt_alg, "sig": sig}, "authData": auth}
    )
    return att, cdj


@pytest.mark.parametrize("alg", [-48, -49, -50])
def test_mldsa_packed_self_attestation_verifies_and_a_mutation_does_not(alg: int) -> None:
    key = _mldsa_key(alg)
    att, cdj = self_attested(key, akp(alg, key), alg)
    evidence = verify_attestation(parse_registration(att, cdj), trust_anchors=(), at=NOW)
    assert evidence.attestation_type is AttestationType.SELF
    assert evidence.algorithm == alg
    obj = fido_cbor.decode(att)
    sig = bytearray(obj["attStmt"]["sig"])
    sig[7] ^= 0x80
    obj["attStmt"]["sig"] = bytes(sig)
    with pytest.raises(AttestationInvalid, match="does not verify"):
        verify_attestation(parse_registration(fido_cbor.encode(obj), cdj), trust_anchors=(), at=NOW)


def test_mldsa_self_attestation_alg_must_match_the_credential_key() -> None:
    key = _mldsa_key(-48)
    att, cdj = self_attested(key, akp(-48, key), -49)
    with pytest.raises(AttestationInvalid, match="differs from the credential key"):
        verify_attestation(parse_registration(att, cdj), trust_anchors=(), at=NOW)


def test_mldsa_key_of_the_wrong_parameter_set_is_malformed() -> None:
    key = _mldsa_key(-48)
    for cose in (
        {1: 7, 3: -49, -1: key.public_key().public_bytes_raw()},  # 44 key labelled 65
        {1: 2, 3: -48, -1: key.public_key().public_bytes_raw()},  # not kty AKP
        {1: 7, 3: -48},  # no pub
        {1: 7, 3: -48, -1: key.public_key().public_bytes_raw(), -2: key.private_bytes_raw()},
        {1: 7, 3: -48, -1: key.public_key().public_bytes_raw()[:-1]},
    ):
        att, cdj = self_attested(key, cose, -48)
        with pytest.raises(AttestationMalformed):
            parse_registration(att, cdj)


def test_akp_key_type_with_a_classical_alg_is_malformed() -> None:
    key = _mldsa_key(-48)
    att, cdj = self_attested(key, {1: 7, 3: -7, -1: key.public_key().public_bytes_raw()}, -7)
    with pytest.raises(AttestationMalformed):
        parse_registration(att, cdj)


def test_forged_mldsa_full_attestation_is_admitted_only_where_the_policy_lists_it(
    tmp_path: Path,
) -> None:
    vendor = Vendor.create()
    path = lab_policy_trusting(tmp_path, vendor, f'allow_aaguids = ["{MODEL}"]')
    es_only = load_policy(path)
    path.write_text(
        path.read_text().replace('algorithms = ["ES256", "EdDSA"]', 'algorithms = ["ML-DSA-65"]')
    )
    mldsa_ok = load_policy(path)
    att_key, cert = vendor.batch(MODEL)
    cred = _mldsa_key(-49)
    att, cdj = packed_registration(att_key, cert, MODEL, cose=akp(-49, cred))
    allowed = evaluate_registration(mldsa_ok, att, cdj, at=NOW, metadata=None)
    assert allowed.allowed, failed(allowed)
    assert allowed.evidence.credential_public_key_cbor == fido_cbor.encode(akp(-49, cred))
    refused = evaluate_registration(es_only, att, cdj, at=NOW, metadata=None)
    no_internal_error(refused)
    assert failed(refused) == {"algorithm": "ML-DSA-65 is not allowed (allowed: ES256, EdDSA)"}


@pytest.mark.parametrize(
    "cose",
    [
        {1: 2, 3: -999, -1: 1, -2: b"\x01" * 32, -3: b"\x02" * 32},  # unknown alg, EC2 shape
        {1: 99, 3: -999, -1: b"\x00" * 64},  # unknown alg and key type
    ],
    ids=["ec2-shape", "unknown-kty"],
)
def test_unknown_algorithm_is_a_policy_refusal_not_an_internal_error(
    cose: dict[int, Any], tmp_path: Path
) -> None:
    vendor = Vendor.create()
    policy = load_policy(lab_policy_trusting(tmp_path, vendor, f'allow_aaguids = ["{MODEL}"]'))
    att_key, cert = vendor.batch(MODEL)
    att, cdj = packed_registration(att_key, cert, MODEL, cose=cose)
    decision = evaluate_registration(policy, att, cdj, at=NOW, metadata=None)
    no_internal_error(decision)
    assert not decision.allowed
    fails = failed(decision)
    assert list(fails) == ["algorithm"]
    assert "-999" in fails["algorithm"]
    assert decision.reason("attestation.parse").outcome == "pass"


def test_unknown_algorithm_in_self_attestation_is_refused_at_statement_and_algorithm() -> None:
    key = _mldsa_key(-48)
    att, cdj = self_attested(key, {1: 7, 3: -999, -1: key.public_key().public_bytes_raw()}, -999)
    policy = load_policy(POLICIES / "fido-certified-hardware.toml")
    decision = evaluate_registration(
        policy,
        att,
        cdj,
        at=NOW,
        metadata=None,
        rp_id="example.com",
        origins=["https://example.com"],
    )
    no_internal_error(decision)
    fails = failed(decision)
    assert "-999" in fails["algorithm"]
    assert "-999" in fails["attestation.statement"]


def test_stepup_refuses_a_stored_key_it_cannot_use() -> None:
    key = _mldsa_key(-48)
    pub = key.public_key().public_bytes_raw()
    ad, cdj = b"\x00" * 37, b"{}"
    sig = key.sign(ad + hashlib.sha256(cdj).digest())
    check_signature(fido_cbor.encode({1: 7, 3: -48, -1: pub}), ad, cdj, sig)  # the control
    with pytest.raises(StepUpRefused, match="COSE algorithm -999 is not one keyadmin verifies"):
        check_signature(fido_cbor.encode({1: 7, 3: -999, -1: pub}), ad, cdj, sig)
    with pytest.raises(StepUpRefused, match="carries a private key"):
        check_signature(
            fido_cbor.encode({1: 7, 3: -48, -1: pub, -2: key.private_bytes_raw()}), ad, cdj, sig
        )
    with pytest.raises(StepUpRefused, match="does not verify"):  # a 44 signature under a 65 key
        other = _mldsa_key(-49).public_key().public_bytes_raw()
        check_signature(fido_cbor.encode({1: 7, 3: -49, -1: other}), ad, cdj, sig)
