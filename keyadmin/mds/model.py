"""Frozen, typed records of MDS3 metadata, as keyadmin uses them. Import-light (stdlib only)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: Status reports that must block a model (FIDO MDS3 §3.1.4 AuthenticatorStatus).
BLOCKING_STATUSES: frozenset[str] = frozenset(
    {
        "REVOKED",
        "ATTESTATION_KEY_COMPROMISE",
        "USER_KEY_REMOTE_COMPROMISE",
        "USER_KEY_PHYSICAL_COMPROMISE",
        "USER_VERIFICATION_BYPASS",
    }
)

#: FIDO certification levels, lowest first (FIDO_CERTIFIED is the legacy name for L1).
CERTIFICATION_LEVELS: tuple[str, ...] = (
    "FIDO_CERTIFIED",
    "FIDO_CERTIFIED_L1",
    "FIDO_CERTIFIED_L1plus",
    "FIDO_CERTIFIED_L2",
    "FIDO_CERTIFIED_L2plus",
    "FIDO_CERTIFIED_L3",
    "FIDO_CERTIFIED_L3plus",
)

KNOWN_STATUSES: frozenset[str] = frozenset(
    {
        "NOT_FIDO_CERTIFIED",
        "UPDATE_AVAILABLE",
        "RETIRED",
        "SELF_ASSERTION_SUBMITTED",
        "FIPS140_CERTIFIED_L1",
        "FIPS140_CERTIFIED_L2",
        "FIPS140_CERTIFIED_L3",
        "FIPS140_CERTIFIED_L4",
        *BLOCKING_STATUSES,
        *CERTIFICATION_LEVELS,
    }
)


@dataclass(frozen=True)
class StatusReport:
    status: str
    effective_date: str | None = None
    authenticator_version: int | None = None
    certificate_number: str | None = None
    certification_descriptor: str | None = None
    certification_policy_version: str | None = None
    certification_requirements_version: str | None = None
    url: str | None = None
    certificate: str | None = None  # base64 DER, for ATTESTATION_KEY_COMPROMISE


@dataclass(frozen=True)
class RootCertificate:
    sha256: str
    subject: str | None  # None when the DER does not parse
    organization: str | None
    not_after: str | None
    der_b64: str
    parse_error: str | None = None


@dataclass(frozen=True)
class Entry:
    """One parsed metadata entry (a model of authenticator)."""

    index: int
    description: str
    aaguid: str | None
    aaid: str | None
    attestation_certificate_key_identifiers: tuple[str, ...]
    vendor: str | None
    protocol_family: str | None
    authenticator_version: int | None
    status: str  # the latest status report
    status_date: str | None
    certification_level: str | None  # the latest FIDO_CERTIFIED_* report
    blocking_statuses: tuple[str, ...]  # every blocking status ever reported
    time_of_last_status_change: str
    status_reports: tuple[StatusReport, ...]
    key_protection: tuple[str, ...]
    matcher_protection: tuple[str, ...]
    attachment_hint: tuple[str, ...]
    transports: tuple[str, ...]  # authenticatorGetInfo.transports, when given
    attestation_types: tuple[str, ...]
    user_verification_methods: tuple[str, ...]
    attestation_root_certificates: tuple[RootCertificate, ...]
    crypto_strength: int | None = None
    friendly_names: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """A stable identity across BLOBs: the AAGUID, else the AAID, else the key identifiers."""
        if self.aaguid:
            return f"aaguid:{self.aaguid}"
        if self.aaid:
            return f"aaid:{self.aaid}"
        return "keyids:" + ",".join(sorted(self.attestation_certificate_key_identifiers))

    @property
    def blocked(self) -> bool:
        return bool(self.blocking_statuses)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SkippedEntry:
    """An entry that does not parse; kept raw and reported, never fatal for the rest."""

    index: int
    reason: str
    aaguid: str | None
    aaid: str | None
    description: str | None

    @property
    def key(self) -> str:
        if self.aaguid:
            return f"aaguid:{self.aaguid}"
        if self.aaid:
            return f"aaid:{self.aaid}"
        return f"index:{self.index}"


@dataclass(frozen=True)
class ParsedPayload:
    no: int
    next_update: str  # ISO date
    legal_header: str
    entries: tuple[Entry, ...]
    skipped: tuple[SkippedEntry, ...]
    raw_entries: tuple[dict[str, Any], ...]  # index-aligned with the payload's entries
