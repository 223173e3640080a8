"""Integration fixtures: the software key on the REAL PC/SC stack (pcscd + vpcd).

Only one pcscd can run per machine, so the whole test run shares ONE private
pcscd (``pcscd_service``) and one virtual card (``pcsc_softkey``). Tests that
need a key in another state swap cards with ``pcsc_softkey.swapped(other_key)``
and get the session key back afterwards.

When pcscd, the vpcd driver or pyscard is missing these tests are skipped on a
workstation, but FAIL when the CI environment variable is set: CI must run them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from keyadmin.sim.pcsc import VirtualCard
from keyadmin.sim.pcscd import (
    PcscdAlreadyRunning,
    PcscdMissing,
    PcscdStartFailed,
    PrivatePcscd,
    wait_for_card,
)

# Not vpcd's default 35963, so a developer's own `keyadmin sim serve --transport pcsc`
# (aimed at the system pcscd) cannot end up talking to the test daemon by accident.
TEST_VPCD_PORT = int(os.environ.get("KEYADMIN_TEST_VPCD_PORT", "35973"))
TEST_READER_NAME = "keyadmin test vpcd"
CARD_TIMEOUT = 10.0


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing_component(reason: str) -> NoReturn:
    """Skip locally; fail in CI, where every integration component must be installed."""
    if in_ci():
        pytest.fail(f"CI is set but {reason}", pytrace=False)
    pytest.skip(reason)


@dataclass
class PcscSoftKey:
    """The session's software key, served as a contactless card on the private pcscd."""

    softkey: Any  # keyadmin.sim.authenticator.SoftKey
    state_path: Path
    daemon: PrivatePcscd
    card: VirtualCard

    @property
    def reader_name(self) -> str:
        """The full PC/SC name of the card's reader (vpcd slot 0), e.g. "keyadmin test vpcd 00 00".

        Pass it to ``CtapPcscDevice.list_devices(name)``: it matches this reader only.
        """
        return self.daemon.card_reader

    def insert(self, softkey: Any | None = None) -> None:
        """Tap a card (the current key, or ``softkey``) and wait until pcscd sees it."""
        if softkey is not None:
            self.softkey = softkey
        self.card = VirtualCard(self.softkey, port=self.daemon.port)
        self.card.start()
        wait_for_card(self.reader_name, CARD_TIMEOUT)

    def remove(self) -> None:
        """Take the card away and wait until pcscd has noticed."""
        self.card.stop()
        wait_for_card(self.reader_name, CARD_TIMEOUT, present=False)

    def open_device(self) -> Any:
        """python-fido2's own CtapPcscDevice for this card (it SELECTs and runs getInfo)."""
        from fido2.pcsc import CtapPcscDevice

        devices = list(CtapPcscDevice.list_devices(self.reader_name))
        assert len(devices) == 1, f"expected one FIDO card on {self.reader_name!r}: {devices}"
        return devices[0]

    @contextlib.contextmanager
    def swapped(self, softkey: Any) -> Iterator[PcscSoftKey]:
        """Serve another key for the duration of a ``with`` block, then the session key."""
        original = self.softkey
        self.remove()
        try:
            self.insert(softkey)
            yield self
        finally:
            self.remove()
            self.insert(original)


@pytest.fixture(scope="session")
def pcscd_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivatePcscd]:
    """A private pcscd with one vpcd reader, for the whole test run."""
    try:
        import smartcard  # noqa: F401
    except ImportError:
        missing_component(
            "pyscard is not installed (pip install 'pyscard>=2.0,<3'; building it needs "
            "apt packages swig libpcsclite-dev gcc pkg-config python3-dev)"
        )
    daemon = PrivatePcscd(
        port=TEST_VPCD_PORT,
        reader_name=TEST_READER_NAME,
        workdir=tmp_path_factory.mktemp("pcscd"),
    )
    try:
        daemon.start()
    except (PcscdMissing, PcscdAlreadyRunning, PcscdStartFailed) as e:
        missing_component(f"the private pcscd cannot run: {e.message} ({e.hint})")
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def pcsc_softkey(
    pcscd_service: PrivatePcscd, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PcscSoftKey]:
    """A software key in a tmp state file, present as a contactless card on ``pcscd_service``."""
    from keyadmin.sim.authenticator import SoftKey

    state_path = tmp_path_factory.mktemp("softkey") / "pcsc-key.json"
    softkey = SoftKey.create(state_path)
    card = VirtualCard(softkey, port=pcscd_service.port)
    key = PcscSoftKey(softkey=softkey, state_path=state_path, daemon=pcscd_service, card=card)
    card.start()
    try:
        wait_for_card(key.reader_name, CARD_TIMEOUT)
        yield key
    finally:
        key.card.stop()
