"""keyadmin sim: the SOFTWARE security key for tests, demos and operator training."""

from __future__ import annotations

from pathlib import Path

import typer

from keyadmin.cli.options import JsonOpt
from keyadmin.cli.render import emit_json, emit_kv, out, say
from keyadmin.errors import UsageError

app = typer.Typer(
    help=(
        "A SOFTWARE security key (not hardware) that speaks real CTAP 2.1 over USB HID "
        "(in-process) and PC/SC (pcscd + vpcd). For tests, demos and training only: its "
        "attestation root is never trusted unless a policy names it.\n\n"
        "Example: keyadmin sim init --state lab.key"
    ),
    no_args_is_help=True,
)

STATE_OPT = typer.Option(..., "--state", help="The key's state file (credentials, PIN, counters).")

FAULT_COMMANDS = {
    "makeCredential": 0x01,
    "getAssertion": 0x02,
    "getInfo": 0x04,
    "clientPIN": 0x06,
    "reset": 0x07,
    "getNextAssertion": 0x08,
    "credentialManagement": 0x0A,
    "selection": 0x0B,
    "config": 0x0D,
}


def _firmware(text: str) -> int:
    parts = text.split(".")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        nums = []
    if len(nums) != 3 or any(not 0 <= n <= 255 for n in nums):
        raise UsageError(
            f"bad firmware version {text!r}", hint="write it as MAJOR.MINOR.PATCH, e.g. 5.7.1"
        )
    return (nums[0] << 16) | (nums[1] << 8) | nums[2]


def _firmware_text(value: int) -> str:
    from keyadmin.device.session import firmware_text

    return firmware_text(value) or "?"


def _int_auto(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise UsageError(f"not a number: {text!r}") from None


@app.command("init")
def init(
    state: Path = STATE_OPT,
    aaguid: str = typer.Option(None, help="AAGUID to report (default: keyadmin's softkey AAGUID)."),
    firmware: str = typer.Option("5.7.0", help="Firmware version reported in getInfo."),
    counter_mode: str = typer.Option(
        "per-credential", help="per-credential, global, zero or rollback."
    ),
    rollback_after: int = typer.Option(
        0, help="With --counter-mode rollback: fall back after N uses."
    ),
    attestation: str = typer.Option("packed", help="packed, self, none or fido-u2f."),
    backup_eligible: bool = typer.Option(False, help="Set the BE flag (not device-bound)."),
    backed_up: bool = typer.Option(False, help="Set the BS flag (implies BE)."),
    fault: list[str] = typer.Option(  # noqa: B008 - typer's idiom
        [],
        help="Inject a fault (repeatable): malformed-cbor, truncated, wrong-rpid-hash, "
        "bad-signature, cert-aaguid-mismatch, no-cert-aaguid, clear-up-uv, ctap-error, slow.",
    ),
    fault_command: list[str] = typer.Option(  # noqa: B008
        [], help="Commands the reply faults apply to (default makeCredential, getAssertion)."
    ),
    fault_ctap_error: str = typer.Option("0x7F", help="With --fault ctap-error: the status byte."),
    fault_delay: float = typer.Option(0.0, help="With --fault slow: seconds per reply."),
    alg: list[str] = typer.Option(  # noqa: B008
        [],
        "--alg",
        help="Credential algorithm the key offers (repeatable, in its order): ES256, EdDSA, "
        "ES384, RS256, ES512, PS256, ES256K, ML-DSA-44, ML-DSA-65, ML-DSA-87. "
        "Default: ES256, EdDSA, ES384, RS256.",
    ),
    ep_rp_id: list[str] = typer.Option(  # noqa: B008
        [],
        "--ep-rp-id",
        help="An RP ID the key gives vendor-facilitated enterprise attestation for (repeatable).",
    ),
    serial: int = typer.Option(
        None, "--serial", help="The key's serial (enterprise attestation); default: random."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing state file."),
    json_out: JsonOpt = False,
) -> None:
    """Create a SOFTWARE key in a new state file, with its own lab attestation PKI.

    Example: keyadmin sim init --state lab.key --firmware 5.4.3 --counter-mode global

    Example (post-quantum credentials): keyadmin sim init --state pq.key --alg ML-DSA-44

    Example (enterprise attestation): keyadmin sim init --state ea.key --ep-rp-id corp.example
    """
    from keyadmin.sim.authenticator import SoftKey
    from keyadmin.sim.credkeys import ALGORITHMS

    if state.exists() and not force:
        raise UsageError(f"{state} exists", hint="pass --force to replace that software key")
    commands = []
    for name in fault_command:
        if name not in FAULT_COMMANDS:
            raise UsageError(f"unknown command {name!r}", hint=", ".join(FAULT_COMMANDS))
        commands.append(FAULT_COMMANDS[name])
    unknown = [a for a in alg if a not in ALGORITHMS]
    if unknown:
        raise UsageError(f"unknown algorithm {unknown[0]!r}", hint=", ".join(ALGORITHMS))
    try:
        key = SoftKey.create(
            state,
            aaguid=aaguid,
            firmware=_firmware(firmware),
            counter_mode=counter_mode,
            rollback_after=rollback_after,
            attestation=attestation,
            backup_eligible=backup_eligible,
            backed_up=backed_up,
            faults=fault,
            fault_commands=commands,
            fault_ctap_error=_int_auto(fault_ctap_error),
            fault_delay=fault_delay,
            algorithms=[ALGORITHMS[a] for a in alg],
        )
        if ep_rp_id or serial is not None:
            from keyadmin.sim.enterprise import configure

            configure(key, rp_ids=ep_rp_id or None, serial=serial)
    except ValueError as e:
        raise UsageError(str(e)) from None
    _show(key, json_out, title=f"Created a SOFTWARE key (not hardware) in {state}")


def _show(key: object, json_out: bool, title: str) -> None:
    from keyadmin.sim.authenticator import SoftKey
    from keyadmin.sim.credkeys import ALGORITHMS

    alg_names = {v: k for k, v in ALGORITHMS.items()}

    assert isinstance(key, SoftKey)
    s = key.state
    info = {
        "kind": "software key (not hardware)",
        "state_file": str(key.path),
        "aaguid": s.aaguid,
        "firmware": _firmware_text(s.firmware),
        "attestation": s.attestation,
        "algorithms": [alg_names.get(a, str(a)) for a in s.algorithms],
        "counter_mode": s.counter_mode
        + (f" (after {s.rollback_after})" if s.rollback_after else ""),
        "backup_eligible": s.backup_eligible,
        "backed_up": s.backed_up,
        "pin_set": s.pin_hash is not None,
        "pin_retries": s.pin_retries,
        "min_pin_length": s.min_pin_length,
        "always_uv": s.always_uv,
        "enterprise_attestation": s.ep_enabled,
        "ep_rp_ids": s.ep_rp_ids,
        "serial": s.serial,
        "credentials": len(s.credentials),
        "discoverable_credentials": sum(1 for c in s.credentials if c.discoverable),
        "faults": s.faults,
    }
    if json_out:
        emit_json(info)
    else:
        emit_kv(title, list(info.items()))


@app.command("show")
def show(state: Path = STATE_OPT, json_out: JsonOpt = False) -> None:
    """Show a SOFTWARE key's settings and how many credentials it holds.

    Example: keyadmin sim show --state lab.key --json
    """
    from keyadmin.sim.authenticator import SoftKey

    _show(SoftKey.open(state), json_out, title=f"SOFTWARE key (not hardware) in {state}")


@app.command("root")
def root(state: Path = STATE_OPT) -> None:
    """Print the SOFTWARE key's lab attestation root certificate (PEM).

    A policy trusts it only when it names it (policies/lab-softkey.toml).
    Example: keyadmin sim root --state lab.key > lab-root.pem
    """
    from keyadmin.sim.authenticator import SoftKey

    key = SoftKey.open(state)
    say("# lab root of a SOFTWARE key (not hardware); never trust it for real accounts")
    out(key.root_certificate_pem())


@app.command("export-credentials")
def export_credentials(
    state: Path = STATE_OPT,
    rp_id: str = typer.Option(..., "--rp-id", help="Only the credentials of this RP id."),
) -> None:
    """LAB ONLY: print a SOFTWARE key's credentials for RP_ID WITH THEIR PRIVATE KEYS (JSON).

    For a lab browser's virtual authenticator (the DevTools WebAuthn domain's
    WebAuthn.addCredential takes each object as it is: credentialId, rpId, userHandle in
    standard base64, privateKey as base64 PKCS#8 DER, signCount), so that a browser signs in
    with the same credential keyadmin enrolled. A software key's private keys are test data;
    a hardware key's never leave it (this command cannot read one).
    Example: keyadmin sim export-credentials --state lab.key --rp-id localhost > creds.json
    """
    import base64

    from cryptography.hazmat.primitives import serialization

    from keyadmin.sim.authenticator import SoftKey

    key = SoftKey.open(state)
    found = []
    for c in key.state.credentials:
        if c.rp_id != rp_id:
            continue
        private = serialization.load_pem_private_key(c.private_key_pem.encode(), password=None)
        der = private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        found.append(
            {
                "credentialId": c.credential_id,
                "isResidentCredential": c.discoverable,
                "rpId": c.rp_id,
                "privateKey": base64.b64encode(der).decode("ascii"),
                "userHandle": c.user_id,
                "signCount": c.counter,
            }
        )
    say(
        f"# {len(found)} credential(s) of the SOFTWARE key {state} for {rp_id!r}, with their "
        "private keys: lab use only"
    )
    emit_json(found)


@app.command("serve")
def serve(
    state: Path = STATE_OPT,
    transport: str = typer.Option(
        "pcsc",
        help="pcsc: a contactless card for pcscd via vpcd. uhid: a USB HID device made by the "
        "kernel through /dev/uhid (a real /dev/hidrawN node; needs the uhid module and root).",
    ),
    host: str = typer.Option("127.0.0.1", help="Where vpcd listens (pcsc)."),
    port: int = typer.Option(35963, help="vpcd's port (35963 is the first reader; pcsc)."),
    uhid: str = typer.Option("/dev/uhid", "--uhid", help="The uhid device file (uhid)."),
) -> None:
    """Serve the SOFTWARE key on a virtual NFC reader (vpcd) or as a kernel USB HID device, until
    Ctrl-C (or SIGTERM; the HID device is then unplugged).

    Example: keyadmin sim serve --state lab.key --transport pcsc --port 35963

    Example: sudo keyadmin sim serve --state lab.key --transport uhid   # prints its /dev/hidrawN
    """
    if transport not in ("pcsc", "uhid"):
        raise UsageError(f"unknown transport {transport!r}", hint="pcsc or uhid")
    from keyadmin.sim.authenticator import SoftKey

    key = SoftKey.open(state)
    if transport == "uhid":
        _serve_uhid(key, state, uhid)
        return
    from keyadmin.sim.pcsc import serve_pcsc

    say(f"Serving the SOFTWARE key {state} on vpcd {host}:{port} (Ctrl-C to stop)")
    try:
        serve_pcsc(key, host, port)
    except KeyboardInterrupt:
        say("stopped")


def _serve_uhid(key: object, state: Path, uhid: str) -> None:
    import os
    import signal
    import time

    from keyadmin.sim.uhid import UhidKey, find_hidraw

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    uniq = f"keyadmin-sim-{os.getpid()}"
    device = UhidKey(key, uhid, uniq=uniq)  # type: ignore[arg-type]
    signal.signal(signal.SIGTERM, _stop)
    try:
        node = None
        for _ in range(50):  # the kernel binds hid-generic and makes the node: usually < 1 s
            node = find_hidraw(uniq)
            if node:
                break
            time.sleep(0.1)
        say(
            f"Serving the SOFTWARE key {state} as a USB HID device: "
            f"{node or 'no hidraw node yet (is hid-generic loaded?)'} (Ctrl-C to unplug)"
        )
        device.serve()
    except KeyboardInterrupt:
        say("unplugged")
    finally:
        device.stop()


@app.command("selftest")
def selftest(
    state: Path = STATE_OPT,
    rp_id: str = typer.Option("keyadmin.example", help="RP ID for the test credential."),
    json_out: JsonOpt = False,
) -> None:
    """Register and authenticate once with the SOFTWARE key through python-fido2's client.

    Sets a PIN first when the key has none (read from the prompt, or from stdin).
    Example: printf '%s\\n' "$PIN" | keyadmin sim selftest --state lab.key
    """
    from keyadmin.cli.interact import CliInteraction, read_pin
    from keyadmin.device.discovery import DeviceRef
    from keyadmin.device.session import DeviceSession
    from keyadmin.flows.selftest import run_selftest
    from keyadmin.sim.authenticator import SoftKey
    from keyadmin.sim.hid import open_hid

    key = SoftKey.open(state)
    new_pin = read_pin("New PIN for the software key: ") if key.state.pin_hash is None else None
    ref = DeviceRef("sim", str(state), key.product_name)
    with DeviceSession(ref, open_hid(key, str(state))) as device:
        interaction = CliInteraction(new_pin)
        if new_pin is not None:
            device.set_pin(new_pin)
            say("PIN set on the software key")
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        root_der = x509.load_pem_x509_certificate(
            key.root_certificate_pem().encode()
        ).public_bytes(Encoding.DER)
        result = run_selftest(device, interaction, rp_id=rp_id, trust_root_der=root_der)
    if json_out:
        emit_json(result)
    else:
        emit_kv("Selftest passed on a SOFTWARE key (not hardware)", list(vars(result).items()))
