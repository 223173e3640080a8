"""What every keyadmin device command shares: the options, opening the key, the log of the
changes made to it, and the one-line result."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keyadmin.cli.render import emit_json, emit_kv

if TYPE_CHECKING:
    from keyadmin.device.session import DeviceSession
    from keyadmin.flows.device_log import DeviceLog


def _session(selector: str | None) -> DeviceSession:
    from keyadmin.device.discovery import open_device
    from keyadmin.device.session import DeviceSession

    ref, dev = open_device(selector)
    return DeviceSession(ref, dev)


def _done(action: str, changed: bool, device: str, json_out: bool, **detail: Any) -> None:
    result = {"action": action, "changed": changed, "device": device, **detail}
    if json_out:
        emit_json(result)
    else:
        emit_kv(f"{action}: {'done' if changed else 'nothing to change'}", list(result.items()))


def _log(
    db: str | None,
    action: str,
    args: dict[str, Any],
    operator: str | None,
    operator_device: str | None,
) -> DeviceLog:
    """The registry's log for a command that changes a key, proven writable before the key is
    touched (fail closed), and the operator's authorization for ``action`` (the device role;
    lab mode until an operator is bootstrapped). Every row it writes carries the evidence."""
    from keyadmin.cli.authority import authorize_cli
    from keyadmin.cli.registry import _db
    from keyadmin.flows.device_log import DeviceLog

    url = _db(db, create=True)  # a key's first change may come before any enrolment
    log = DeviceLog.open(url, "keyadmin")  # writable, before anyone is asked for a PIN
    authority = authorize_cli(url, action, args, operator, operator_device)
    return DeviceLog(log.url, authority.operator, authority.evidence)


def _pin_if_set(session: Any) -> str | None:
    from keyadmin.cli.interact import read_pin

    if session.ctap_info().options.get("clientPin"):
        return read_pin("Current PIN: ")
    return None
