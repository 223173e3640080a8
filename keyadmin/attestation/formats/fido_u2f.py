"""fmt "fido-u2f" (WebAuthn 8.6): a U2F registration signature.

Beyond python-fido2: exactly one certificate in x5c, the attestation key and the
credential key both required to be EC P-256 (ES256), and the credential not a CA.

The U2F signature covers only the RP ID hash, clientDataHash, credential ID and key; the
client builds the rest of authenticator data itself (flags UP|AT, counter 0, AAGUID zeros).
Anything else there is an unsigned claim, so it is refused rather than reported as proved.
"""

from __future__ import annotations

from datetime import datetime

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from keyadmin.attestation.errors import AttestationInvalid, AttestationMalformed
from keyadmin.attestation.formats._common import bytes_field, check_not_ca, require_keys
from keyadmin.attestation.model import AttestationType, ParsedRegistration, StatementResult
from keyadmin.attestation.signatures import ES256, verify_signature

FMT = "fido-u2f"
U2F_FLAGS = 0x41  # UP | AT: what a client writes for a U2F registration


def verify_fido_u2f(parsed: ParsedRegistration, at: datetime) -> StatementResult:
    stmt = parsed.att_stmt
    require_keys(stmt, FMT, frozenset({"sig", "x5c"}))
    sig = bytes_field(stmt, "sig", FMT)
    if len(parsed.x5c) != 1:
        raise AttestationMalformed(
            f"fido-u2f x5c must hold exactly one certificate, it holds {len(parsed.x5c)}"
        )
    check_client_built_auth_data(parsed)
    cert = parsed.x5c[0]
    check_not_ca(cert, FMT)
    cert_key = cert.public_key()
    if not isinstance(cert_key, ec.EllipticCurvePublicKey) or not isinstance(
        cert_key.curve, ec.SECP256R1
    ):
        raise AttestationInvalid("fido-u2f attestation certificate key is not EC P-256")
    cred_key = parsed.credential_key
    if parsed.algorithm != ES256 or not isinstance(cred_key, ec.EllipticCurvePublicKey):
        raise AttestationInvalid("fido-u2f credential key is not ES256 on P-256")
    point = cred_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    verification_data = (
        b"\x00" + parsed.rp_id_hash + parsed.client_data_hash + parsed.credential_id + point
    )
    verify_signature(
        cert_key, ES256, verification_data, sig, what="fido-u2f registration signature"
    )
    return StatementResult(AttestationType.BASIC, parsed.x5c)


def check_client_built_auth_data(parsed: ParsedRegistration) -> None:
    """Refuse authData fields the U2F signature does not cover but that claim something."""
    if parsed.aaguid.int != 0:
        raise AttestationInvalid(
            f"fido-u2f authData AAGUID {parsed.aaguid} is not zeros; the U2F signature does "
            "not cover it"
        )
    if parsed.flags.raw != U2F_FLAGS:
        raise AttestationInvalid(
            f"fido-u2f authData flags are 0x{parsed.flags.raw:02x}, not UP|AT (0x41); the U2F "
            "signature does not cover them"
        )
    if parsed.sign_count != 0:
        raise AttestationInvalid(
            f"fido-u2f authData counter {parsed.sign_count} is not 0; the U2F signature "
            "does not cover it"
        )
