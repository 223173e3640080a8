"""The software key as a contactless FIDO card on the real PC/SC stack.

pcscd loads the vpcd reader driver (Debian package ``vsmartcard-vpcd``), which
listens on a TCP port (35963 by default) for a *virtual* card. This module is
that card: a TCP client speaking the vpicc protocol, with a FIDO applet that
implements the CTAP 2.1 NFC binding over ISO 7816-4 APDUs. Every PC/SC client
(python-fido2's ``CtapPcscDevice``, pyscard, ...) then talks to the software
key exactly as to an NFC key on a reader.

The vpicc protocol: each message is a 2-byte big-endian length, then the
payload. A 1-byte payload is a control message (0 power off, 1 power on,
2 reset, 4 get ATR; only "get ATR" is answered). Any other payload is a
C-APDU, answered with an R-APDU.

Layers, top to bottom:

- :class:`VirtualCard` owns the socket: connects (and reconnects) to vpcd,
  frames messages, handles the control messages.
- :class:`FidoApplet` is the card's logic, transport-free: one C-APDU in,
  one R-APDU out (SELECT, command chaining, GET RESPONSE, NFCCTAP_MSG and
  NFCCTAP_GETRESPONSE with keepalives and cancel).
- The CTAP processor (``keyadmin.sim.authenticator.SoftKey``) turns a CTAP2
  request (command byte + CBOR) into a response (status byte + CBOR).
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

logger = logging.getLogger(__name__)

LOG_LEVEL_TRAFFIC = 5  # the level python-fido2 uses for raw traffic; below DEBUG

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 35963  # vpcd's first slot in Debian's /etc/reader.conf.d/vpcd

FIDO_AID = bytes.fromhex("A0000006472F0001")
SELECT_RESPONSE = b"FIDO_2_0"  # CTAP2-only authenticator (no U2F over NFC)

# Control messages of the vpicc protocol.
VPICC_POWER_OFF = 0
VPICC_POWER_ON = 1
VPICC_RESET = 2
VPICC_GET_ATR = 4

MAX_WIRE_MESSAGE = 0xFFFF  # the vpicc length prefix is 16 bits
MAX_COMMAND_DATA = 0xFFFF  # limit for data assembled by command chaining

# Instruction classes and instructions.
CLA_ISO = 0x00
CLA_PROPRIETARY = 0x80
CLA_CHAINING = 0x10
INS_SELECT = 0xA4
INS_GET_RESPONSE = 0xC0
INS_NFCCTAP_MSG = 0x10
INS_NFCCTAP_GETRESPONSE = 0x11
NFCCTAP_MSG_P1_GETRESPONSE_OK = 0x80  # the client accepts NFCCTAP_GETRESPONSE polling
NFCCTAP_GETRESPONSE_P1_CANCEL = 0x11

CTAP2_ERR_KEEPALIVE_CANCEL = 0x2D
CTAP1_ERR_OTHER = 0x7F
KEEPALIVE_PROCESSING = 1
KEEPALIVE_UPNEEDED = 2


class SW(IntEnum):
    """ISO 7816-4 status words the applet uses."""

    OK = 0x9000
    NFCCTAP_UPDATE = 0x9100  # CTAP NFC binding: still processing, poll with GETRESPONSE
    WRONG_LENGTH = 0x6700
    LAST_COMMAND_OF_CHAIN_EXPECTED = 0x6883
    CONDITIONS_NOT_SATISFIED = 0x6985
    FILE_NOT_FOUND = 0x6A82
    INCORRECT_P1P2 = 0x6A86
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00


class CtapProcessor(Protocol):
    """What the card needs from the software key (``SoftKey`` satisfies it)."""

    def process(
        self,
        request: bytes,
        *,
        keepalive: Callable[[int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> bytes: ...

    def power_cycle(self) -> None: ...


class ApduError(Exception):
    """A C-APDU the applet refuses; ``sw`` is the status word to answer."""

    def __init__(self, sw: int, reason: str) -> None:
        super().__init__(f"{sw:04X}: {reason}")
        self.sw = sw
        self.reason = reason


@dataclass(frozen=True)
class CommandApdu:
    """A parsed ISO 7816-4 command APDU.

    ``ne`` is the maximum response length the client expects (Le decoded: a
    short Le of 0 means 256, an extended Le of 0 means 65536), or None when
    the APDU has no Le field.
    """

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    ne: int | None
    extended: bool

    @property
    def chained(self) -> bool:
        return bool(self.cla & CLA_CHAINING)

    @property
    def base_cla(self) -> int:
        return self.cla & ~CLA_CHAINING & 0xFF


def parse_apdu(raw: bytes) -> CommandApdu:
    """Parse the four ISO 7816-4 cases, short and extended.

    Raises :class:`ApduError` with 6700 (wrong length) when the length fields
    do not match the APDU's size.
    """
    n = len(raw)
    if n < 4:
        raise ApduError(SW.WRONG_LENGTH, f"{n}-byte APDU is shorter than its header")
    cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
    body = raw[4:]
    if not body:  # case 1
        return CommandApdu(cla, ins, p1, p2, b"", None, False)
    if len(body) == 1:  # case 2S
        return CommandApdu(cla, ins, p1, p2, b"", body[0] or 256, False)
    if body[0] != 0:  # case 3S / 4S
        lc = body[0]
        if len(body) == 1 + lc:
            return CommandApdu(cla, ins, p1, p2, bytes(body[1:]), None, False)
        if len(body) == 2 + lc:
            return CommandApdu(cla, ins, p1, p2, bytes(body[1 : 1 + lc]), body[-1] or 256, False)
        raise ApduError(SW.WRONG_LENGTH, f"short Lc {lc} does not match {len(body) - 1} data bytes")
    # body[0] == 0 and at least 2 bytes: extended length
    if len(body) == 3:  # case 2E
        le = int.from_bytes(body[1:3], "big")
        return CommandApdu(cla, ins, p1, p2, b"", le or 65536, True)
    if len(body) < 3:
        raise ApduError(SW.WRONG_LENGTH, "truncated extended length field")
    lc = int.from_bytes(body[1:3], "big")
    if lc == 0:
        raise ApduError(SW.WRONG_LENGTH, "extended Lc of 0")
    if len(body) == 3 + lc:  # case 3E
        return CommandApdu(cla, ins, p1, p2, bytes(body[3:]), None, True)
    if len(body) == 5 + lc:  # case 4E
        le = int.from_bytes(body[-2:], "big")
        return CommandApdu(cla, ins, p1, p2, bytes(body[3 : 3 + lc]), le or 65536, True)
    raise ApduError(SW.WRONG_LENGTH, f"extended Lc {lc} does not match {len(body) - 3} data bytes")


def contactless_atr(historical: bytes) -> bytes:
    """The ATR a PC/SC reader builds for an ISO 14443-4 card (PC/SC part 3, 3.1.3.2.3).

    ``3B 8n 80 01 <historical bytes> TCK``, with TCK the XOR of T0 through the
    last historical byte.
    """
    if len(historical) > 15:
        raise ValueError("at most 15 historical bytes fit in an ATR")
    body = bytes([0x80 | len(historical), 0x80, 0x01]) + historical
    tck = 0
    for b in body:
        tck ^= b
    return b"\x3b" + body + bytes([tck])


# Compact-TLV historical bytes: category 0x80; card capabilities (tag 7, length 3):
# selection by full/partial DF name, extended Lc/Le and command chaining supported;
# card issuer's data (tag 5) naming the software key.
DEFAULT_HISTORICAL_BYTES = bytes.fromhex("8073C021C0") + bytes([0x58]) + b"keyadmin"
DEFAULT_ATR = contactless_atr(DEFAULT_HISTORICAL_BYTES)


def _sw_bytes(sw: int) -> bytes:
    return sw.to_bytes(2, "big")


class _Operation:
    """One CTAP request running in a worker thread, with its keepalive status."""

    def __init__(self, processor: CtapProcessor, request: bytes) -> None:
        self._processor = processor
        self._request = request
        self.status = KEEPALIVE_PROCESSING
        self.cancel = threading.Event()
        self.done = threading.Event()
        self.result = b""
        self._thread = threading.Thread(
            target=self._run, name=f"softkey-ctap-0x{request[0]:02x}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def _keepalive(self, status: int) -> None:
        if status in (KEEPALIVE_PROCESSING, KEEPALIVE_UPNEEDED):
            self.status = status
        else:
            logger.warning("ignoring keepalive status %r from the CTAP processor", status)

    def _run(self) -> None:
        try:
            self.result = self._processor.process(
                self._request, keepalive=self._keepalive, cancel=self.cancel
            )
            if not self.result:
                logger.error("the CTAP processor returned an empty response")
                self.result = bytes([CTAP1_ERR_OTHER])
        except Exception:
            logger.exception("the CTAP processor failed on command 0x%02x", self._request[0])
            self.result = bytes([CTAP1_ERR_OTHER])
        finally:
            self.done.set()

    def wait(self, timeout: float | None) -> bool:
        return self.done.wait(timeout)

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()


class FidoApplet:
    """The FIDO applet of the virtual card: one C-APDU in, one R-APDU out.

    Transport-free, so the APDU rules can be exercised without pcscd. Not
    thread-safe: one caller (the card's socket loop) feeds it.

    ``keepalive_wait`` is how long NFCCTAP_MSG (with P1 0x80) and
    NFCCTAP_GETRESPONSE wait for the request to finish before answering a
    keepalive (``<status> 91 00``).
    """

    def __init__(
        self,
        processor: CtapProcessor,
        *,
        keepalive_wait: float = 0.1,
        cancel_grace: float = 2.0,
    ) -> None:
        self._processor = processor
        self._keepalive_wait = keepalive_wait
        self._cancel_grace = cancel_grace
        self._selected = False
        self._chain_header: tuple[int, int, int, int] | None = None
        self._chain_data = bytearray()
        self._pending = b""  # response bytes left for GET RESPONSE
        self._pending_sw: int = SW.OK
        self._operation: _Operation | None = None

    @property
    def selected(self) -> bool:
        return self._selected

    # -- power -------------------------------------------------------------

    def power_cycle(self) -> None:
        """Card reset, power loss or removal: abort everything, deselect, tell the key."""
        self._abort_operation()
        self._selected = False
        self._reset_buffers()
        self._processor.power_cycle()

    def shutdown(self) -> None:
        """Stop serving: cancel a running request (without a power cycle of the key)."""
        self._abort_operation()
        self._reset_buffers()

    def _reset_buffers(self) -> None:
        self._chain_header = None
        self._chain_data.clear()
        self._pending = b""
        self._pending_sw = SW.OK

    def _abort_operation(self) -> None:
        op = self._operation
        self._operation = None
        if op is None or op.done.is_set():
            return
        op.cancel.set()
        if not op.join(self._cancel_grace):
            logger.warning(
                "the CTAP request did not stop within %.1f s of its cancellation",
                self._cancel_grace,
            )

    # -- APDU dispatch -----------------------------------------------------

    def handle(self, raw: bytes, stop: threading.Event | None = None) -> bytes:
        """Answer one C-APDU. ``stop`` ends a blocking wait when the card shuts down."""
        try:
            apdu = parse_apdu(raw)
            return self._dispatch(apdu, stop)
        except ApduError as e:
            logger.debug("refusing APDU %s: %s", raw[:8].hex(), e)
            self._chain_header = None
            self._chain_data.clear()
            return _sw_bytes(e.sw)

    def _dispatch(self, apdu: CommandApdu, stop: threading.Event | None) -> bytes:
        base_cla = apdu.base_cla
        if base_cla == CLA_ISO:
            supported: tuple[int, ...] = (INS_SELECT, INS_GET_RESPONSE)
        elif base_cla == CLA_PROPRIETARY:
            supported = (INS_NFCCTAP_MSG, INS_NFCCTAP_GETRESPONSE)
        else:
            raise ApduError(SW.CLA_NOT_SUPPORTED, f"class 0x{apdu.cla:02x}")
        if apdu.ins not in supported:
            raise ApduError(SW.INS_NOT_SUPPORTED, f"instruction 0x{apdu.ins:02x}")

        if base_cla == CLA_ISO and apdu.ins == INS_GET_RESPONSE and not apdu.chained:
            return self._get_response(apdu)
        # Any other command ends a pending GET RESPONSE sequence.
        self._pending = b""

        header = (base_cla, apdu.ins, apdu.p1, apdu.p2)
        if self._chain_header is not None and self._chain_header != header:
            self._chain_header = None
            self._chain_data.clear()
            if apdu.ins != INS_SELECT:
                raise ApduError(SW.LAST_COMMAND_OF_CHAIN_EXPECTED, "command chain interrupted")
        if apdu.chained:
            if len(self._chain_data) + len(apdu.data) > MAX_COMMAND_DATA:
                raise ApduError(SW.WRONG_LENGTH, "chained data too long")
            self._chain_header = header
            self._chain_data += apdu.data
            return _sw_bytes(SW.OK)
        data = apdu.data
        if self._chain_header is not None:
            data = bytes(self._chain_data) + data
            self._chain_header = None
            self._chain_data.clear()

        if apdu.ins == INS_SELECT:
            return self._select(apdu, data)
        if not self._selected:
            raise ApduError(SW.CONDITIONS_NOT_SATISFIED, "the FIDO applet is not selected")
        if apdu.ins == INS_NFCCTAP_MSG:
            return self._nfcctap_msg(apdu, data, stop)
        return self._nfcctap_getresponse(apdu)

    # -- responses ---------------------------------------------------------

    def _respond(self, apdu: CommandApdu, data: bytes, sw: int = SW.OK) -> bytes:
        """Data plus status word; what does not fit the short Le waits for GET RESPONSE."""
        if apdu.extended:
            limit = MAX_WIRE_MESSAGE - 2
        else:
            limit = apdu.ne or 256
        if len(data) <= limit:
            return data + _sw_bytes(sw)
        self._pending = data[limit:]
        self._pending_sw = sw
        return data[:limit] + bytes([0x61, min(len(self._pending), 256) & 0xFF])

    def _get_response(self, apdu: CommandApdu) -> bytes:
        if apdu.p1 or apdu.p2:
            raise ApduError(SW.INCORRECT_P1P2, "GET RESPONSE takes P1 = P2 = 0")
        if not self._pending:
            raise ApduError(SW.CONDITIONS_NOT_SATISFIED, "no response data waiting")
        data, sw = self._pending, self._pending_sw
        self._pending = b""
        return self._respond(apdu, data, sw)

    def _select(self, apdu: CommandApdu, aid: bytes) -> bytes:
        if apdu.p1 != 0x04 or apdu.p2 not in (0x00, 0x0C):
            raise ApduError(SW.INCORRECT_P1P2, "only SELECT by DF name is supported")
        if aid != FIDO_AID:
            raise ApduError(SW.FILE_NOT_FOUND, f"no applet with AID {aid.hex()}")
        self._abort_operation()
        self._selected = True
        logger.debug("FIDO applet selected")
        if apdu.p2 == 0x0C:  # no response data requested
            return _sw_bytes(SW.OK)
        return self._respond(apdu, SELECT_RESPONSE)

    def _nfcctap_msg(
        self, apdu: CommandApdu, request: bytes, stop: threading.Event | None
    ) -> bytes:
        if apdu.p1 not in (0x00, NFCCTAP_MSG_P1_GETRESPONSE_OK) or apdu.p2 != 0:
            raise ApduError(SW.INCORRECT_P1P2, "NFCCTAP_MSG takes P1 0x00 or 0x80, P2 0")
        if not request:
            raise ApduError(SW.WRONG_LENGTH, "NFCCTAP_MSG without a CTAP request")
        running = self._operation
        if running is not None and not running.done.is_set():
            raise ApduError(SW.CONDITIONS_NOT_SATISFIED, "a CTAP request is still running")
        op = _Operation(self._processor, request)
        self._operation = op
        logger.debug("CTAP command 0x%02x (%d bytes)", request[0], len(request))
        op.start()
        if apdu.p1 & NFCCTAP_MSG_P1_GETRESPONSE_OK:
            return self._result_or_keepalive(apdu, op)
        # The client cannot poll: hold the answer until the key is done.
        while not op.wait(0.1):
            if stop is not None and stop.is_set():
                op.cancel.set()
                op.wait(self._cancel_grace)
                break
        return self._collect(apdu, op)

    def _nfcctap_getresponse(self, apdu: CommandApdu) -> bytes:
        if apdu.p1 not in (0x00, NFCCTAP_GETRESPONSE_P1_CANCEL) or apdu.p2 != 0:
            raise ApduError(SW.INCORRECT_P1P2, "NFCCTAP_GETRESPONSE takes P1 0x00 or 0x11, P2 0")
        op = self._operation
        if op is None:
            raise ApduError(SW.CONDITIONS_NOT_SATISFIED, "no CTAP request to poll")
        if apdu.p1 == NFCCTAP_GETRESPONSE_P1_CANCEL:
            logger.debug("client cancelled the CTAP request")
            op.cancel.set()
        return self._result_or_keepalive(apdu, op)

    def _result_or_keepalive(self, apdu: CommandApdu, op: _Operation) -> bytes:
        if op.wait(self._keepalive_wait):
            return self._collect(apdu, op)
        return bytes([op.status]) + _sw_bytes(SW.NFCCTAP_UPDATE)

    def _collect(self, apdu: CommandApdu, op: _Operation) -> bytes:
        self._operation = None
        if not op.done.is_set():
            return bytes([CTAP2_ERR_KEEPALIVE_CANCEL]) + _sw_bytes(SW.OK)
        logger.debug("CTAP status 0x%02x (%d bytes)", op.result[0], len(op.result))
        return self._respond(apdu, op.result)


class VirtualCard:
    """A contactless FIDO card for the software key, connected to vpcd over TCP.

    ``run(stop)`` serves until ``stop`` is set, reconnecting whenever vpcd is
    not there yet or drops the connection (pcscd restarted). Closing the
    connection is what a card removal looks like to pcscd. ``start()`` and
    ``stop()`` run it in a background thread.
    """

    def __init__(
        self,
        softkey: CtapProcessor,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        atr: bytes = DEFAULT_ATR,
        *,
        keepalive_wait: float = 0.1,
        reconnect_delay: float = 0.2,
    ) -> None:
        if not 2 <= len(atr) <= 33:
            raise ValueError("an ATR is 2 to 33 bytes")
        self.softkey = softkey
        self.host = host
        self.port = port
        self.atr = atr
        self._applet = FidoApplet(softkey, keepalive_wait=keepalive_wait)
        self._reconnect_delay = reconnect_delay
        self._stop = threading.Event()
        self._sock_lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()

    def __repr__(self) -> str:
        return f"VirtualCard({self.host}:{self.port})"

    # -- background thread helpers ----------------------------------------

    def start(self) -> threading.Thread:
        """Serve in a daemon thread until :meth:`stop`."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("the virtual card is already running")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.serve_forever, name=f"vpicc-{self.port}", daemon=True
        )
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving (to pcscd: the card is removed) and wait for the thread."""
        self._stop.set()
        with self._sock_lock:
            if self._sock is not None:
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("the virtual card thread did not stop within %.1f s", timeout)

    def serve_forever(self) -> None:
        """Serve until :meth:`stop` is called."""
        self.run(self._stop)

    # -- the vpicc client --------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Serve vpcd until ``stop`` is set, reconnecting as needed."""
        try:
            while not stop.is_set():
                sock = self._connect(stop)
                if sock is None:
                    break
                with self._sock_lock:
                    self._sock = sock
                self.connected.set()
                try:
                    self._serve_connection(sock, stop)
                except OSError as e:
                    logger.info("connection to vpcd at %s:%d lost: %s", self.host, self.port, e)
                finally:
                    self.connected.clear()
                    with self._sock_lock:
                        self._sock = None
                    sock.close()
                    # To the key, losing the reader is losing power.
                    self._applet.power_cycle()
        finally:
            self._applet.shutdown()
            logger.info("virtual card for vpcd at %s:%d stopped", self.host, self.port)

    def _connect(self, stop: threading.Event) -> socket.socket | None:
        delay = self._reconnect_delay
        reported = False
        while not stop.is_set():
            try:
                sock = socket.create_connection((self.host, self.port), timeout=2.0)
            except OSError as e:
                if not reported:
                    logger.info(
                        "waiting for vpcd at %s:%d (%s); is pcscd running with the vpcd driver?",
                        self.host,
                        self.port,
                        e.strerror or e,
                    )
                    reported = True
                stop.wait(delay)
                delay = min(delay * 2, 1.0)
                continue
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _quickack(sock)
            logger.info("virtual card connected to vpcd at %s:%d", self.host, self.port)
            return sock
        return None

    def _serve_connection(self, sock: socket.socket, stop: threading.Event) -> None:
        buf = bytearray()
        with selectors.DefaultSelector() as sel:
            sel.register(sock, selectors.EVENT_READ)
            while not stop.is_set():
                if not sel.select(timeout=0.2):
                    continue
                chunk = sock.recv(MAX_WIRE_MESSAGE + 2)
                # Linux turns quick-ACK mode off again by itself: re-arm it after each read,
                # or vpcd's split length/payload writes stall ~40 ms on delayed ACKs.
                _quickack(sock)
                if not chunk:
                    if not stop.is_set():
                        logger.info("vpcd closed the connection")
                    return
                buf += chunk
                while len(buf) >= 2:
                    size = int.from_bytes(buf[:2], "big")
                    if len(buf) < 2 + size:
                        break
                    message = bytes(buf[2 : 2 + size])
                    del buf[: 2 + size]
                    reply = self._handle_message(message, stop)
                    if reply is not None:
                        if len(reply) > MAX_WIRE_MESSAGE:
                            logger.error("reply of %d bytes does not fit vpicc", len(reply))
                            reply = _sw_bytes(SW.WRONG_LENGTH)
                        sock.sendall(len(reply).to_bytes(2, "big") + reply)

    def _handle_message(self, message: bytes, stop: threading.Event) -> bytes | None:
        if len(message) == 1:
            code = message[0]
            if code == VPICC_GET_ATR:
                return self.atr
            if code == VPICC_POWER_ON:
                logger.debug("power on")
            elif code in (VPICC_POWER_OFF, VPICC_RESET):
                logger.debug("power off" if code == VPICC_POWER_OFF else "reset")
                self._applet.power_cycle()
            else:
                logger.warning("unknown vpicc control message %d", code)
            return None
        if not message:
            logger.warning("empty vpicc message ignored")
            return None
        logger.log(LOG_LEVEL_TRAFFIC, "C-APDU %s", message.hex())
        reply = self._applet.handle(message, stop)
        logger.log(LOG_LEVEL_TRAFFIC, "R-APDU %s", reply.hex())
        return reply


def _quickack(sock: socket.socket) -> None:
    quickack = getattr(socket, "TCP_QUICKACK", None)  # Linux only
    if quickack is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)
        except OSError:
            pass


def serve_pcsc(
    softkey: CtapProcessor,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    stop_event: threading.Event | None = None,
) -> None:
    """Serve ``softkey`` as a contactless card to vpcd at ``host:port`` until ``stop_event``.

    Blocks. Without ``stop_event`` it serves until interrupted (KeyboardInterrupt
    propagates after the card is shut down). pcscd must be running with the vpcd
    reader driver (Debian: ``apt-get install pcscd vsmartcard-vpcd``).
    """
    card = VirtualCard(softkey, host=host, port=port)
    name = getattr(softkey, "product_name", type(softkey).__name__)
    logger.info("serving %s as a contactless card to vpcd at %s:%d", name, host, port)
    card.run(stop_event if stop_event is not None else threading.Event())
