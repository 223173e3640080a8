"""Labs whose software key gives enterprise attestation and whose policy asks for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.lab import PIN, Lab, make_lab


def ea_table(facilitation: str, rp_ids: list[str], required: bool = True) -> str:
    ids = ", ".join(f'"{r}"' for r in rp_ids)
    return (
        "[enterprise_attestation]\n"
        f'facilitation = "{facilitation}"\n'
        f"rp_ids = [{ids}]\n"
        f"required = {'true' if required else 'false'}\n\n"
    )


def enable_ep(key_path: Path, pin: str | None = PIN) -> None:
    """Turn enterprise attestation on with authenticatorConfig, as `device config enable-ep`."""
    from fido2.ctap2 import ClientPin, Config, Ctap2

    from keyadmin.sim.authenticator import SoftKey
    from keyadmin.sim.hid import open_hid

    ctap = Ctap2(open_hid(SoftKey.open(key_path)))
    if pin is None:
        Config(ctap).enable_enterprise_attestation()
        return
    cp = ClientPin(ctap)
    token = cp.get_pin_token(pin, ClientPin.PERMISSION.AUTHENTICATOR_CFG)
    Config(ctap, cp.protocol, token).enable_enterprise_attestation()


def make_ea_lab(
    tmp: Path,
    db: str,
    *,
    key_rp_ids: list[str],
    serial: int | None = None,
    policy_table: str | None = None,
    enabled: bool = True,
    policy_edit: dict[str, str] | None = None,
    key_options: dict[str, Any] | None = None,
    name: str = "softkey.json",
) -> Lab:
    """A lab (tests.support.lab) whose key lists ``key_rp_ids`` for vendor-facilitated EA and
    whose policy holds ``policy_table`` (default: vendor-facilitated, required, example.com)."""
    from keyadmin.sim.enterprise import configure

    table = policy_table if policy_table is not None else ea_table("vendor", ["example.com"])
    edit = {"[keys_per_user]": table + "[keys_per_user]", **(policy_edit or {})}
    lab = make_lab(tmp, db, policy_edit=edit, key_options=key_options, name=name)
    configure(lab.key(), rp_ids=key_rp_ids, serial=serial)
    if enabled:
        enable_ep(lab.key_path)
    return lab
