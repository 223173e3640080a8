"""keyadmin device: see and prepare any FIDO2 key over USB HID, NFC (PC/SC) or the software key."""

from __future__ import annotations

from pathlib import Path

import typer

from keyadmin.cli.device_common import (
    _done,
    _log,
    _session,
)
from keyadmin.cli.device_config import config_app
from keyadmin.cli.options import (
    CsvOpt,
    DbOpt,
    DeviceOpt,
    ForceOpt,
    JsonOpt,
    OperatorDeviceOpt,
    OperatorOpt,
)
from keyadmin.cli.render import emit_json, emit_kv, emit_table, list_format, say, to_jsonable
from keyadmin.errors import UsageError, failed_summary

app = typer.Typer(
    help=(
        "See exactly what a FIDO2 key is and bring it to a known state (USB, NFC, software "
        "key).\n\nExample: keyadmin device info --device hid:/dev/hidraw4 --json"
    ),
    no_args_is_help=True,
)
pin_app = typer.Typer(
    help="Set, change, verify the key's PIN, or show its retries.\n\n"
    "Example: keyadmin device pin retries --device nfc:ACS"
)
creds_app = typer.Typer(
    help="Discoverable credentials stored on the key.\n\n"
    "Example: keyadmin device credentials list --rp-id example.com"
)
app.add_typer(pin_app, name="pin")
app.add_typer(config_app, name="config")
app.add_typer(creds_app, name="credentials")


@app.command("list")
def list_cmd(
    db: DbOpt = None,
    json_out: JsonOpt = False,
    csv_out: CsvOpt = False,
) -> None:
    """List every FIDO device on USB HID and on PC/SC readers, with its AAGUID and model.

    The model name comes from the FIDO metadata once it is loaded (keyadmin mds …).
    Software keys are not listed (they are files): use --device sim:FILE.
    Example: keyadmin device list --json
    """
    from keyadmin.config import database_url
    from keyadmin.flows.devices import list_with_models

    fmt = list_format(json_out, csv_out)
    rows = list_with_models(database_url(db, create=True))  # names models only if it exists
    if fmt == "json":
        emit_json(rows)
        return
    if not rows and fmt == "table":
        say("no FIDO device found; run 'keyadmin doctor' if a key is plugged in")
        return
    emit_table(
        ["device", "transport", "aaguid", "model"],
        [[r.device, r.transport, r.aaguid or "?", r.model or r.product or "-"] for r in rows],
        fmt=fmt,
    )


@app.command("info")
def info(
    device: DeviceOpt = None,
    policy: Path = typer.Option(None, "--policy", help="Judge readiness against this policy."),
    db: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show the decoded getInfo of a key, its PIN retries, its metadata model, and with
    --policy a readiness verdict (firmware floor, PIN, minimum PIN length, always-UV).

    Exit 3 when --policy is given and the key is not ready.
    Example: keyadmin device info --device sim:lab.key --policy policies/lab-softkey.toml --json
    """
    from keyadmin.config import database_url
    from keyadmin.errors import PolicyRefused
    from keyadmin.flows.devices import device_report
    from keyadmin.policy.model import ALGORITHM_NAMES

    loaded = None
    if policy is not None:
        from keyadmin.policy.loader import load_policy

        loaded = load_policy(policy)
    with _session(device) as s:
        report = device_report(s, database_url(db, create=True), loaded)  # (models: if it exists)
    result = report.info
    if json_out:
        emit_json(
            {
                **to_jsonable(result),
                "model": report.model,
                "readiness": None
                if loaded is None
                else {"policy": report.policy, "ready": report.ready, "reasons": report.reasons},
            }
        )
    else:
        rows = [
            ("device", f"{result.transport}:{result.path}"),
            ("product", result.product),
            ("model (metadata)", report.model),
            ("aaguid", result.aaguid),
            ("firmware", result.firmware),
            ("versions", list(result.versions)),
            ("extensions", list(result.extensions)),
            ("options", result.options),
            ("PIN set", result.pin_set),
            ("PIN retries", result.pin_retries),
            ("blocked until re-plug", result.pin_blocked_until_power_cycle),
            ("min PIN length", result.min_pin_length),
            ("force PIN change", result.force_pin_change),
            ("remaining disc. creds", result.remaining_discoverable_credentials),
            ("algorithms", [f"{ALGORITHM_NAMES.get(a, 'COSE')} ({a})" for a in result.algorithms]),
            ("transports", list(result.transports)),
            ("PIN/UV protocols", list(result.pin_uv_protocols)),
            ("certifications", result.certifications),
        ]
        emit_kv("FIDO2 key", rows)
        if loaded is not None:
            emit_kv(
                f"readiness for {report.policy}: " + ("READY" if report.ready else "NOT READY"),
                [(r["rule"], f"{r['outcome']}: {r['detail']}") for r in report.reasons],
            )
    if loaded is not None and not report.ready:
        raise PolicyRefused(
            f"the key is not ready for {loaded.name}: {failed_summary(report.reasons)}",
            hint=f"keyadmin device prepare --policy {policy}",
            reasons=report.reasons,
        )


# ---------------------------------------------------------------------------- PIN
@pin_app.command("set")
def pin_set(
    device: DeviceOpt = None,
    operator: OperatorOpt = None,
    operator_device: OperatorDeviceOpt = None,
    db: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Set the PIN of a key that has none (hidden prompt, or one line on stdin). Logged as
    device.pin.set (never the PIN).

    Example: keyadmin device pin set --device sim:lab.key
    """
    from keyadmin.cli.interact import read_new_pin

    log = _log(db, "device.pin.set", {"selector": device}, operator, operator_device)
    with _session(device) as s:
        who = s.identity()
        s.set_pin(read_new_pin())
        log.write("device.pin.set", who, s.ref.selector, {})
        _done("pin set", True, s.ref.selector, json_out)


@pin_app.command("change")
def pin_change(
    device: DeviceOpt = None,
    operator: OperatorOpt = None,
    operator_device: OperatorDeviceOpt = None,
    db: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Change the PIN (current, then new: prompts, or two lines on stdin). Logged as
    device.pin.change (never a PIN).

    Example: printf '%s\\n%s\\n' "$OLD" "$NEW" | keyadmin device pin change
    """
    from keyadmin.cli.interact import read_new_pin, read_pin

    log = _log(db, "device.pin.change", {"selector": device}, operator, operator_device)
    with _session(device) as s:
        who = s.identity()
        old = read_pin("Current PIN: ")
        s.change_pin(old, read_new_pin())
        log.write("device.pin.change", who, s.ref.selector, {})
        _done("pin change", True, s.ref.selector, json_out)


@pin_app.command("verify")
def pin_verify(device: DeviceOpt = None, json_out: JsonOpt = False) -> None:
    """Check a PIN against the key (a wrong PIN costs one retry).

    Example: keyadmin device pin verify --device nfc:vpcd
    """
    from keyadmin.cli.interact import read_pin

    with _session(device) as s:
        s.verify_pin(read_pin())
        retries, _ = s.pin_retries()
        _done("pin verify", False, s.ref.selector, json_out, verified=True, retries=retries)


@pin_app.command("retries")
def pin_retries(device: DeviceOpt = None, json_out: JsonOpt = False) -> None:
    """Show how many PIN attempts are left, and whether the key needs re-plugging.

    A key without a PIN has no retry counter to show: pin_set is false, retries null.
    Example: keyadmin device pin retries --json
    """
    from keyadmin.errors import PinNotSet

    with _session(device) as s:
        retries: int | None
        try:
            retries, power_cycle = s.pin_retries()
        except PinNotSet:  # what a YubiKey answers when no PIN is set
            retries, power_cycle = None, False
        result = {
            "device": s.ref.selector,
            "pin_set": retries is not None,
            "retries": retries,
            "power_cycle_needed": power_cycle,
        }
    if json_out:
        emit_json(result)
    else:
        emit_kv("PIN retries", list(result.items()))


# ---------------------------------------------------------------------------- credentials
@creds_app.command("list")
def creds_list(
    rp_id: str = typer.Option(None, "--rp-id", help="Only this relying party."),
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List the discoverable credentials on the key (needs the PIN).

    Example: keyadmin device credentials list --rp-id example.com --json
    """
    from keyadmin.cli.interact import read_pin

    with _session(device) as s:
        creds = s.list_credentials(read_pin(), rp_id)
    if json_out:
        emit_json(creds)
        return
    if not creds:
        say("no discoverable credentials")
        return
    for c in creds:
        emit_kv(
            f"{c.rp_id}  {c.credential_id[:16]}…",
            [
                ("user", c.user_name),
                ("display name", c.display_name),
                ("credential id", c.credential_id),
                ("credProtect", c.cred_protect),
                ("algorithm", c.algorithm),
            ],
        )


@creds_app.command("delete")
def creds_delete(
    credential_id: str = typer.Argument(..., help="Credential ID in hex ('credentials list')."),
    force: ForceOpt = False,
    device: DeviceOpt = None,
    operator: OperatorOpt = None,
    operator_device: OperatorDeviceOpt = None,
    db: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Delete one credential from the key (asks first unless --force). Logged as
    device.credential.delete with the credential's id, RP and user.

    Example: keyadmin device credentials delete 9b66eba9… --force
    """
    from keyadmin.cli.interact import confirm, read_pin
    from keyadmin.flows.device_log import credential_details

    try:
        cred_id = bytes.fromhex(credential_id)
    except ValueError:
        raise UsageError("the credential ID must be hex") from None
    log = _log(
        db,
        "device.credential.delete",
        {"requested_credential": credential_id, "selector": device},
        operator,
        operator_device,
    )
    with _session(device) as s:
        who = s.identity()
        if not force:
            confirm(f"Delete credential {credential_id[:16]}… from {s.ref.selector}?")
        pin = read_pin()
        cred = s.find_credential(pin, cred_id)
        s.delete_credential(pin, cred_id)
        log.write("device.credential.delete", who, cred.credential_id, credential_details(cred))
        _done("credential delete", True, s.ref.selector, json_out, credential_id=credential_id)


# ---------------------------------------------------------------------------- reset
@app.command("reset")
def reset(
    force: ForceOpt = False,
    device: DeviceOpt = None,
    operator: OperatorOpt = None,
    operator_device: OperatorDeviceOpt = None,
    db: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Factory-reset the key: destroys EVERY credential on it and removes the PIN.

    Asks for confirmation unless --force, and checks it is still the same key before acting.
    Logged as device.reset.
    Example: keyadmin device reset --device sim:lab.key
    """
    from keyadmin.cli.interact import confirm

    log = _log(db, "device.reset", {"selector": device}, operator, operator_device)
    with _session(device) as s:
        selector = s.ref.selector
        fingerprint = s.fingerprint()
        who, pin_was_set = s.identity(), bool(s.ctap_info().options.get("clientPin"))
    if not force:
        confirm(
            f"Reset {selector}? This destroys EVERY credential on the key, for every "
            "account, and removes its PIN. It cannot be undone."
        )
    with _session(selector) as s:  # reopened: it must still be the same key
        say("Touch your security key to confirm the reset...")
        s.reset(fingerprint)
    log.write("device.reset", who, selector, {"pin_was_set": pin_was_set})
    _done("reset", True, selector, json_out)


@app.command("prepare")
def prepare_cmd(
    policy: Path = typer.Option(..., "--policy", help="The policy whose device profile to apply."),
    device: DeviceOpt = None,
    operator: OperatorOpt = None,
    operator_device: OperatorDeviceOpt = None,
    db: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Apply the policy's device profile (PIN, minimum PIN length, always-UV, no stray
    credentials for its RP) and read the key back to prove each setting took.

    Idempotent: a second run changes nothing and says so. Exit 3 when the key still is not
    ready (e.g. firmware below the policy's floor, which no setting can fix). A run that
    changed the key is logged as device.prepare (settings old and new, credentials deleted).
    Example: keyadmin device prepare --policy policies/yubikey-fips.toml -d nfc:ACS
    """
    from keyadmin.cli.interact import read_new_pin, read_pin
    from keyadmin.errors import PolicyRefused
    from keyadmin.flows.prepare import prepare
    from keyadmin.policy.loader import load_policy
    from keyadmin.store import registry
    from keyadmin.store.db import transaction

    loaded = load_policy(policy)
    log = _log(
        db,
        "device.prepare",
        {"requested_policy": str(policy), "selector": device},
        operator,
        operator_device,
    )
    with transaction(log.url) as s:
        known = {c.credential_id for c in registry.list_credentials(s)}
    with _session(device) as s:
        result = prepare(
            s,
            loaded,
            current_pin=lambda: read_pin("Current PIN: "),
            new_pin=read_new_pin,
            known_credential_ids=known,
            log=log,
        )
    if json_out:
        emit_json({**to_jsonable(result), "changed": result.changed})
    else:
        title = "changed the key" if result.changed else "nothing to change"
        emit_kv(
            f"prepare ({result.policy}): {title}",
            [(st.step, ("changed: " if st.changed else "") + st.detail) for st in result.steps],
        )
        emit_kv(
            "readiness: " + ("READY" if result.ready else "NOT READY"),
            [(r["rule"], f"{r['outcome']}: {r['detail']}") for r in result.reasons],
        )
    if result.ready:
        import shlex

        from keyadmin.cli.naming import print_next

        on = f" -d {shlex.quote(device)}" if device else ""
        print_next([f"enrol it: keyadmin enrol USER --policy {shlex.quote(str(policy))}{on}"])
    if not result.ready:
        raise PolicyRefused(
            f"the key is not ready for {loaded.name}: {failed_summary(result.reasons)}",
            reasons=result.reasons,
        )
