"""fmt "apple" (WebAuthn 8.8): Apple anonymous attestation.

Beyond python-fido2: the nonce extension (1.2.840.113635.100.8.2) is parsed as DER
(SEQUENCE { [1] EXPLICIT OCTET STRING }) instead of sliced at a fixed offset, and the
credential public key must equal the attestation certificate's key (python-fido2 omits
this step of the spec).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from cryptography import x509

from keyadmin.attestation.der import DerError, as_octets, children, parse_one
from keyadmin.attestation.errors import AttestationInvalid, AttestationMalformed
from keyadmin.attestation.formats._common import check_not_ca, leaf, require_keys, signed_data
from keyadmin.attestation.model import AttestationType, ParsedRegistration, StatementResult
from keyadmin.attestation.signatures import same_key

FMT = "apple"
OID_APPLE_NONCE = x509.ObjectIdentifier("1.2.840.113635.100.8.2")


def verify_apple(parsed: ParsedRegistration, at: datetime) -> StatementResult:
    require_keys(parsed.att_stmt, FMT, frozenset({"x5c"}), frozenset({"alg"}))
    cert = leaf(parsed, FMT)
    check_not_ca(cert, FMT)
    nonce = read_apple_nonce(cert)
    expected = hashlib.sha256(signed_data(parsed)).digest()
    if not hmac.compare_digest(nonce, expected):
        raise AttestationInvalid("apple nonce does not equal SHA-256(authData || clientDataHash)")
    if not same_key(cert.public_key(), parsed.verified_key("apple key comparison")):
        raise AttestationInvalid("apple credential public key differs from the certificate's key")
    return StatementResult(AttestationType.ANONCA, parsed.x5c)


def read_apple_nonce(cert: x509.Certificate) -> bytes:
    try:
        ext = cert.extensions.get_extension_for_oid(OID_APPLE_NONCE)
    except x509.ExtensionNotFound:
        raise AttestationInvalid(
            "apple attestation certificate lacks the nonce extension"
        ) from None
    except ValueError as e:
        raise AttestationMalformed(f"apple attestation certificate extensions: {e}") from None
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise AttestationMalformed("apple nonce extension has an unexpected type")
    try:
        seq = parse_one(value.value)
        items = children(seq)
        if not seq.is_universal(16) or len(items) != 1 or not items[0].is_context(1):
            raise DerError("expected SEQUENCE { [1] OCTET STRING }")
        inner = children(items[0])
        if len(inner) != 1:
            raise DerError("expected one OCTET STRING inside [1]")
        nonce = as_octets(inner[0], "apple nonce")
    except DerError as e:
        raise AttestationMalformed(f"apple nonce extension is not DER: {e}") from None
    if len(nonce) != 32:
        raise AttestationMalformed(f"apple nonce is {len(nonce)} bytes, not 32")
    return nonce
