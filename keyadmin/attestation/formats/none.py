"""fmt "none" (WebAuthn 8.7): an empty statement that proves nothing."""

from __future__ import annotations

from datetime import datetime

from keyadmin.attestation.errors import AttestationMalformed
from keyadmin.attestation.model import AttestationType, ParsedRegistration, StatementResult


def verify_none(parsed: ParsedRegistration, at: datetime) -> StatementResult:
    if parsed.att_stmt:
        raise AttestationMalformed("none attStmt must be an empty map")
    return StatementResult(AttestationType.NONE, ())
