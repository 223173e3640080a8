"""The software key as a kernel HID device, through Linux's /dev/uhid.

The kernel then makes it a real USB-bus HID device with a /dev/hidrawN node: udev sees it,
python-fido2's Linux backend and libfido2 open it like a plugged-in key. The CTAPHID framing is
the in-process one (``SimHidConnection``): every 64-byte output report the kernel hands over is
one ``write_packet``, every packet it answers is one 64-byte input report.

Event layout: ``struct uhid_event`` in linux/uhid.h (packed): a u32 type, then a 4376-byte union
(its largest member; CREATE2's own fields take 4372). tests/e2e/test_sim_uhid.py checks these
numbers against the header with gcc.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import threading
from typing import TYPE_CHECKING

from keyadmin.errors import DeviceError
from keyadmin.sim.hid import REPORT_SIZE, SIM_PID, SIM_VID, SimHidConnection

if TYPE_CHECKING:
    from keyadmin.sim.authenticator import SoftKey

log = logging.getLogger(__name__)

UHID_PATH = "/dev/uhid"
EVENT_SIZE = 4 + 4376
DATA_MAX = 4096

# enum uhid_event_type
UHID_DESTROY = 1
UHID_START = 2
UHID_STOP = 3
UHID_OPEN = 4
UHID_CLOSE = 5
UHID_OUTPUT = 6
UHID_GET_REPORT = 9
UHID_GET_REPORT_REPLY = 10
UHID_CREATE2 = 11
UHID_INPUT2 = 12
UHID_SET_REPORT = 13
UHID_SET_REPORT_REPLY = 14

BUS_USB = 0x03

# FIDO usage page 0xF1D0, usage 0x01 (CTAPHID); one 64-byte input and one 64-byte output report.
FIDO_REPORT_DESCRIPTOR = bytes.fromhex(
    "06d0f1 0901 a101 0920 1500 26ff00 7508 9540 8102 0921 1500 26ff00 7508 9540 9102 c0"
)

DEVICE_NAME = "keyadmin SOFTWARE key (not hardware)"


def _event(kind: int, body: bytes) -> bytes:
    return struct.pack("<I", kind) + body.ljust(EVENT_SIZE - 4, b"\0")


def create2_event(name: str, phys: str, uniq: str) -> bytes:
    """UHID_CREATE2: name[128] phys[64] uniq[64] rd_size bus vendor product version country rd."""
    body = (
        name.encode()[:127].ljust(128, b"\0")
        + phys.encode()[:63].ljust(64, b"\0")
        + uniq.encode()[:63].ljust(64, b"\0")
        + struct.pack("<HHIIII", len(FIDO_REPORT_DESCRIPTOR), BUS_USB, SIM_VID, SIM_PID, 0, 0)
        + FIDO_REPORT_DESCRIPTOR
    )
    return _event(UHID_CREATE2, body)


def input2_event(report: bytes) -> bytes:
    return _event(UHID_INPUT2, struct.pack("<H", len(report)) + report)


def output_report(event: bytes) -> bytes | None:
    """The 64-byte CTAPHID packet in a UHID_OUTPUT event, or None if it is not one.

    A hidraw write of an unnumbered report arrives with its leading report id 0 (65 bytes).
    """
    size = struct.unpack_from("<H", event, 4 + DATA_MAX)[0]
    data = event[4 : 4 + min(size, DATA_MAX)]
    if len(data) == REPORT_SIZE + 1 and data[0] == 0:
        data = data[1:]
    return data if len(data) == REPORT_SIZE else None


def open_uhid(path: str = UHID_PATH) -> int:
    """Open /dev/uhid, or a DeviceError that says why not and what to do."""
    try:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise DeviceError(
            f"{path} does not exist: this kernel offers no user-space HID devices",
            hint="load the module (sudo modprobe uhid; the kernel needs CONFIG_UHID), or use the "
            "software key in-process (--device sim:FILE) or over PC/SC (--transport pcsc)",
            path=path,
        ) from None
    except PermissionError:
        raise DeviceError(
            f"{path} cannot be opened for reading and writing by this user",
            hint=f"run as root, or give this user read/write access to {path}",
            path=path,
        ) from None
    except OSError as e:
        raise DeviceError(f"{path} cannot be opened: {e.strerror}", path=path) from None


class UhidKey:
    """One software key served as a kernel HID device until ``stop()`` (or the process ends)."""

    def __init__(self, key: SoftKey, path: str = UHID_PATH, uniq: str = "") -> None:
        self.key = key
        self.fd = open_uhid(path)
        self.conn = SimHidConnection(key)
        self._stopped = threading.Event()
        self._write_lock = threading.Lock()
        try:
            self._write(create2_event(DEVICE_NAME, "keyadmin-sim/uhid", uniq))
        except OSError as e:
            os.close(self.fd)
            raise DeviceError(f"the kernel refused the HID device: {e.strerror}") from None
        self._pump = threading.Thread(target=self._send_replies, name="uhid-in", daemon=True)
        self._pump.start()

    def _write(self, event: bytes) -> None:
        with self._write_lock:
            os.write(self.fd, event)

    def _send_replies(self) -> None:
        while not self._stopped.is_set():
            try:
                packet = self.conn.read_packet()
            except OSError:
                continue  # nothing to send for 30 s: keep waiting
            if self._stopped.is_set():
                return
            try:
                self._write(input2_event(packet))
            except OSError as e:
                log.warning("uhid: input report not delivered: %s", e)

    def serve(self) -> None:
        """Hand the kernel's output reports to the key, until stop() or the fd fails."""
        while not self._stopped.is_set():
            try:
                event = os.read(self.fd, EVENT_SIZE)
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                if self._stopped.is_set():
                    return
                raise DeviceError(f"/dev/uhid failed: {e.strerror}") from None
            if len(event) < 4:
                continue
            kind = struct.unpack_from("<I", event)[0]
            if kind == UHID_OUTPUT:
                packet = output_report(event)
                if packet is None:
                    log.warning("uhid: output report of an unexpected size ignored")
                    continue
                try:
                    self.conn.write_packet(packet)
                except OSError as e:
                    log.warning("uhid: %s", e)
            elif kind in (UHID_GET_REPORT, UHID_SET_REPORT):
                # No feature reports: answer EIO rather than leave the kernel waiting.
                ident = struct.unpack_from("<I", event, 4)[0]
                reply = UHID_GET_REPORT_REPLY if kind == UHID_GET_REPORT else UHID_SET_REPORT_REPLY
                self._write(_event(reply, struct.pack("<IH", ident, errno.EIO)))
            # START, STOP, OPEN, CLOSE: nothing to do.

    def stop(self) -> None:
        """Unplug: destroy the kernel device and close /dev/uhid."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        try:
            self._write(_event(UHID_DESTROY, b""))
        except OSError:
            pass
        self.conn.close()
        os.close(self.fd)


def find_hidraw(uniq: str, sysfs: str = "/sys/class/hidraw") -> str | None:
    """The /dev/hidrawN node of the HID device whose HID_UNIQ is ``uniq``, or None (yet)."""
    try:
        names = sorted(os.listdir(sysfs))
    except OSError:
        return None
    for name in names:
        try:
            with open(os.path.join(sysfs, name, "device", "uevent"), encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        if f"HID_UNIQ={uniq}" in lines:
            return f"/dev/{name}"
    return None
