"""Typed, frozen records: what a registration contains, and what was proved about it."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding

from keyadmin.attestation.authdata import Flags
from keyadmin.b64 import encode_std, encode_url

__all__ = ["AttestationType", "ClientData", "Flags", "ParsedRegistration"]  # Flags: authdata's


class AttestationType(enum.StrEnum):
    """WebAuthn attestation types (the spec's names)."""

    BASIC = "basic"
    ATTCA = "attca"
    ANONCA = "anonca"
    SELF = "self"
    NONE = "none"


@dataclass(frozen=True)
class ClientData:
    """The fields of clientDataJSON that matter to a registration."""

    type: str
    challenge: bytes
    origin: str
    cross_origin: bool
    raw: bytes


@dataclass(frozen=True)
class ParsedRegistration:
    """A registration that parsed: nothing in it is verified yet.

    ``auth_data`` and ``client_data_hash`` are the exact bytes that statements sign.
    """

    fmt: str
    att_stmt: Mapping[str, Any]
    auth_data: bytes
    client_data_hash: bytes
    client_data: ClientData | None
    rp_id_hash: bytes
    flags: Flags
    sign_count: int
    aaguid: UUID
    credential_id: bytes
    credential_public_key: Mapping[int, Any]
    credential_public_key_cbor: bytes
    credential_key: PublicKeyTypes | None  # None: an algorithm keyadmin does not verify
    algorithm: int
    extensions: Mapping[str, Any]
    x5c: tuple[x509.Certificate, ...]

    def verified_key(self, what: str) -> PublicKeyTypes:
        """The credential key, for a statement that must check a signature or compare a key
        with it; an algorithm keyadmin does not verify makes that statement unsupported."""
        if self.credential_key is None:
            from keyadmin.attestation.errors import AttestationUnsupported

            raise AttestationUnsupported(
                f"credential public key algorithm {self.algorithm} is not one keyadmin "
                f"verifies, so the {what} cannot be checked",
                alg=self.algorithm,
            )
        return self.credential_key

    @property
    def cred_protect(self) -> int | None:
        value = self.extensions.get("credProtect")
        return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class StatementResult:
    """What a format verifier proved: the statement's signature and requirements hold."""

    attestation_type: AttestationType
    trust_path: tuple[x509.Certificate, ...]
    details: Mapping[str, str | int | bool] = field(default_factory=dict)


@dataclass(frozen=True)
class CertificateInfo:
    """One certificate of a verified chain, JSON-friendly."""

    certificate: x509.Certificate

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(Encoding.DER)

    def to_dict(self) -> dict[str, Any]:
        cert = self.certificate
        return {
            "subject": cert.subject.rfc4514_string(),
            "issuer": cert.issuer.rfc4514_string(),
            "serial": format(cert.serial_number, "x"),
            "not_before": cert.not_valid_before_utc.isoformat(),
            "not_after": cert.not_valid_after_utc.isoformat(),
            "sha256": cert.fingerprint(hashes.SHA256()).hex(),
            "der_b64": encode_std(self.der),
        }


@dataclass(frozen=True)
class Evidence:
    """Everything proved about one registration, in the order it was proved.

    ``chain`` is the validated path from the attestation certificate to a trust
    anchor (inclusive); it is empty for self and none attestation, which prove
    nothing about the authenticator's make and model: the policy layer decides.
    """

    fmt: str
    attestation_type: AttestationType
    chain: tuple[CertificateInfo, ...]
    aaguid: UUID
    certificate_aaguid: UUID | None
    metadata_entry: Any
    status_reports: tuple[Any, ...]
    flags: Flags
    algorithm: int
    cred_protect: int | None
    sign_count: int
    credential_id: bytes
    credential_public_key_cbor: bytes
    rp_id_hash: bytes
    client_data: ClientData | None
    verified_at: datetime
    details: Mapping[str, str | int | bool]

    @property
    def trusted(self) -> bool:
        """True when the chain was validated to a trust anchor at ``verified_at``."""
        return bool(self.chain)

    def to_dict(self) -> dict[str, Any]:
        return {
            "fmt": self.fmt,
            "attestation_type": str(self.attestation_type),
            "trusted": self.trusted,
            "chain": [c.to_dict() for c in self.chain],
            "aaguid": str(self.aaguid),
            "certificate_aaguid": (
                str(self.certificate_aaguid) if self.certificate_aaguid else None
            ),
            "metadata": _metadata_summary(self.metadata_entry),
            "status_reports": [_jsonable(r) for r in self.status_reports],
            "flags": self.flags.to_dict(),
            "algorithm": self.algorithm,
            "cred_protect": self.cred_protect,
            "sign_count": self.sign_count,
            "credential_id": encode_url(self.credential_id),
            "credential_public_key": encode_url(self.credential_public_key_cbor),
            "rp_id_hash": self.rp_id_hash.hex(),
            "client_data": (
                None
                if self.client_data is None
                else {
                    "type": self.client_data.type,
                    "challenge": encode_url(self.client_data.challenge),
                    "origin": self.client_data.origin,
                    "cross_origin": self.client_data.cross_origin,
                }
            ),
            "verified_at": self.verified_at.isoformat(),
            "details": dict(self.details),
        }


def _metadata_summary(entry: Any) -> dict[str, Any] | None:
    if entry is None:
        return None
    out: dict[str, Any] = {}
    for key in ("aaguid", "description", "attestation_certificate_key_identifiers"):
        value = _lookup(entry, key)
        if value is not None:
            out[key] = _jsonable(value)
    return out


def _lookup(entry: Any, key: str) -> Any:
    """Read ``key`` from an opaque metadata entry (attribute, snake or camel dict key)."""
    camel = key.split("_")[0] + "".join(p.title() for p in key.split("_")[1:])
    if isinstance(entry, Mapping):
        for k in (key, camel):
            if k in entry:
                return entry[k]
        statement = entry.get("metadataStatement") or entry.get("metadata_statement")
        if isinstance(statement, Mapping):
            for k in (key, camel):
                if k in statement:
                    return statement[k]
        return None
    value = getattr(entry, key, None)
    if value is None:
        statement = getattr(entry, "metadata_statement", None)
        if statement is not None:
            value = getattr(statement, key, None)
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, enum.Enum):
        return _jsonable(value.value)
    if isinstance(value, (datetime,)):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
