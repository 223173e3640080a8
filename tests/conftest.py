"""Shared fixtures: a fresh SOFTWARE key per test, opened through python-fido2's own HID code."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
SHARED_DATA = SHARED / "data"
IN_CI = bool(os.environ.get("CI"))
PIN = "4821-lab"


def require(condition: bool, why: str) -> None:
    """A test that needs a real component: skip locally, fail in CI (where it must be present)."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required component missing in CI: {why}")
    pytest.skip(why)


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    return tmp_path / "softkey.json"


@pytest.fixture
def softkey(key_path: Path):
    from keyadmin.sim.authenticator import SoftKey

    return SoftKey.create(key_path)


@pytest.fixture
def hid_device(softkey) -> Iterator[object]:
    from keyadmin.sim.hid import open_hid

    dev = open_hid(softkey)
    yield dev
    dev.close()


@pytest.fixture
def shared_data() -> Path:
    require(SHARED_DATA.is_dir(), f"../shared/data beside the checkout ({SHARED_DATA})")
    return SHARED_DATA
