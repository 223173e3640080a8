"""The hardware lab: the software key as a USB HID device in a real Linux kernel (one guest boot
for the whole session, see conftest.py), checked one fact at a time.

Every failure message names the directory that holds the guest's console log and results."""

from __future__ import annotations

import json
import re

import pytest

from tests.lab.conftest import Facts

pytestmark = pytest.mark.lab


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _ok(fact: Facts, name: str) -> dict:
    got = fact(name)
    assert got["code"] == 0, f"{name}: exit {got['code']}: {got['stderr']} {fact.where()}"
    return got


def test_the_guest_runs_debians_kernel_with_uhid(fact: Facts) -> None:
    from tests.lab.vm import CACHE

    env = dict(ln.split("=", 1) for ln in (CACHE / "lab.env").read_text().splitlines())
    assert fact("kernel")["release"] == env["KVER"]
    assert fact("dev_uhid")["exists"] is True, fact.where()
    serve = fact("serve")
    assert serve["running"] and re.fullmatch(r"/dev/hidraw\d+", serve["node"] or ""), serve


def test_without_keyadmins_rule_the_node_is_root_only(fact: Facts) -> None:
    before = fact("udev_node_without_rule")
    props = _props(before["properties"])
    # systemd's own fido_id recognises the FIDO descriptor of the software key
    assert props.get("ID_FIDO_TOKEN") == "1", before
    assert (before["group"], before["mode"]) == ("root", "0o600"), before


def test_keyadmins_udev_rule_applied_by_systemd_udevd(fact: Facts) -> None:
    node = fact("udev_node")
    props = _props(node["properties"])
    assert props.get("ID_FIDO_TOKEN") == "1"
    assert (node["group"], node["mode"], node["uid"]) == ("plugdev", "0o660", 0), node
    assert "uaccess" in props.get("TAGS", "").split(":"), props
    assert "uaccess" in props.get("CURRENT_TAGS", "").split(":"), props
    assert props["DEVPATH"].startswith("/devices/virtual/misc/uhid/0003:1209:000A."), props


def test_libfido2_lists_the_key_on_the_usb_bus(fact: Facts) -> None:
    listed = _ok(fact, "fido2_token_L")
    node = fact("serve")["node"]
    assert f"{node}: vendor=0x1209, product=0x000a" in listed["stdout"], listed


def test_libfido2_decodes_get_info(fact: Facts) -> None:
    info = _ok(fact, "fido2_token_I")["stdout"]
    assert "version strings: FIDO_2_0, FIDO_2_1" in info
    assert "aaguid: 6b657961646d4e008000736f66746b79" in info
    assert "caps: 0x0d (wink, cbor, nomsg)" in info
    assert "algorithms: es256 (public-key), eddsa (public-key)" in info
    assert "fwversion: 0x50700" in info


def test_libfido2_makes_a_credential_and_verifies_its_attestation(fact: Facts) -> None:
    _ok(fact, "fido2_cred_M")
    _ok(fact, "fido2_cred_V")


def test_libfido2_gets_an_assertion_and_verifies_it(fact: Facts) -> None:
    _ok(fact, "fido2_assert_G")
    _ok(fact, "fido2_assert_V")
    # the same check on a signature with one bit flipped fails: the verification is real
    bad = fact("fido2_assert_V_tampered")
    assert bad["code"] != 0 and "FIDO_ERR_INVALID_SIG" in bad["stderr"], bad


def _doctor(fact: Facts, name: str) -> dict[str, dict]:
    got = fact(name)
    return {c["name"]: c for c in json.loads(got["stdout"])["checks"]}


def test_doctor_on_the_real_sysfs(fact: Facts) -> None:
    checks = _doctor(fact, "doctor_ok")
    assert checks["usb-hid"]["status"] == "ok", checks
    assert checks["usb-hid"]["detail"] == "1 FIDO HID device(s), all accessible"
    assert checks["pcsc"]["status"] in ("ok", "warn"), checks  # the guest's own pcscd
    assert checks["database"]["status"] == "ok", checks
    # No FIDO metadata can be fresh offline here (the package's own copy is past its grace):
    # that is the one check allowed to fail, and it must say so.
    failing = {n for n, c in checks.items() if c["status"] == "fail"}
    assert failing <= {"metadata"}, checks


def test_doctor_names_the_unreadable_node_and_the_fix(fact: Facts) -> None:
    got = fact("doctor_unreadable")
    assert got["code"] == 1, got
    usb = _doctor(fact, "doctor_unreadable")["usb-hid"]
    node = fact("serve")["node"]
    assert usb["status"] == "fail"
    assert f"cannot open: {node} " in usb["detail"], usb
    assert usb["fix"].startswith("sudo install -m 0644 udev/70-keyadmin-fido.rules /etc/udev/")


def test_device_list_and_info_pick_the_real_node(fact: Facts) -> None:
    node = fact("serve")["node"]
    listed = json.loads(_ok(fact, "device_list")["stdout"])
    assert [d["device"] for d in listed] == [f"hid:{node}"]
    assert listed[0]["transport"] == "hid"
    info = json.loads(_ok(fact, "device_info")["stdout"])
    assert info["path"] == node and info["aaguid"] == "6b657961-646d-4e00-8000-736f66746b79"
    assert info["pin_set"] is False  # before `device prepare`


def test_device_prepare_enrol_and_step_up_over_hidraw(fact: Facts) -> None:
    node = fact("serve")["node"]
    prepared = json.loads(_ok(fact, "device_prepare")["stdout"])
    assert prepared["ready"] is True and prepared["device"] == f"hid:{node}"
    assert {s["step"]: s["changed"] for s in prepared["steps"]}["pin"] is True
    enrolled = json.loads(_ok(fact, "enrol")["stdout"])
    assert enrolled["approved"] is True and enrolled["device"] == f"hid:{node}"
    assert enrolled["operator"] == "labop"
    stepped = json.loads(_ok(fact, "step_up")["stdout"])
    assert stepped["user"] == "alice" and stepped["device"] == f"hid:{node}"
    assert stepped["credential_id"] == enrolled["credential_id"]
    assert stepped["counter"] > stepped["previous_counter"]


def test_unplugging_removes_the_node(fact: Facts) -> None:
    gone = fact("unplug")
    assert gone["serve_code"] == 0 and "unplugged" in gone["serve_stderr"], gone
    assert gone["node_exists_after"] is False


def test_key_pulled_mid_command_is_exit_4_in_one_line(fact: Facts) -> None:
    pulled = fact("pulled_mid_command")
    assert pulled["running_at_pull"] is True, pulled  # the command was waiting on the key
    assert pulled["node_exists_after"] is False
    assert pulled["code"] == 4, pulled
    lines = pulled["stderr"].strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in pulled["stderr"], pulled
    assert all(ln.startswith(("error:", "hint:")) for ln in lines), pulled
    # run with --json: stdout holds only the error object (docs/exit-codes.md)
    error = json.loads(pulled["stdout"])["error"]
    assert (error["code"], error["exit"]) == ("device", 4), pulled


def test_libfido2_user_verification_with_keyadmins_pin(fact: Facts) -> None:
    info = _ok(fact, "fido2_token_I_pin")["stdout"]
    assert ", clientPin," in info and "pin retries: 8" in info, info  # set by `device prepare`
    _ok(fact, "fido2_cred_M_uv")
    _ok(fact, "fido2_cred_V_uv")  # -v: the UV flag must be set
    _ok(fact, "fido2_assert_G_uv")
    _ok(fact, "fido2_assert_V_uv")


def test_libfido2_credential_management(fact: Facts) -> None:
    import base64
    import hashlib

    rps = _ok(fact, "fido2_token_L_r")["stdout"]
    # the credential keyadmin enrolled, for the lab policy's RP; libfido2's own were not resident
    example = base64.b64encode(hashlib.sha256(b"example.com").digest()).decode()
    assert rps.splitlines() == [f"00: {example} example.com"], rps
    _ok(fact, "fido2_cred_M_rk_eddsa")
    _ok(fact, "fido2_cred_V_rk_eddsa")
    rk_id = fact("fido2_rk_id")["id"]
    listed = _ok(fact, "fido2_token_L_k")["stdout"]
    assert rk_id and rk_id in listed and "eddsa" in listed, listed
    _ok(fact, "fido2_token_D")
    assert rk_id not in fact("fido2_token_L_k_after")["stdout"]


def test_ctaphid_messages_cross_the_kernel(fact: Facts) -> None:
    ping = _ok(fact, "ctaphid_ping")
    # 32 reports fit uhid's output queue: always echoed intact
    assert ping["1886"] == "equal", ping
    # 129 reports can overflow it when `sim serve` reads slower than the client writes (the kernel
    # drops reports: "Output queue is full"; a USB key has flow control, uhid has none). Then the
    # key must answer INVALID_SEQ (a report dropped in the middle) or, when the message's LAST
    # reports were dropped, ERR_MSG_TIMEOUT after its transaction timeout (CI 2026-12-03 caught
    # the key waiting for them forever): never a hang, never other data.
    assert ping["7609"] in ("equal", "CtapError INVALID_SEQ", "CtapError TIMEOUT"), ping


def test_python_fido2_device_suite_over_hidraw(fact: Facts) -> None:
    """python-fido2's test_hid.py and test_info.py, unmodified, over the kernel's hidraw node."""
    from tests.conftest import require

    suite = fact("fido2_device_suite")
    require("missing" not in suite, f"python-fido2's device suite: {suite.get('missing')}")
    assert "passed" in suite, f"the suite wrote no report: {suite} {fact.where()}"
    summary = {k: len(suite[k]) for k in ("passed", "failed", "errors", "skipped")}
    print(f"\npython-fido2 device suite over hidraw: {summary}, pytest {suite['pytest_seconds']} s")
    assert suite["failed"] == [] and suite["errors"] == [], f"{summary}\n{suite['output']}"
    assert "test_hid.py::test_ping" in suite["passed"], suite  # HID-only: never run over PC/SC
    assert "test_info.py::test_get_info_fields" in suite["passed"], suite
    assert suite["code"] == 0, suite["output"]
    # its closing factory reset unplugged the key and plugged it in again (a new hidraw node)
    assert suite["stops"] >= 1 and suite["starts"] >= 2, suite["controller_calls"]
