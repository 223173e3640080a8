"""Enterprise attestation at enrolment: what to ask the key, and what its answer proves.

Before the ceremony, ``plan`` reads the policy's [enterprise_attestation] table:
- the policy's RP ID must be one of the table's ``rp_ids``; for platform-facilitated
  attestation keyadmin is the platform, and WebAuthn forbids asking for an RP it does not list;
- the key's getInfo must have ``ep`` on (``keyadmin device config enable-ep``).
Either missing: a policy that requires EA refuses the enrolment before the key makes anything;
one that does not asks for a plain attestation and says why.

After the ceremony, ``judge`` gives the rule ``enterprise_attestation``: pass only when the key
answered epAtt = true AND the attestation's chain was validated to a trust anchor (basic or
attca) AND its leaf carries id-fido-gen-ce-sernum; the serial is read from that leaf only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keyadmin.flows.enrol import EnrolmentRefused

RULE = "enterprise_attestation"
#: attestation types whose chain names the key's maker (the serial may be read from it)
VERIFIED = ("basic", "attca")


@dataclass
class EnterpriseAsk:
    """What enrolment asks the key for; ``ep_att`` is filled in by the ceremony."""

    facilitation: str | None  # "vendor" / "platform"; None: not asked
    platform_rp_ids: tuple[str, ...] | None = None  # for platform-facilitated requests
    not_asked: str | None = None  # why it was not asked (when the policy has the table)
    ep_att: bool = False

    @property
    def asked(self) -> bool:
        return self.facilitation is not None


def plan(policy: Any, info: Any) -> EnterpriseAsk | None:
    """None when the policy has no [enterprise_attestation]; raises EnrolmentRefused when it
    requires one that cannot be asked for."""
    rules = policy.enterprise
    if rules is None:
        return None
    rp_id = policy.relying_party.rp_id
    why: str | None = None
    hint: str | None = None
    if rp_id not in rules.rp_ids:
        why = (
            f"{rules.facilitation}-facilitated enterprise attestation is for "
            f"{', '.join(rules.rp_ids)} only, and this policy's RP ID is {rp_id}"
        )
        hint = "add the RP ID to enterprise_attestation.rp_ids if it is meant for it"
    elif not info.options.get("ep"):
        why = "the key has enterprise attestation switched off (getInfo ep is not true)"
        hint = "enable it: keyadmin device config enable-ep (the key must support it)"
    if why is None:
        platform = rules.rp_ids if rules.facilitation == "platform" else None
        return EnterpriseAsk(rules.facilitation, platform_rp_ids=platform)
    if rules.required:
        raise EnrolmentRefused(f"{RULE}: {why}", hint=hint, rule=RULE)
    return EnterpriseAsk(None, not_asked=why)


def judge(
    policy: Any, ask: EnterpriseAsk | None, evidence: Any
) -> tuple[dict[str, str] | None, str | None]:
    """The rule's reason (None without the table) and the serial (only when it passed)."""
    if ask is None:
        return None, None
    rules = policy.enterprise
    if not ask.asked:
        return _reason("skip", f"not asked: {ask.not_asked}"), None
    problem = _problem(ask, evidence, policy.relying_party.rp_id)
    if isinstance(problem, str):
        return _reason("fail" if rules.required else "skip", problem), None
    serial, root = problem
    return _reason(
        "pass",
        f"{ask.facilitation}-facilitated enterprise attestation of key serial {serial}, "
        f"read from a chain validated to {root}",
    ), serial


def _problem(ask: EnterpriseAsk, evidence: Any, rp_id: str) -> str | tuple[str, str]:
    from keyadmin.attestation.errors import AttestationMalformed
    from keyadmin.attestation.sernum import read_certificate_serial

    if not ask.ep_att:
        return f"the key did not give an enterprise attestation for {rp_id} (no epAtt); " + (
            "vendor-facilitated attestation is given only for the RP IDs provisioned in the key"
            if ask.facilitation == "vendor"
            else "the key ignored the platform-facilitated request"
        )
    if evidence is None or not evidence.trusted or str(evidence.attestation_type) not in VERIFIED:
        return "epAtt is set but the attestation chain is not verified: no serial is taken from it"
    leaf = evidence.chain[0].certificate
    try:
        serial = read_certificate_serial(leaf)
    except AttestationMalformed as e:
        return f"the enterprise attestation certificate is malformed: {e.message}"
    if serial is None:
        return "the enterprise attestation certificate carries no id-fido-gen-ce-sernum (serial)"
    return serial, evidence.chain[-1].certificate.subject.rfc4514_string()


def _reason(outcome: str, detail: str) -> dict[str, str]:
    return {"rule": RULE, "outcome": outcome, "detail": detail}
