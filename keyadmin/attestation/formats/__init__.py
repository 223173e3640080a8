"""Step 2: one verifier per attestation statement format.

Each ``verify_<fmt>(parsed, at)`` proves the statement's signature (or nonce) and the
format's certificate requirements, and returns a ``StatementResult``; it raises
``AttestationMalformed`` for a statement of the wrong shape and ``AttestationInvalid``
for one that does not verify. Trust in the chain is not decided here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from keyadmin.attestation.errors import AttestationUnsupported
from keyadmin.attestation.formats.android_key import verify_android_key
from keyadmin.attestation.formats.android_safetynet import verify_android_safetynet
from keyadmin.attestation.formats.apple import verify_apple
from keyadmin.attestation.formats.fido_u2f import verify_fido_u2f
from keyadmin.attestation.formats.none import verify_none
from keyadmin.attestation.formats.packed import verify_packed
from keyadmin.attestation.formats.tpm import verify_tpm
from keyadmin.attestation.model import ParsedRegistration, StatementResult

Verifier = Callable[[ParsedRegistration, datetime], StatementResult]

VERIFIERS: dict[str, Verifier] = {
    "packed": verify_packed,
    "fido-u2f": verify_fido_u2f,
    "tpm": verify_tpm,
    "apple": verify_apple,
    "android-key": verify_android_key,
    "android-safetynet": verify_android_safetynet,
    "none": verify_none,
}


def verify_statement(parsed: ParsedRegistration, at: datetime) -> StatementResult:
    """Dispatch to the verifier for ``parsed.fmt``; an unknown format is unsupported."""
    verifier = VERIFIERS.get(parsed.fmt)
    if verifier is None:
        raise AttestationUnsupported(
            f"attestation format {parsed.fmt!r} is not supported", fmt=parsed.fmt
        )
    return verifier(parsed, at)


__all__ = ["VERIFIERS", "verify_statement"]
