"""`keyadmin sim serve --transport uhid` where it cannot run (this host: no /dev/uhid), and its
events against the kernel's own struct layout (linux/uhid.h, compiled with the real gcc).

The device itself is exercised through a real kernel in tests/lab/ (the hardware lab)."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from keyadmin.sim import uhid
from tests.e2e.cli import invoke, run


def test_missing_uhid_is_a_declared_device_error(tmp_path: Path) -> None:
    state = tmp_path / "k.key"
    assert invoke("sim", "init", "--state", str(state)).code == 0
    missing = tmp_path / "no-such-uhid"
    out = invoke(
        "sim", "serve", "--state", str(state), "--transport", "uhid", "--uhid", str(missing)
    )
    assert out.code == 4
    assert f"{missing} does not exist" in out.stderr and "modprobe uhid" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.skipif(Path("/dev/uhid").exists(), reason="this host has /dev/uhid")
def test_this_host_without_dev_uhid(tmp_path: Path) -> None:
    state = tmp_path / "k.key"
    assert invoke("sim", "init", "--state", str(state)).code == 0
    out = run("sim", "serve", "--state", str(state), "--transport", "uhid")
    assert out.code == 4, out.stderr
    lines = out.stderr.strip().splitlines()
    assert (
        lines[0] == "error: /dev/uhid does not exist: this kernel offers no user-space HID devices"
    )
    assert lines[1].startswith("hint: load the module (sudo modprobe uhid")


def test_unknown_transport_is_a_usage_error(tmp_path: Path) -> None:
    out = invoke("sim", "serve", "--state", str(tmp_path / "k"), "--transport", "usb")
    assert out.code == 2 and "pcsc or uhid" in out.stderr


LAYOUT_C = r"""
#include <stdio.h>
#include <stddef.h>
#include <linux/uhid.h>
int main(void) {
  printf("%zu %zu %zu %zu %zu %zu %zu %zu %d %d %d %d\n", sizeof(struct uhid_event),
    offsetof(struct uhid_event, u.create2.rd_size), offsetof(struct uhid_event, u.create2.bus),
    offsetof(struct uhid_event, u.create2.vendor), offsetof(struct uhid_event, u.create2.rd_data),
    offsetof(struct uhid_event, u.input2.data), offsetof(struct uhid_event, u.output.size),
    offsetof(struct uhid_event, u.output.data), UHID_CREATE2, UHID_INPUT2, UHID_OUTPUT,
    UHID_DESTROY);
  return 0;
}
"""


def test_event_layout_matches_linux_uhid_h(tmp_path: Path) -> None:
    gcc = shutil.which("gcc")
    if gcc is None or not Path("/usr/include/linux/uhid.h").exists():
        pytest.fail("gcc and linux/uhid.h (linux-libc-dev) are installed by scripts/bootstrap.sh")
    (tmp_path / "layout.c").write_text(LAYOUT_C)
    subprocess.run([gcc, "-o", str(tmp_path / "layout"), str(tmp_path / "layout.c")], check=True)
    got = [int(x) for x in subprocess.run([str(tmp_path / "layout")], capture_output=True,
                                           text=True, check=True).stdout.split()]  # fmt: skip
    size, rd_size, bus, vendor, rd_data, in_data, out_size, out_data, c2, i2, o, d = got
    assert uhid.EVENT_SIZE == size
    assert (uhid.UHID_CREATE2, uhid.UHID_INPUT2, uhid.UHID_OUTPUT, uhid.UHID_DESTROY) == (
        c2,
        i2,
        o,
        d,
    )
    ev = uhid.create2_event("n", "p", "u")
    assert len(ev) == size and struct.unpack_from("<I", ev)[0] == c2
    assert struct.unpack_from("<HHII", ev, rd_size) == (
        len(uhid.FIDO_REPORT_DESCRIPTOR),
        uhid.BUS_USB,
        uhid.SIM_VID,
        uhid.SIM_PID,
    )
    assert (bus, vendor) == (rd_size + 2, rd_size + 4)
    assert ev[rd_data : rd_data + 3] == bytes.fromhex("06d0f1")  # FIDO usage page
    report = bytes(range(64))
    inp = uhid.input2_event(report)
    assert len(inp) == size and inp[in_data : in_data + 64] == report
    assert struct.unpack_from("<H", inp, in_data - 2)[0] == 64
    # an output event as the kernel writes it for a hidraw write (report id 0 first: 65 bytes)
    out = bytearray(size)
    struct.pack_into("<I", out, 0, o)
    out[out_data : out_data + 65] = b"\0" + report
    struct.pack_into("<H", out, out_size, 65)
    assert uhid.output_report(bytes(out)) == report
    struct.pack_into("<H", out, out_size, 30)
    assert uhid.output_report(bytes(out)) is None  # not a CTAPHID packet: ignored
