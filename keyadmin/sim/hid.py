"""CTAPHID framing for the software key (CTAP 2.1 §11.2), in-process.

``SimHidConnection`` implements python-fido2's ``CtapHidConnection`` (64-byte
reports in, 64-byte reports out), so python-fido2's own, unmodified
``CtapHidDevice`` drives the key exactly as it drives a USB key through hidraw:
INIT with channel allocation, CBOR, PING, WINK, LOCK, CANCEL, KEEPALIVE and
ERROR, with sequence and length checks.
"""

from __future__ import annotations

import logging
import os
import queue
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fido2.hid import CtapHidDevice
from fido2.hid.base import CtapHidConnection, HidDescriptor

if TYPE_CHECKING:
    from keyadmin.sim.authenticator import SoftKey

log = logging.getLogger(__name__)

REPORT_SIZE = 64
BROADCAST_CID = 0xFFFFFFFF
TYPE_INIT = 0x80
MAX_MESSAGE = REPORT_SIZE - 7 + 128 * (REPORT_SIZE - 5)  # 7609 bytes
KEEPALIVE_EVERY = 0.1
READ_TIMEOUT = 30.0
#: CTAPHID's transaction timeout: a message whose next packet has not come within this many
#: seconds is abandoned with ERR_MSG_TIMEOUT (the spec leaves the value to the device)
MSG_TIMEOUT = 1.0

# pid.codes test VID/PID, so nothing mistakes it for a vendor's key.
SIM_VID = 0x1209
SIM_PID = 0x000A


class HidCmd:
    PING = 0x01
    MSG = 0x03
    LOCK = 0x04
    INIT = 0x06
    WINK = 0x08
    CBOR = 0x10
    CANCEL = 0x11
    KEEPALIVE = 0x3B
    ERROR = 0x3F


class HidErr:
    INVALID_CMD = 0x01
    INVALID_PAR = 0x02
    INVALID_LEN = 0x03
    INVALID_SEQ = 0x04
    MSG_TIMEOUT = 0x05
    CHANNEL_BUSY = 0x06
    INVALID_CHANNEL = 0x0B
    OTHER = 0x7F


CAP_WINK = 0x01
CAP_CBOR = 0x04
CAP_NMSG = 0x08


@dataclass
class _Incoming:
    cid: int
    cmd: int
    length: int
    data: bytearray = field(default_factory=bytearray)
    seq: int = 0
    #: time.monotonic() of its last packet
    last: float = 0.0


class SimHidConnection(CtapHidConnection):
    """The USB HID side of the software key, as python-fido2 sees a hidraw node."""

    def __init__(self, key: SoftKey) -> None:
        self.key = key
        self._out: queue.Queue[bytes] = queue.Queue()
        self._jobs: queue.Queue[tuple[int, bytes] | None] = queue.Queue()
        self._incoming: _Incoming | None = None
        self._busy_cid: int | None = None
        self._cancel = threading.Event()
        self._channels: set[int] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._worker = threading.Thread(target=self._work, name="softkey-hid", daemon=True)
        self._worker.start()

    # ---------------------------------------------------------------- CtapHidConnection
    def write_packet(self, data: bytes) -> None:
        if self._closed:
            raise OSError("the software key was disconnected")
        if len(data) != REPORT_SIZE:
            raise OSError(f"HID reports are {REPORT_SIZE} bytes, got {len(data)}")
        with self._lock:
            self._receive(bytes(data))

    def read_packet(self) -> bytes:
        try:
            return self._out.get(timeout=READ_TIMEOUT)
        except queue.Empty:
            raise OSError("the software key did not answer within 30 s") from None

    def close(self) -> None:
        self._closed = True
        self._cancel.set()
        self._jobs.put(None)

    # ---------------------------------------------------------------- framing
    def _send(self, cid: int, cmd: int, payload: bytes) -> None:
        header = struct.pack(">IBH", cid, TYPE_INIT | cmd, len(payload))
        first = REPORT_SIZE - len(header)
        self._out.put((header + payload[:first]).ljust(REPORT_SIZE, b"\0"))
        rest, seq = payload[first:], 0
        while rest:
            chunk, rest = rest[: REPORT_SIZE - 5], rest[REPORT_SIZE - 5 :]
            self._out.put((struct.pack(">IB", cid, seq) + chunk).ljust(REPORT_SIZE, b"\0"))
            seq += 1

    def _error(self, cid: int, code: int) -> None:
        self._send(cid, HidCmd.ERROR, bytes([code]))

    def _watch(self, inc: _Incoming, after: float) -> None:
        timer = threading.Timer(after, self._expire, args=(inc,))
        timer.daemon = True
        timer.start()

    def _expire(self, inc: _Incoming) -> None:
        """The transaction timeout: ``inc``, still incomplete, had no packet for MSG_TIMEOUT."""
        with self._lock:
            if self._incoming is not inc or self._closed:
                return  # completed, refused or replaced meanwhile
            left = inc.last + MSG_TIMEOUT - time.monotonic()
            if left > 0:
                self._watch(inc, left)
                return
            self._incoming = None
            self._error(inc.cid, HidErr.MSG_TIMEOUT)

    def _receive(self, packet: bytes) -> None:
        cid = struct.unpack_from(">I", packet)[0]
        if cid == 0:
            self._error(cid, HidErr.INVALID_CHANNEL)
            return
        if packet[4] & TYPE_INIT:
            cmd = packet[4] & 0x7F
            length = struct.unpack_from(">H", packet, 5)[0]
            if cmd == HidCmd.CANCEL:
                if cid == self._busy_cid:
                    self._cancel.set()
                return  # CANCEL is never answered itself
            if cmd == HidCmd.INIT:
                self._init(cid, packet[7 : 7 + length])
                return
            if self._busy_cid is not None:
                self._error(cid, HidErr.CHANNEL_BUSY)
                return
            if cid != BROADCAST_CID and cid not in self._channels:
                self._error(cid, HidErr.INVALID_CHANNEL)
                return
            if length > MAX_MESSAGE:
                self._error(cid, HidErr.INVALID_LEN)
                return
            if self._incoming is not None and self._incoming.cid != cid:
                self._error(cid, HidErr.CHANNEL_BUSY)
                return
            self._incoming = _Incoming(cid, cmd, length, bytearray(packet[7 : 7 + length]))
            self._incoming.last = time.monotonic()
            if length > len(self._incoming.data):
                self._watch(self._incoming, MSG_TIMEOUT)
        else:
            inc = self._incoming
            if inc is None or inc.cid != cid:
                return  # spurious continuation: ignored, as the spec says
            if packet[4] != inc.seq:
                self._incoming = None
                self._error(cid, HidErr.INVALID_SEQ)
                return
            inc.seq += 1
            inc.last = time.monotonic()
            inc.data += packet[5 : 5 + inc.length - len(inc.data)]
        inc = self._incoming
        if inc is not None and len(inc.data) >= inc.length:
            self._incoming = None
            self._complete(inc.cid, inc.cmd, bytes(inc.data[: inc.length]))

    def _init(self, cid: int, nonce: bytes) -> None:
        if len(nonce) != 8:
            self._error(cid, HidErr.INVALID_LEN)
            return
        if cid == BROADCAST_CID:
            new_cid = struct.unpack(">I", os.urandom(4))[0] & 0x7FFFFFFF or 1
            self._channels.add(new_cid)
        else:  # resynchronise an existing channel
            if self._incoming is not None and self._incoming.cid == cid:
                self._incoming = None
            new_cid = cid
        fw = self.key.state.firmware
        caps = CAP_WINK | CAP_CBOR | CAP_NMSG
        body = nonce + struct.pack(
            ">IBBBBB", new_cid, 2, (fw >> 16) & 0xFF, (fw >> 8) & 0xFF, fw & 0xFF, caps
        )
        self._send(cid, HidCmd.INIT, body)

    def _complete(self, cid: int, cmd: int, data: bytes) -> None:
        if cmd == HidCmd.PING:
            self._send(cid, HidCmd.PING, data)
        elif cmd in (HidCmd.WINK, HidCmd.LOCK):
            self._send(cid, cmd, b"")
        elif cmd == HidCmd.CBOR:
            if not data:
                self._error(cid, HidErr.INVALID_LEN)
                return
            self._busy_cid = cid
            self._cancel.clear()
            self._jobs.put((cid, data))
        else:  # MSG (CTAP1/U2F) is not offered: the NMSG capability says so
            self._error(cid, HidErr.INVALID_CMD)

    def _keepalive_sender(self, cid: int) -> Callable[[int], None]:
        last = [0.0]

        def keepalive(status: int) -> None:
            now = time.monotonic()
            if now - last[0] >= KEEPALIVE_EVERY:
                last[0] = now
                self._send(cid, HidCmd.KEEPALIVE, bytes([status]))

        return keepalive

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            cid, data = job
            keepalive = self._keepalive_sender(cid)

            try:
                reply = self.key.process(data, keepalive=keepalive, cancel=self._cancel)
            except Exception:  # a crash in the key is an error reply, never a hang
                log.exception("software key crashed on a CBOR request")
                with self._lock:
                    self._busy_cid = None
                self._error(cid, HidErr.OTHER)
                continue
            with self._lock:
                self._busy_cid = None
                self._send(cid, HidCmd.CBOR, reply)


def sim_descriptor(label: str) -> HidDescriptor:
    from keyadmin.sim import SOFTWARE_KEY_LABEL

    return HidDescriptor(
        path=f"sim:{label}",
        vid=SIM_VID,
        pid=SIM_PID,
        report_size_in=REPORT_SIZE,
        report_size_out=REPORT_SIZE,
        product_name=SOFTWARE_KEY_LABEL,
        serial_number=None,
    )


def open_hid(key: SoftKey, label: str | None = None) -> CtapHidDevice:
    """python-fido2's own CtapHidDevice, connected to the software key."""
    name = label or (str(key.path) if key.path else "memory")
    return CtapHidDevice(sim_descriptor(name), SimHidConnection(key))
