"""The policy tables about physical keys: ``[enterprise_attestation]`` and ``[inventory]``.

    [enterprise_attestation]
    facilitation = "vendor"        # or "platform"
    rp_ids = ["example.com"]       # the RP IDs it is for (default: relying_party.rp_id)
    required = true                # refuse a registration without it

    [inventory]
    required = true                # the key's serial must be in the inventory, in stock
    serial_reuse = "refuse"        # or "flag": a serial already enrolled for another user

docs/policy.md explains both; keyadmin.flows.enterprise and keyadmin.flows.inventory apply them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, cast

from keyadmin.policy.model import EnterpriseRules, InventoryRules

if TYPE_CHECKING:
    from keyadmin.policy.loader import _Reader

FACILITATIONS = ("vendor", "platform")
SERIAL_REUSE = ("refuse", "flag")
T_EA = "enterprise_attestation"


def _rp_id(text: str) -> str:
    if not text or "/" in text or ":" in text or text != text.strip().lower() or len(text) > 253:
        raise ValueError(f"{text!r} is not a lower-case domain")
    return text


def read_enterprise(r: _Reader, policy_rp_id: str) -> EnterpriseRules:
    facilitation = r.get(T_EA, "facilitation", str, what="vendor or platform")
    if facilitation not in FACILITATIONS:
        raise r.error(
            T_EA,
            "facilitation",
            f"{T_EA}.facilitation must be vendor or platform, not {facilitation!r}",
        )
    rp_ids = r.str_list(T_EA, "rp_ids", [policy_rp_id], what="a list of RP IDs", check=_rp_id)
    if not rp_ids:
        raise r.error(T_EA, "rp_ids", f"{T_EA}.rp_ids must name at least one RP ID")
    required = r.get(T_EA, "required", bool, True, what="true or false")
    return EnterpriseRules(
        facilitation=cast(Literal["vendor", "platform"], facilitation),
        rp_ids=tuple(dict.fromkeys(rp_ids)),
        required=bool(required),
    )


def read_inventory(r: _Reader, enterprise: EnterpriseRules | None) -> InventoryRules:
    required = bool(r.get("inventory", "required", bool, False, what="true or false"))
    reuse = r.get("inventory", "serial_reuse", str, "refuse", what="refuse or flag")
    if reuse not in SERIAL_REUSE:
        raise r.error(
            "inventory",
            "serial_reuse",
            f"inventory.serial_reuse must be refuse or flag, not {reuse!r}",
        )
    if required and (enterprise is None or not enterprise.required):
        raise r.error(
            "inventory",
            "required",
            "inventory.required needs [enterprise_attestation] with required = true: the key's "
            "serial comes only from an enterprise attestation",
        )
    return InventoryRules(required=required, serial_reuse=cast(Literal["refuse", "flag"], reuse))
