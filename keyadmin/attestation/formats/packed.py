"""fmt "packed" (WebAuthn 8.2): full (x5c) and self attestation.

Beyond python-fido2: a statement key set check, ECDAA refused explicitly, the
alg checked against the attestation key's type and curve, the leaf's subject and
basicConstraints checked, and the self-attestation alg checked against the credential key.
"""

from __future__ import annotations

from datetime import datetime

from cryptography import x509

from keyadmin.attestation.errors import AttestationInvalid, AttestationUnsupported
from keyadmin.attestation.formats._common import (
    bytes_field,
    check_v3_end_entity,
    int_field,
    require_keys,
    signed_data,
)
from keyadmin.attestation.model import AttestationType, ParsedRegistration, StatementResult
from keyadmin.attestation.signatures import verify_signature

FMT = "packed"


def verify_packed(parsed: ParsedRegistration, at: datetime) -> StatementResult:
    stmt = parsed.att_stmt
    if "ecdaaKeyId" in stmt:
        raise AttestationUnsupported("packed ECDAA attestation is not supported (withdrawn)")
    require_keys(stmt, FMT, frozenset({"alg", "sig"}), frozenset({"x5c"}))
    alg = int_field(stmt, "alg", FMT)
    sig = bytes_field(stmt, "sig", FMT)
    if parsed.x5c:
        cert = parsed.x5c[0]
        check_packed_certificate(cert)
        verify_signature(
            cert.public_key(), alg, signed_data(parsed), sig, what="packed statement signature"
        )
        return StatementResult(AttestationType.BASIC, parsed.x5c)
    if alg != parsed.algorithm:
        raise AttestationInvalid(
            f"packed self attestation alg {alg} differs from the credential key's alg "
            f"{parsed.algorithm}"
        )
    verify_signature(
        parsed.verified_key("packed self attestation"),
        alg,
        signed_data(parsed),
        sig,
        what="packed self-attestation signature",
    )
    return StatementResult(AttestationType.SELF, ())


def check_packed_certificate(cert: x509.Certificate) -> None:
    """WebAuthn 8.2.1: version 3, subject C/O/OU="Authenticator Attestation"/CN, CA=false."""
    check_v3_end_entity(cert, FMT)
    subject = cert.subject

    def one(oid: x509.ObjectIdentifier, name: str) -> str:
        attrs = subject.get_attributes_for_oid(oid)
        if len(attrs) != 1 or not isinstance(attrs[0].value, str) or not attrs[0].value:
            raise AttestationInvalid(f"packed attestation certificate subject needs one {name}")
        return attrs[0].value

    country = one(x509.NameOID.COUNTRY_NAME, "C")
    if len(country) != 2 or not country.isalpha():
        raise AttestationInvalid(f"packed attestation certificate C={country!r} is not ISO 3166")
    one(x509.NameOID.ORGANIZATION_NAME, "O")
    one(x509.NameOID.COMMON_NAME, "CN")
    if one(x509.NameOID.ORGANIZATIONAL_UNIT_NAME, "OU") != "Authenticator Attestation":
        raise AttestationInvalid(
            'packed attestation certificate OU must be "Authenticator Attestation"'
        )
