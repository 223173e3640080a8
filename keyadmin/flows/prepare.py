"""Bring a key to the device profile a policy asks for, then read it back to prove it took.

Steps, each idempotent (a second run changes nothing and says so):
 1. PIN set (at least the policy's minimum length)
 2. minimum PIN length raised to the policy's (forcing a PIN change when the current PIN
    is shorter than the new minimum)
 3. always-UV on, when the policy asks for it
 4. no stray credentials for the policy's RP: discoverable credentials on the key that the
    registry does not know are deleted
 5. read back getInfo and judge it with the policy's device rules (the readiness verdict)

A run that changed the key writes one ``device.prepare`` row to the log (flows/device_log.py):
the settings changed (old and new), the credentials deleted (id, RP, user), the verdict. A run
stopped by an error after a change still writes its row, with ``completed: false`` and the
error, before the error goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from keyadmin.errors import KeyadminError, PinError
from keyadmin.flows.device_log import credential_details

if TYPE_CHECKING:
    from keyadmin.device.port import Device
    from keyadmin.flows.device_log import DeviceLog
    from keyadmin.policy.model import Policy


@dataclass(frozen=True)
class PrepareStep:
    step: str
    changed: bool
    detail: str


@dataclass(frozen=True)
class PrepareResult:
    device: str
    policy: str
    steps: list[PrepareStep]
    ready: bool
    reasons: list[dict[str, str]]

    @property
    def changed(self) -> bool:
        return any(s.changed for s in self.steps)


@dataclass
class _Changes:
    """What reached the key so far, noted as soon as the key made each change."""

    policy: str
    policy_sha256: str
    pin_set: bool = False
    deleted: list[dict[str, object]] = field(default_factory=list)
    min_pin_length: dict[str, int] | None = None  # {"from": old, "to": new}
    force_pin_change: bool | None = None
    always_uv: dict[str, bool] | None = None  # {"from": False, "to": True}

    def made(self) -> bool:
        """Whether any change reached the key."""
        return bool(self.pin_set or self.deleted or self.min_pin_length or self.always_uv)

    def details(self) -> dict[str, object]:
        """The ``device.prepare`` row's details (a setting appears only when it changed)."""
        out: dict[str, object] = {
            "policy": self.policy,
            "policy_sha256": self.policy_sha256,
            "pin_set": self.pin_set,
            "deleted": self.deleted,
        }
        if self.min_pin_length is not None:
            out["min_pin_length"] = self.min_pin_length
            out["force_pin_change"] = self.force_pin_change
        if self.always_uv is not None:
            out["always_uv"] = self.always_uv
        return out


def prepare(
    session: Device,
    policy: Policy,
    *,
    current_pin: Callable[[], str],
    new_pin: Callable[[], str],
    known_credential_ids: set[str],
    log: DeviceLog,
) -> PrepareResult:
    identity = session.identity()
    changes = _Changes(policy.name, policy.sha256)
    subject = session.ref.selector
    try:
        result = _apply(session, policy, current_pin, new_pin, known_credential_ids, changes)
    except (Exception, KeyboardInterrupt) as e:
        if changes.made():
            why = e.message if isinstance(e, KeyadminError) else type(e).__name__
            details = {**changes.details(), "completed": False, "error": why}
            log.write("device.prepare", identity, subject, details)
        raise
    if result.changed:
        details = {**changes.details(), "completed": True, "ready": result.ready}
        log.write("device.prepare", identity, subject, details)
    return result


def _apply(
    session: Device,
    policy: Policy,
    current_pin: Callable[[], str],
    new_pin: Callable[[], str],
    known_credential_ids: set[str],
    changes: _Changes,
) -> PrepareResult:
    """The five steps; every change is noted in ``changes`` as soon as the key made it."""
    from keyadmin.flows.enrol import device_facts
    from keyadmin.policy.readiness import evaluate_device

    steps: list[PrepareStep] = []
    want_min = policy.device.min_pin_length or 4
    info = session.info()

    # 1. PIN
    if info.pin_set:
        pin = current_pin()
        session.verify_pin(pin)
        steps.append(PrepareStep("pin", False, "a PIN is set"))
    else:
        if not policy.device.pin_required and not policy.device.always_uv:
            pin = ""
            steps.append(PrepareStep("pin", False, "the policy does not require a PIN"))
        else:
            pin = new_pin()
            if len(pin) < want_min:
                raise PinError(f"the policy asks for a PIN of at least {want_min} characters")
            session.set_pin(pin)
            changes.pin_set = True
            steps.append(PrepareStep("pin", True, "PIN set"))

    # 2. minimum PIN length
    if policy.device.min_pin_length and info.min_pin_length < policy.device.min_pin_length:
        force = bool(pin) and len(pin) < policy.device.min_pin_length
        session.set_min_pin_length(
            policy.device.min_pin_length, pin or None, [policy.relying_party.rp_id], force
        )
        changes.min_pin_length = {
            "from": info.min_pin_length,
            "to": policy.device.min_pin_length,
        }
        changes.force_pin_change = force
        detail = f"raised from {info.min_pin_length} to {policy.device.min_pin_length}"
        steps.append(
            PrepareStep("min-pin-length", True, detail + (", PIN change forced" if force else ""))
        )
    else:
        steps.append(PrepareStep("min-pin-length", False, f"already {info.min_pin_length}"))

    # 3. always-UV
    if policy.device.always_uv:
        changed = session.set_always_uv(True, pin or None)
        if changed:
            changes.always_uv = {"from": False, "to": True}
        steps.append(PrepareStep("always-uv", changed, "turned on" if changed else "already on"))

    # 4. stray credentials for the policy's RP
    if pin:
        rp_id = policy.relying_party.rp_id
        stray = [
            c
            for c in session.list_credentials(pin, rp_id)
            if c.credential_id not in known_credential_ids
        ]
        for cred in stray:
            session.delete_credential(pin, bytes.fromhex(cred.credential_id))
            changes.deleted.append(credential_details(cred))
        steps.append(
            PrepareStep(
                "stray-credentials",
                bool(stray),
                f"deleted {len(stray)} credential(s) for {rp_id} unknown to the registry"
                if stray
                else f"none for {rp_id}",
            )
        )

    # 5. read back and judge
    readiness = evaluate_device(policy, device_facts(session.info()))
    return PrepareResult(
        device=session.ref.selector,
        policy=policy.name,
        steps=steps,
        ready=readiness.allowed,
        reasons=[
            {"rule": r.rule, "outcome": r.outcome, "detail": r.detail} for r in readiness.reasons
        ],
    )
