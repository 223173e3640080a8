"""keyadmin device config: authenticatorConfig (always-UV, minimum PIN length, enterprise
attestation). Every change is logged (flows/device_log.py)."""

from __future__ import annotations

import typer

from keyadmin.cli.device_common import (
    _done,
    _log,
    _pin_if_set,
    _session,
)
from keyadmin.cli.options import DbOpt, DeviceOpt, JsonOpt, OperatorDeviceOpt, OperatorOpt
from keyadmin.errors import UsageError

config_app = typer.Typer(
    help="authenticatorConfig: always-UV, minimum PIN length, enterprise attestation.\n\n"
    "Example: keyadmin device config min-pin-length 8 --device hid:/dev/hidraw4"
)


@config_app.command("always-uv")
def config_always_uv(
    state: str = typer.Argument(..., help="on or off"),
    device: DeviceOpt = None,
    operator: OperatorOpt = None,
    operator_device: OperatorDeviceOpt = None,
    db: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Require user verification (PIN) for every operation, or stop requiring it. A change
    is logged as device.config.always-uv.

    Example: keyadmin device config always-uv on --device sim:lab.key
    """
    if state not in ("on", "off"):
        raise UsageError(f"always-uv takes 'on' or 'off', not {state!r}")
    log = _log(
        db,
        "device.config.always-uv",
        {"requested_state": state, "selector": device},
        operator,
        operator_device,
    )
    with _session(device) as s:
        who, on = s.identity(), state == "on"
        changed = s.set_always_uv(on, _pin_if_set(s))
        if changed:
            change = {"always_uv": {"from": not on, "to": on}}
            log.write("device.config.always-uv", who, s.ref.selector, change)
        _done(f"always-uv {state}", changed, s.ref.selector, json_out)


@config_app.command("min-pin-length")
def config_min_pin_length(
    length: int = typer.Argument(..., help="New minimum PIN length (can only grow)."),
    rp_id: list[str] = typer.Option(  # noqa: B008 - typer's idiom
        [], "--rp-id", help="RP ID allowed to read the minimum PIN length (repeatable)."
    ),
    force_change: bool = typer.Option(False, "--force-change", help="Force a PIN change."),
    device: DeviceOpt = None,
    operator: OperatorOpt = None,
    operator_device: OperatorDeviceOpt = None,
    db: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Raise the key's minimum PIN length, optionally forcing a PIN change. A change is
    logged as device.config.min-pin-length (old and new length).

    Example: keyadmin device config min-pin-length 8 --force-change
    """
    log = _log(
        db,
        "device.config.min-pin-length",
        {
            "requested_length": length,
            "requested_rp_ids": list(rp_id),
            "requested_force_change": force_change,
            "selector": device,
        },
        operator,
        operator_device,
    )
    with _session(device) as s:
        who, old = s.identity(), s.ctap_info().min_pin_length
        changed = s.set_min_pin_length(length, _pin_if_set(s), list(rp_id), force_change)
        if changed:
            change = {
                "min_pin_length": {"from": old, "to": length},
                "rp_ids": list(rp_id),
                "force_pin_change": force_change,
            }
            log.write("device.config.min-pin-length", who, s.ref.selector, change)
        _done("min-pin-length", changed, s.ref.selector, json_out, length=length)


@config_app.command("enable-ep")
def config_enable_ep(
    device: DeviceOpt = None,
    operator: OperatorOpt = None,
    operator_device: OperatorDeviceOpt = None,
    db: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Enable enterprise attestation on the key. A change is logged as device.config.enable-ep.

    Example: keyadmin device config enable-ep --device sim:lab.key
    """
    log = _log(db, "device.config.enable-ep", {"selector": device}, operator, operator_device)
    with _session(device) as s:
        who = s.identity()
        changed = s.enable_enterprise_attestation(_pin_if_set(s))
        if changed:
            log.write(
                "device.config.enable-ep", who, s.ref.selector, {"ep": {"from": False, "to": True}}
            )
        _done("enable-ep", changed, s.ref.selector, json_out)
