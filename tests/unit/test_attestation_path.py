"""Path validation: the time of verification, the trust set, and the CA constraints.

The first tests use real registrations with a frozen clock. The constraint tests build small
PKIs with ``cryptography`` (real certificates, real signatures) to show that basicConstraints,
pathLen and keyUsage violations are refused.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from keyadmin.attestation import (
    AttestationUntrusted,
    parse_registration,
    verify_attestation,
)
from keyadmin.attestation.path import validate_path
from keyadmin.errors import ConfigError, UsageError
from tests.unit.test_attestation_support import (
    apple_root,
    capture,
    metadata_entry,
    utc,
    yubico_u2f_root,
)

YK5_NFC = "2fc0579f-8113-47ea-b116-bb5a8db9202a"


def _yk5():
    cap = capture("fidomds-yubikey_5_nfc")
    return parse_registration(cap.attestation_object, cap.client_data_json)


def test_trusted_inside_validity() -> None:
    evidence = verify_attestation(_yk5(), trust_anchors=[yubico_u2f_root()], at=utc(2030, 1, 1))
    assert evidence.trusted
    assert evidence.verified_at == utc(2030, 1, 1)


def test_refused_after_the_leaf_expires() -> None:
    with pytest.raises(AttestationUntrusted) as info:
        verify_attestation(_yk5(), trust_anchors=[yubico_u2f_root()], at=utc(2050, 9, 5))
    assert "expired on 2050-09-04" in info.value.reason


def test_refused_before_the_leaf_is_valid() -> None:
    with pytest.raises(AttestationUntrusted, match="not yet valid"):
        verify_attestation(_yk5(), trust_anchors=[yubico_u2f_root()], at=utc(2014, 7, 1))


def test_old_evidence_reverified_at_its_own_time() -> None:
    cap = capture("fidomds-iphone_12")  # leaf valid 2022-04-06 .. 2022-04-09 only
    parsed = parse_registration(cap.attestation_object, cap.client_data_json)
    assert verify_attestation(parsed, trust_anchors=[apple_root()], at=utc(2022, 4, 7)).trusted
    with pytest.raises(AttestationUntrusted, match="expired"):
        verify_attestation(parsed, trust_anchors=[apple_root()], at=utc(2026, 11, 22))


def test_empty_trust_set_is_refused_not_allowed() -> None:
    with pytest.raises(AttestationUntrusted) as info:
        verify_attestation(_yk5(), trust_anchors=[], at=utc(2030, 1, 1))
    assert info.value.reason.startswith("no trust anchors")


def test_metadata_entry_alone_supplies_the_anchor() -> None:
    evidence = verify_attestation(
        _yk5(), trust_anchors=[], at=utc(2030, 1, 1), metadata_entry=metadata_entry(YK5_NFC)
    )
    assert evidence.trusted


def test_metadata_entry_without_roots_is_an_empty_trust_set() -> None:
    with pytest.raises(AttestationUntrusted, match="no trust anchors"):
        verify_attestation(
            _yk5(), trust_anchors=[], at=utc(2030, 1, 1), metadata_entry={"aaguid": YK5_NFC}
        )


def test_the_wrong_vendor_root_is_refused() -> None:
    with pytest.raises(AttestationUntrusted, match="no valid path"):
        verify_attestation(_yk5(), trust_anchors=[apple_root()], at=utc(2030, 1, 1))


def test_naive_time_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        verify_attestation(_yk5(), trust_anchors=[yubico_u2f_root()], at=datetime(2030, 1, 1))


def test_a_single_certificate_instead_of_a_list_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        verify_attestation(_yk5(), trust_anchors=yubico_u2f_root(), at=utc(2030, 1, 1))  # type: ignore[arg-type]


def test_anchors_as_der_bytes_are_accepted() -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    der = yubico_u2f_root().public_bytes(Encoding.DER)
    assert verify_attestation(_yk5(), trust_anchors=[der], at=utc(2030, 1, 1)).trusted
    with pytest.raises(ConfigError):
        verify_attestation(_yk5(), trust_anchors=[der[:-1]], at=utc(2030, 1, 1))


# --- constraints, on small PKIs built for the purpose ---------------------------------------

T0 = utc(2025, 1, 1)
AT = utc(2026, 1, 1)


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool | None,
    path_length: int | None = None,
    key_cert_sign: bool | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(T0)
        .not_valid_after(T0 + timedelta(days=3650))
    )
    if ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length), critical=True
        )
    if key_cert_sign is not None:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=not key_cert_sign,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=key_cert_sign,
                crl_sign=key_cert_sign,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _keys(n: int) -> list[ec.EllipticCurvePrivateKey]:
    return [ec.generate_private_key(ec.SECP256R1()) for _ in range(n)]


def test_a_well_formed_three_level_pki_validates() -> None:
    root_k, int_k, leaf_k = _keys(3)
    root = _cert("root", root_k, "root", root_k, ca=True, path_length=1, key_cert_sign=True)
    inter = _cert("inter", int_k, "root", root_k, ca=True, path_length=0, key_cert_sign=True)
    leaf = _cert("leaf", leaf_k, "inter", int_k, ca=False)
    assert validate_path([leaf, inter], [root], AT) == (leaf, inter, root)


def test_path_length_violation_is_refused() -> None:
    root_k, a_k, leaf_k = _keys(3)
    root = _cert("root", root_k, "root", root_k, ca=True, path_length=0, key_cert_sign=True)
    a = _cert("a", a_k, "root", root_k, ca=True, path_length=None, key_cert_sign=True)
    leaf = _cert("leaf", leaf_k, "a", a_k, ca=False)
    with pytest.raises(AttestationUntrusted):
        validate_path([leaf, a], [root], AT)


def test_intermediate_that_is_not_a_ca_is_refused() -> None:
    root_k, int_k, leaf_k = _keys(3)
    root = _cert("root", root_k, "root", root_k, ca=True, key_cert_sign=True)
    inter = _cert("inter", int_k, "root", root_k, ca=False)
    leaf = _cert("leaf", leaf_k, "inter", int_k, ca=False)
    with pytest.raises(AttestationUntrusted):
        validate_path([leaf, inter], [root], AT)


def test_intermediate_without_key_cert_sign_is_refused() -> None:
    root_k, int_k, leaf_k = _keys(3)
    root = _cert("root", root_k, "root", root_k, ca=True, key_cert_sign=True)
    inter = _cert("inter", int_k, "root", root_k, ca=True, key_cert_sign=False)
    leaf = _cert("leaf", leaf_k, "inter", int_k, ca=False)
    with pytest.raises(AttestationUntrusted, match="keyCertSign"):
        validate_path([leaf, inter], [root], AT)


def test_leaf_that_is_a_ca_is_refused() -> None:
    root_k, leaf_k = _keys(2)
    root = _cert("root", root_k, "root", root_k, ca=True, key_cert_sign=True)
    leaf = _cert("leaf", leaf_k, "root", root_k, ca=True)
    with pytest.raises(AttestationUntrusted):
        validate_path([leaf], [root], AT)


def test_unrelated_extra_certificate_in_x5c_is_refused() -> None:
    root_k, leaf_k, other_k = _keys(3)
    root = _cert("root", root_k, "root", root_k, ca=True, key_cert_sign=True)
    leaf = _cert("leaf", leaf_k, "root", root_k, ca=False)
    other = _cert("other", other_k, "other", other_k, ca=True, key_cert_sign=True)
    assert validate_path([leaf], [root], AT) == (leaf, root)
    with pytest.raises(AttestationUntrusted, match="not on the validated path"):
        validate_path([leaf, other], [root], AT)
