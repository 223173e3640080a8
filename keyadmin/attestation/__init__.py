"""Attestation object -> Evidence, proving each claim or refusing.

Typical use::

    parsed = parse_registration(attestation_object, client_data_json)   # AttestationMalformed
    evidence = verify_attestation(parsed, trust_anchors=[], at=datetime.now(UTC),
                                  metadata_entry=entry)                 # raises, never False

See docs/attestation.md for the order of checks and what each error means.
"""

from keyadmin.attestation.errors import (
    AaguidMismatch,
    AttestationError,
    AttestationInvalid,
    AttestationMalformed,
    AttestationUnsupported,
    AttestationUntrusted,
)
from keyadmin.attestation.model import (
    AttestationType,
    CertificateInfo,
    ClientData,
    Evidence,
    Flags,
    ParsedRegistration,
)
from keyadmin.attestation.parse import parse_attestation_object, parse_parts, parse_registration
from keyadmin.attestation.verify import verify_attestation

__all__ = [
    "AaguidMismatch",
    "AttestationError",
    "AttestationInvalid",
    "AttestationMalformed",
    "AttestationType",
    "AttestationUnsupported",
    "AttestationUntrusted",
    "CertificateInfo",
    "ClientData",
    "Evidence",
    "Flags",
    "ParsedRegistration",
    "parse_attestation_object",
    "parse_parts",
    "parse_registration",
    "verify_attestation",
]
