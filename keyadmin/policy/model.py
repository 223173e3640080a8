"""The policy file as frozen, typed records, and the results of evaluating one.

A ``Policy`` is what ``keyadmin.policy.loader.load_policy`` returns after every check of
docs/policy.md has passed; nothing here reads files or the terminal. ``Decision`` is the
result of every evaluation: ``allowed`` and the ``reasons`` for each rule, in the fixed
order documented in ``keyadmin.policy.evaluate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypedDict

if TYPE_CHECKING:
    from keyadmin.attestation import Evidence

Outcome = Literal["pass", "fail", "skip"]

#: COSE algorithm names a policy may list, and their COSE identifiers.
ALGORITHMS: dict[str, int] = {
    "ES256": -7,
    "EdDSA": -8,
    "ES384": -35,
    "ES512": -36,
    "PS256": -37,
    "RS256": -257,
    "ML-DSA-44": -48,  # FIPS 204 / RFC 9964, COSE key type AKP
    "ML-DSA-65": -49,
    "ML-DSA-87": -50,
}
ALGORITHM_NAMES: dict[int, str] = {v: k for k, v in ALGORITHMS.items()}

#: Attestation statement formats keyadmin verifies.
FORMATS: frozenset[str] = frozenset(
    {"packed", "fido-u2f", "tpm", "apple", "android-key", "android-safetynet", "none"}
)
#: Formats produced only by platform authenticators (never a roaming hardware key).
PLATFORM_FORMATS: frozenset[str] = frozenset({"tpm", "apple", "android-key", "android-safetynet"})
#: WebAuthn attestation types; "basic" and "attca" are direct attestation.
ATTESTATION_TYPES: frozenset[str] = frozenset({"basic", "attca", "anonca", "self", "none"})
#: Types that prove nothing about make and model.
UNVERIFIED_TYPES: frozenset[str] = frozenset({"self", "none"})


@dataclass(frozen=True)
class Version:
    """A firmware version ``major.minor.patch`` (compared numerically)."""

    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> Version:
        parts = text.strip().split(".")
        if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
            raise ValueError(f"{text!r} is not a version like 5.7.0")
        nums = [int(p) for p in parts] + [0] * (3 - len(parts))
        return cls(nums[0], nums[1], nums[2])

    def as_tuple(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


@dataclass(frozen=True)
class RelyingParty:
    rp_id: str
    origins: tuple[str, ...]


@dataclass(frozen=True)
class AttestationRules:
    formats: frozenset[str]
    types: frozenset[str]


@dataclass(frozen=True)
class TrustRoot:
    """An explicitly named root (``trust.extra_roots``), loaded at policy load time."""

    path: Path
    der: bytes
    sha256: str
    subject: str


@dataclass(frozen=True)
class MetadataRules:
    required: bool
    signed: bool
    freshness_grace_days: float
    forbidden_statuses: frozenset[str]
    min_certification: str | None
    # MDS 3.1 (docs/policy.md): FIPS 140 floor, retired models, certification profiles, and
    # what an import does with a BLOB that lists one model twice.
    fips_level_min: int | None = None
    retired: Literal["refuse", "until-sunset"] = "refuse"
    certification_profiles: frozenset[str] = frozenset()
    duplicate_entries: Literal["refuse", "most-restrictive"] = "refuse"


@dataclass(frozen=True)
class AuthenticatorRules:
    allow_aaguids: frozenset[str]
    allow_vendor_roots: frozenset[str]  # SHA-256 (lower-case hex) of vendor root certificates
    allow_any_metadata_model: bool
    deny_aaguids: frozenset[str]
    attachment: Literal["roaming", "any"]
    key_protection: tuple[str, ...]  # every one must be in the metadata's keyProtection


@dataclass(frozen=True)
class HardwareRules:
    """``[hardware]``: what a model's metadata must declare to count as a roaming hardware key
    (checked by ``keyadmin.policy.hardware``; see docs/policy.md)."""

    key_protection_any: tuple[str, ...]  # keyProtection has at least one of these
    key_protection_forbidden: tuple[str, ...]  # ... and none of these
    matcher_protection_allowed: tuple[str, ...]  # every matcherProtection value is one of these
    attachment_required: tuple[str, ...]  # attachmentHint has every one of these
    attachment_forbidden: tuple[str, ...]  # ... and none of these
    connection_hints: tuple[str, ...]  # attachmentHint has one of these, or
    connection_transports: tuple[str, ...]  # authenticatorGetInfo.transports has one of these
    transports_forbidden: tuple[str, ...]  # authenticatorGetInfo.transports has none of these
    deny_description_words: tuple[str, ...]  # whole words, lower case

    def to_dict(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class CredentialRules:
    device_bound: bool
    user_verification: Literal["required", "preferred", "discouraged"]
    algorithms: frozenset[int]
    cred_protect: int | None  # minimum credProtect level (1..3), None: not checked
    counter: Literal["strict", "allow-zero"]


@dataclass(frozen=True)
class DeviceRules:
    pin_required: bool
    min_pin_length: int | None
    always_uv: bool
    firmware_minimum: dict[str, Version] = field(default_factory=dict)  # AAGUID -> floor


@dataclass(frozen=True)
class StepUpRules:
    """The ``[step_up]`` limits; :data:`STEP_UP_DEFAULTS` holds what a policy leaves out."""

    challenge_lifetime_seconds: int
    max_attempts: int  # failed step-ups per credential within the window
    max_attempts_per_user: int  # failed step-ups per user within the window
    attempt_window_seconds: int
    counter_jump_threshold: int  # a larger counter jump is flagged
    receipt_lifetime_seconds: int
    max_live_challenges: int  # unused, unexpired challenges per user; begin refuses more


#: The one place step-up's defaults live (the loader, the step-up API and sync read them
#: here). A policy that sets max_attempts but not max_attempts_per_user gets twice it.
STEP_UP_DEFAULTS = StepUpRules(
    challenge_lifetime_seconds=120,
    max_attempts=3,
    max_attempts_per_user=6,
    attempt_window_seconds=900,
    counter_jump_threshold=1000,
    receipt_lifetime_seconds=300,
    max_live_challenges=10,
)


@dataclass(frozen=True)
class EnrolmentRules:
    witness_required: bool = False  # dual control: a second operator proves presence


@dataclass(frozen=True)
class EnterpriseRules:
    """``[enterprise_attestation]`` (keyadmin.policy.fleet): ask for it at enrolment."""

    facilitation: Literal["vendor", "platform"]
    rp_ids: tuple[str, ...]  # the RP IDs it is for (platform: the only ones keyadmin asks for)
    required: bool  # refuse a registration without it


@dataclass(frozen=True)
class InventoryRules:
    """``[inventory]`` (keyadmin.policy.fleet): the physical key behind a credential."""

    required: bool = False  # the key's serial must be in the inventory, in stock
    serial_reuse: Literal["refuse", "flag"] = "refuse"  # a serial seen for a second user


@dataclass(frozen=True)
class KeysPerUser:
    minimum: int
    maximum: int


@dataclass(frozen=True)
class Policy:
    """A loaded, checked policy file."""

    path: Path
    sha256: str  # of the file's bytes
    name: str
    version: int
    description: str
    relying_party: RelyingParty
    attestation: AttestationRules
    trust_roots: tuple[TrustRoot, ...]
    metadata: MetadataRules
    authenticators: AuthenticatorRules
    credential: CredentialRules
    device: DeviceRules
    step_up: StepUpRules
    keys_per_user: KeysPerUser
    enrolment: EnrolmentRules = EnrolmentRules()
    hardware: HardwareRules | None = None  # the [hardware] section, when the file has one
    enterprise: EnterpriseRules | None = None  # [enterprise_attestation], when present
    inventory: InventoryRules = InventoryRules()
    text: str = ""  # the exact file content that was hashed (stored with each enrolment)

    def summary(self) -> PolicySummary:
        """A JSON-friendly view (for ``keyadmin policy check --json``)."""
        return {
            "path": str(self.path),
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "description": self.description,
            "rp_id": self.relying_party.rp_id,
            "origins": list(self.relying_party.origins),
            "formats": sorted(self.attestation.formats),
            "attestation_types": sorted(self.attestation.types),
            "trust_roots": [
                {"path": str(r.path), "sha256": r.sha256, "subject": r.subject}
                for r in self.trust_roots
            ],
            "metadata": {
                "required": self.metadata.required,
                "signed": self.metadata.signed,
                "freshness_grace_days": self.metadata.freshness_grace_days,
                "forbidden_statuses": sorted(self.metadata.forbidden_statuses),
                "min_certification": self.metadata.min_certification,
                "fips_level_min": self.metadata.fips_level_min,
                "retired": self.metadata.retired,
                "certification_profiles": sorted(self.metadata.certification_profiles),
                "duplicate_entries": self.metadata.duplicate_entries,
            },
            "authenticators": {
                "allow_aaguids": sorted(self.authenticators.allow_aaguids),
                "allow_vendor_roots": sorted(self.authenticators.allow_vendor_roots),
                "allow_any_metadata_model": self.authenticators.allow_any_metadata_model,
                "deny_aaguids": sorted(self.authenticators.deny_aaguids),
                "attachment": self.authenticators.attachment,
                "key_protection": list(self.authenticators.key_protection),
            },
            "hardware": self.hardware.to_dict() if self.hardware is not None else None,
            "credential": {
                "device_bound": self.credential.device_bound,
                "user_verification": self.credential.user_verification,
                "algorithms": sorted(
                    ALGORITHM_NAMES.get(a, str(a)) for a in self.credential.algorithms
                ),
                "cred_protect": self.credential.cred_protect,
                "counter": self.credential.counter,
            },
            "device": {
                "pin_required": self.device.pin_required,
                "min_pin_length": self.device.min_pin_length,
                "always_uv": self.device.always_uv,
                "firmware_minimum": {k: str(v) for k, v in self.device.firmware_minimum.items()},
            },
            "step_up": {
                "challenge_lifetime_seconds": self.step_up.challenge_lifetime_seconds,
                "max_attempts": self.step_up.max_attempts,
                "max_attempts_per_user": self.step_up.max_attempts_per_user,
                "attempt_window_seconds": self.step_up.attempt_window_seconds,
                "counter_jump_threshold": self.step_up.counter_jump_threshold,
                "receipt_lifetime_seconds": self.step_up.receipt_lifetime_seconds,
            },
            "enrolment": {"witness_required": self.enrolment.witness_required},
            "keys_per_user": {
                "minimum": self.keys_per_user.minimum,
                "maximum": self.keys_per_user.maximum,
            },
        }


class TrustRootSummary(TypedDict):
    path: str
    sha256: str
    subject: str


class AuthenticatorSummary(TypedDict):
    allow_aaguids: list[str]
    allow_vendor_roots: list[str]
    allow_any_metadata_model: bool
    deny_aaguids: list[str]
    attachment: str
    key_protection: list[str]


class PolicySummary(TypedDict):
    """``Policy.summary()``: the JSON of ``keyadmin policy check --json``."""

    path: str
    name: str
    version: int
    sha256: str
    description: str
    rp_id: str
    origins: list[str]
    formats: list[str]
    attestation_types: list[str]
    trust_roots: list[TrustRootSummary]
    metadata: dict[str, object]
    authenticators: AuthenticatorSummary
    hardware: dict[str, list[str]] | None
    credential: dict[str, object]
    device: dict[str, object]
    step_up: dict[str, object]
    enrolment: dict[str, object]
    keys_per_user: dict[str, object]


@dataclass(frozen=True)
class Reason:
    """The outcome of one rule: ``pass``, ``fail`` or ``skip`` (not applicable / not reached)."""

    rule: str
    outcome: Outcome
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "outcome": self.outcome, "detail": self.detail}


@dataclass(frozen=True)
class Decision:
    """``allowed`` only when no rule failed and every rule the decision rests on passed."""

    allowed: bool
    reasons: tuple[Reason, ...]
    evidence: Evidence | None = None  # when a registration was verified
    subject: dict[str, object] = field(default_factory=dict)  # what was judged (policy, at, ...)

    @property
    def failed(self) -> tuple[Reason, ...]:
        return tuple(r for r in self.reasons if r.outcome == "fail")

    @property
    def first_failure(self) -> Reason | None:
        return next(iter(self.failed), None)

    def reason(self, rule: str) -> Reason:
        for r in self.reasons:
            if r.rule == rule:
                return r
        raise KeyError(rule)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "decision": "allowed" if self.allowed else "refused",
            "reasons": [r.to_dict() for r in self.reasons],
        }
        out.update(self.subject)
        out["evidence"] = self.evidence.to_dict() if self.evidence is not None else None
        return out
