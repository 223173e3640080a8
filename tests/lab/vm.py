"""Boot the hardware-lab guest once: Debian's kernel under QEMU (software emulation), this
machine's root shared read-only over 9p, a writable 9p share for results.

Used by tests/lab/conftest.py (one boot per test session) and bench/bench_lab_hid.py.
The facts behind the command line are in docs/software-key.md ("The hardware lab").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / "scripts" / "lab" / "setup.sh"
CACHE = Path(os.environ.get("KEYADMIN_LAB_CACHE", "/var/cache/keyadmin-lab"))
BOOT_TIMEOUT = 420.0  # the guest gives its checks 390 s (tests/lab/guest-init.sh)


class LabUnavailable(Exception):
    """The lab could not be set up or booted; the message says exactly what blocked it."""


@dataclass
class Boot:
    results_dir: Path
    console: Path
    seconds: float
    qemu_code: int | None
    results: dict[str, Any]


def setup() -> dict[str, str]:
    """Run scripts/lab/setup.sh (idempotent, cached) and return its lab.env."""
    p = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise LabUnavailable(
            f"scripts/lab/setup.sh failed (exit {p.returncode}): {p.stderr[-2000:]}"
        )
    env = dict(line.split("=", 1) for line in p.stdout.splitlines() if "=" in line)
    for name in ("KERNEL", "INITRD", "MODULES", "KVER"):
        if name not in env:
            raise LabUnavailable(f"scripts/lab/setup.sh printed no {name}=: {p.stdout[-500:]}")
    return env


def qemu_command(env: dict[str, str], results_dir: Path, init: Path, mode: str) -> list[str]:
    append = (
        f"console=ttyS0 panic=-1 quiet lab.run={init} lab.env={CACHE / 'lab.env'} lab.mode={mode}"
    )
    return [
        "qemu-system-x86_64",
        "-accel", "tcg", "-cpu", "qemu64",  # /dev/kvm here is paravirtual: a stock kernel hangs
        "-m", "512", "-smp", "1",
        "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
        "-kernel", env["KERNEL"], "-initrd", env["INITRD"], "-append", append,
        "-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
        "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
        "-fsdev", f"local,id=results,path={results_dir},security_model=none,multidevs=remap",
        "-device", "virtio-9p-pci,fsdev=results,mount_tag=results",
    ]  # fmt: skip


def boot(results_dir: Path, *, mode: str = "checks", timeout: float = BOOT_TIMEOUT) -> Boot:
    """Boot the guest, which runs tests/lab/guest-init.sh and powers off; read results.json."""
    if shutil.which("qemu-system-x86_64") is None:
        raise LabUnavailable("qemu-system-x86_64 is not installed (scripts/lab/setup.sh)")
    env = setup()
    # keyadmin's byte code, compiled here: in the guest every module compiled is seconds of
    # emulated CPU (this machine's shell sets PYTHONDONTWRITEBYTECODE, so no __pycache__ exists)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "keyadmin")], check=True)
    results_dir.mkdir(parents=True, exist_ok=True)
    console = results_dir / "console.log"
    cmd = qemu_command(env, results_dir.resolve(), REPO / "tests" / "lab" / "guest-init.sh", mode)
    t0 = time.monotonic()
    with console.open("wb") as log:
        try:
            p = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, timeout=timeout
            )
            code: int | None = p.returncode
        except subprocess.TimeoutExpired:
            code = None
    seconds = time.monotonic() - t0
    path = results_dir / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    return Boot(results_dir, console, seconds, code, results)
