"""Checks shared by several format verifiers (statement fields, attestation certificates)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cryptography import x509

from keyadmin.attestation.errors import AttestationInvalid, AttestationMalformed
from keyadmin.attestation.model import ParsedRegistration


def require_keys(
    stmt: Mapping[str, Any],
    fmt: str,
    required: frozenset[str],
    optional: frozenset[str] = frozenset(),
) -> None:
    """Refuse a statement that lacks a required key or carries an unknown one."""
    keys = set(stmt)
    missing = required - keys
    if missing:
        raise AttestationMalformed(f"{fmt} attStmt lacks {', '.join(sorted(missing))}")
    extra = keys - required - optional
    if extra:
        raise AttestationMalformed(f"{fmt} attStmt has unexpected keys {', '.join(sorted(extra))}")


def int_field(stmt: Mapping[str, Any], key: str, fmt: str) -> int:
    value = stmt[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise AttestationMalformed(f"{fmt} attStmt {key} is not an integer")
    return value


def bytes_field(stmt: Mapping[str, Any], key: str, fmt: str) -> bytes:
    value = stmt[key]
    if not isinstance(value, bytes) or not value:
        raise AttestationMalformed(f"{fmt} attStmt {key} is not a non-empty byte string")
    return value


def leaf(parsed: ParsedRegistration, fmt: str) -> x509.Certificate:
    if not parsed.x5c:
        raise AttestationMalformed(f"{fmt} attStmt has no x5c")
    return parsed.x5c[0]


def signed_data(parsed: ParsedRegistration) -> bytes:
    """authenticatorData || clientDataHash: what most statements sign."""
    return parsed.auth_data + parsed.client_data_hash


def check_v3_end_entity(cert: x509.Certificate, fmt: str) -> None:
    """Attestation certificates are X.509 v3 with basicConstraints CA=false."""
    if cert.version != x509.Version.v3:
        raise AttestationInvalid(f"{fmt} attestation certificate is not X.509 version 3")
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        raise AttestationInvalid(
            f"{fmt} attestation certificate has no basicConstraints extension"
        ) from None
    except ValueError as e:
        raise AttestationMalformed(f"{fmt} attestation certificate extensions: {e}") from None
    if bc.value.ca:
        raise AttestationInvalid(
            f"{fmt} attestation certificate is a CA (basicConstraints CA=true)"
        )


def check_not_ca(cert: x509.Certificate, fmt: str) -> None:
    """A leaf without basicConstraints is accepted (U2F, Android), but never CA=true."""
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return
    except ValueError as e:
        raise AttestationMalformed(f"{fmt} attestation certificate extensions: {e}") from None
    if bc.value.ca:
        raise AttestationInvalid(
            f"{fmt} attestation certificate is a CA (basicConstraints CA=true)"
        )
