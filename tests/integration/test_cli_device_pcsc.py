"""keyadmin device … over NFC: the installed CLI, real pcscd + vpcd, the software key as a card."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from keyadmin.sim.authenticator import SoftKey
from keyadmin.sim.pcsc import VirtualCard
from keyadmin.sim.pcscd import wait_for_card
from tests.e2e.cli import run

pytestmark = pytest.mark.pcsc
PIN = "8642-nfc"


@pytest.fixture(autouse=True)
def _registry(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands that change a key log to the registry: this test's own, never the user's."""
    monkeypatch.setenv("KEYADMIN_DATABASE_URL", f"sqlite:///{tmp_path / 'device-log.db'}")


@pytest.fixture
def card(pcsc_softkey: Any, tmp_path) -> Any:
    """A fresh software key on the test reader for this test only."""
    with pcsc_softkey.swapped(SoftKey.create(tmp_path / "nfc-key.json")) as served:
        yield served


def test_info_over_nfc_json(card) -> None:
    out = run("device", "info", "-d", f"nfc:{card.reader_name}", "--json")
    assert out.code == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["transport"] == "nfc"
    assert info["aaguid"] == card.softkey.state.aaguid
    assert info["versions"] == ["FIDO_2_0", "FIDO_2_1"]


def test_the_only_device_is_used_without_selector(card) -> None:
    out = run("device", "info", "--json")
    assert out.code == 0, out.stderr
    assert json.loads(out.stdout)["path"] == card.reader_name


def test_two_devices_present_is_an_error_that_lists_them(card, tmp_path) -> None:
    second = VirtualCard(SoftKey.create(tmp_path / "second.json"), port=card.daemon.port + 1)
    second.start()
    try:
        slot1 = card.reader_name[:-2] + "01"
        wait_for_card(slot1, 10.0)
        out = run("device", "info")
        assert out.code == 4
        assert "2 FIDO devices found" in out.stderr
        assert card.reader_name in out.stderr and slot1 in out.stderr
        assert "--device" in out.stderr
    finally:
        second.stop()


def test_no_device_points_to_doctor(pcsc_softkey) -> None:
    pcsc_softkey.remove()
    try:
        out = run("device", "info")
        assert out.code == 4
        assert "no FIDO device found" in out.stderr and "keyadmin doctor" in out.stderr
    finally:
        pcsc_softkey.insert()


def test_pin_over_nfc_wrong_pin_then_right(card) -> None:
    dev = f"nfc:{card.reader_name}"
    assert run("device", "pin", "set", "-d", dev, input=f"{PIN}\n").code == 0
    bad = run("device", "pin", "verify", "-d", dev, input="wrong-pin\n")
    assert bad.code == 5 and "7 attempts left" in bad.stderr
    good = run("device", "pin", "verify", "-d", dev, "--json", input=f"{PIN}\n")
    assert good.code == 0 and json.loads(good.stdout)["retries"] == 8


def test_reset_over_nfc(card) -> None:
    dev = f"nfc:{card.reader_name}"
    assert run("device", "pin", "set", "-d", dev, input=f"{PIN}\n").code == 0
    assert run("device", "reset", "-d", dev, input="n\n").code == 1
    assert card.softkey.state.pin_hash is not None
    assert run("device", "reset", "-d", dev, input="y\n").code == 0
    assert card.softkey.state.pin_hash is None


def test_card_removed_mid_command_is_a_clear_error(card) -> None:
    """The card leaves the reader while the key is busy: exit 4, one line, no traceback."""
    state = card.softkey.state
    state.faults, state.fault_commands, state.fault_delay = ["slow"], [0x06], 3.0
    try:
        timer = threading.Timer(0.8, card.card.stop)
        timer.start()
        t0 = time.monotonic()
        out = run("device", "pin", "retries", "-d", f"nfc:{card.reader_name}")
        timer.join()
        assert time.monotonic() - t0 < 3.0  # it did not wait for the slow reply
        assert out.code == 4, out.stderr
        assert "Traceback" not in out.stderr
        assert out.stderr.startswith("error: ") and "hint: " in out.stderr
    finally:
        state.faults, state.fault_commands, state.fault_delay = [], [], 0.0
        wait_for_card(card.reader_name, 10.0, present=False)
        time.sleep(2.5)  # the key finishes the abandoned slow request before it powers up again
        card.insert()


def test_sim_serve_puts_a_key_on_the_reader(pcsc_softkey, tmp_path) -> None:
    """`keyadmin sim serve --transport pcsc` as a real process, on vpcd's second slot."""
    import os
    import signal
    import subprocess
    import sys

    from fido2.ctap2 import Ctap2
    from fido2.pcsc import CtapPcscDevice

    state = tmp_path / "served.json"
    key = SoftKey.create(state, aaguid="22222222-3333-4444-8555-666666666666")
    exe = os.path.join(os.path.dirname(sys.executable), "keyadmin")
    proc = subprocess.Popen(
        [
            exe,
            "sim",
            "serve",
            "--state",
            str(state),
            "--transport",
            "pcsc",
            "--port",
            str(pcsc_softkey.daemon.port + 1),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        slot1 = pcsc_softkey.reader_name[:-2] + "01"
        wait_for_card(slot1, 15.0)
        dev = next(CtapPcscDevice.list_devices(slot1))
        assert str(Ctap2(dev).info.aaguid) == key.state.aaguid
        dev.close()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    assert "SOFTWARE key" in err
    assert "Traceback" not in err
    wait_for_card(slot1, 10.0, present=False)


def test_device_list_shows_the_card_with_its_aaguid(card) -> None:
    out = run("device", "list", "--json")
    assert out.code == 0, out.stderr
    rows = {r["device"]: r for r in json.loads(out.stdout)}
    mine = rows[f"nfc:{card.reader_name}"]
    assert mine["transport"] == "nfc" and mine["aaguid"] == card.softkey.state.aaguid
    assert mine["model"] is None  # the software key is in no FIDO metadata
