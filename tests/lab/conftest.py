"""The hardware lab: ONE guest boot per test session (a real Linux kernel under QEMU, the software
key as a USB HID device through /dev/uhid, the real systemd-udevd, libfido2's tools).

The guest runs tests/lab/guest_checks.py, which records what every command did in results.json;
the tests here assert on it one by one. The results and the guest's console log are kept in
$KEYADMIN_LAB_ARTEFACTS (default .lab-artefacts/ in the checkout), named in every failure.
Without QEMU or the kernel (scripts/lab/setup.sh not run) these tests skip on a workstation and
FAIL in CI; a lab that was set up but did not boot or finish always fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require
from tests.lab.vm import REPO, Boot, LabUnavailable, boot

ARTEFACTS = Path(os.environ.get("KEYADMIN_LAB_ARTEFACTS", REPO / ".lab-artefacts"))


def _inputs(directory: Path) -> None:
    """The software keys the guest serves, made here (Python start-up is slow under emulation)."""
    from keyadmin.sim.authenticator import SoftKey

    directory.mkdir(parents=True)
    key = SoftKey.create(directory / "lab.key")
    (directory / "lab-root.pem").write_text(key.root_certificate_pem())
    # getInfo answers after 60 s: the key is pulled while `device info` waits for it
    SoftKey.create(directory / "slow.key", faults=["slow"], fault_commands=[0x04], fault_delay=60)
    from tests.e2e.cli import invoke

    made = invoke("receipt", "keygen", "--receipt-key", str(directory / "receipt.pem"),
                  "--no-passphrase")  # fmt: skip
    assert made.code == 0, made.stderr
    _fido2_suite(directory)


def _fido2_suite(directory: Path) -> None:
    """A fresh key for python-fido2's device tests, and where the guest finds the unpacked sdist
    (none written when it is missing: the guest records that, tests/lab/test_lab.py judges it)."""
    from keyadmin.sim.authenticator import SoftKey
    from tests.support.fido2_suite import SuiteUnavailable, suite_root

    SoftKey.create(directory / "suite.key")
    try:
        root = suite_root(download=False)
    except SuiteUnavailable as e:
        (directory / "fido2-suite-missing.txt").write_text(str(e))
        return
    # its fido2 package is imported from the sdist (pytest's rootdir): byte code compiled here
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(root / "fido2")], check=True)
    (directory / "fido2-suite.txt").write_text(str(root.resolve()))


@pytest.fixture(scope="session")
def lab() -> Boot:
    run_dir = ARTEFACTS / "lab-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    _inputs(run_dir / "input")
    try:
        result = boot(run_dir)
    except LabUnavailable as e:
        require(False, f"the hardware lab cannot run: {e}")
        raise
    finished = "finished" in result.results
    if result.qemu_code != 0 or not finished:
        pytest.fail(
            f"the lab guest did not finish (QEMU exit {result.qemu_code}, {result.seconds:.0f} s); "
            f"console log and results kept in {run_dir} "
            "(console.log, checks.log, dmesg.log, results.json)",
            pytrace=False,
        )
    return result


class Facts:
    def __init__(self, boot: Boot) -> None:
        self.boot = boot

    def __call__(self, name: str) -> dict[str, Any]:
        got = self.boot.results.get(name)
        if not isinstance(got, dict):
            pytest.fail(
                f"the guest recorded no {name!r}; see {self.boot.results_dir}/checks.log "
                f"and console.log",
                pytrace=False,
            )
        return got

    def where(self) -> str:
        return f"(guest results and console log in {self.boot.results_dir})"


@pytest.fixture(scope="session")
def fact(lab: Boot) -> Facts:
    return Facts(lab)
