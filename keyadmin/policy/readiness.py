"""Is this key ready for enrolment under the policy? ``evaluate_device(policy, facts) -> Decision``.

The device layer (``keyadmin device info/prepare``, enrolment) reads the facts from the key's
``authenticatorGetInfo`` and passes them in as a plain ``DeviceFacts``; this module never
imports the device layer. Rules, in order:

1. device.allowed         the AAGUID is not denied (and is on an AAGUID allowlist, when the
                          policy admits by AAGUID only) - a hint: the attestation decides
2. device.firmware        firmware >= the policy's floor for this AAGUID (EUCLEAK: YubiKey 5
                          before 5.7, Yubico advisory YSA-2024-03)
3. device.pin_set         a PIN is set (clientPin option true)
4. device.min_pin_length  the key enforces at least the policy's minimum PIN length
5. device.always_uv       the key has alwaysUv on
"""

from __future__ import annotations

from dataclasses import dataclass

from keyadmin.policy.evaluate import decide, run_rules
from keyadmin.policy.model import Decision, Outcome, Policy, Version


@dataclass(frozen=True)
class DeviceFacts:
    """What a key says about itself (CTAP 2.1 getInfo); None where it does not say."""

    aaguid: str
    firmware: str | None = None  # "5.7.0"; getInfo firmwareVersion (0x0E), decoded
    pin_set: bool | None = None  # options.clientPin
    min_pin_length: int | None = None  # getInfo minPINLength (0x0D)
    always_uv: bool | None = None  # options.alwaysUv
    cred_protect_supported: bool | None = None


@dataclass
class _DeviceCtx:
    policy: Policy
    facts: DeviceFacts


def _allowed(ctx: _DeviceCtx) -> tuple[Outcome, str]:
    a = ctx.policy.authenticators
    aaguid = ctx.facts.aaguid.lower()
    if aaguid in a.deny_aaguids:
        return "fail", f"AAGUID {aaguid} is on the deny list"
    if a.allow_aaguids and not (a.allow_vendor_roots or a.allow_any_metadata_model):
        if aaguid not in a.allow_aaguids:
            return "fail", f"AAGUID {aaguid} is not on the allowlist"
        return "pass", f"AAGUID {aaguid} is on the allowlist (attestation must still prove it)"
    return "skip", "the allowlist is decided by the verified attestation at enrolment"


def _firmware(ctx: _DeviceCtx) -> tuple[Outcome, str]:
    floor = ctx.policy.device.firmware_minimum.get(ctx.facts.aaguid.lower())
    if floor is None:
        return "skip", "no firmware floor for this AAGUID"
    if ctx.facts.firmware is None:
        return "fail", f"the key does not report its firmware; the policy needs >= {floor}"
    have = Version.parse(ctx.facts.firmware)
    if have.as_tuple() >= floor.as_tuple():
        return "pass", f"firmware {have} >= {floor}"
    return "fail", (
        f"firmware {have} is below the policy's floor {floor} (YubiKey 5 before 5.7 is "
        "affected by EUCLEAK, YSA-2024-03); replace the key"
    )


def _pin_set(ctx: _DeviceCtx) -> tuple[Outcome, str]:
    if not ctx.policy.device.pin_required:
        return "skip", "the policy does not require a PIN"
    if ctx.facts.pin_set:
        return "pass", "a PIN is set"
    return "fail", "no PIN is set; set one with keyadmin device prepare"


def _min_pin_length(ctx: _DeviceCtx) -> tuple[Outcome, str]:
    need = ctx.policy.device.min_pin_length
    if need is None:
        return "skip", "the policy sets no minimum PIN length"
    have = ctx.facts.min_pin_length
    if have is None:
        return "fail", f"the key does not report minPINLength; the policy needs >= {need}"
    if have >= need:
        return "pass", f"minPINLength {have} >= {need}"
    return "fail", f"minPINLength {have} < {need}; raise it with keyadmin device prepare"


def _always_uv(ctx: _DeviceCtx) -> tuple[Outcome, str]:
    if not ctx.policy.device.always_uv:
        return "skip", "the policy does not require alwaysUv"
    if ctx.facts.always_uv:
        return "pass", "alwaysUv is on"
    return "fail", "alwaysUv is off; turn it on with keyadmin device prepare"


DEVICE_RULES = (
    ("device.allowed", _allowed),
    ("device.firmware", _firmware),
    ("device.pin_set", _pin_set),
    ("device.min_pin_length", _min_pin_length),
    ("device.always_uv", _always_uv),
)


def evaluate_device(policy: Policy, facts: DeviceFacts) -> Decision:
    """Judge a key's readiness (firmware floor, PIN, minimum PIN length, alwaysUv)."""
    reasons = run_rules(DEVICE_RULES, _DeviceCtx(policy, facts))
    return Decision(
        allowed=decide(reasons, frozenset()),
        reasons=reasons,
        subject={"policy": {"name": policy.name, "sha256": policy.sha256}, "aaguid": facts.aaguid},
    )
