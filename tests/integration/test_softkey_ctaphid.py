"""CTAPHID framing of the software key, packet by packet (what python-fido2 never sends wrong)."""

from __future__ import annotations

import os
import struct

from keyadmin.sim.authenticator import SoftKey
from keyadmin.sim.hid import SimHidConnection

BROADCAST = 0xFFFFFFFF
INIT, PING, CBOR, ERROR, KEEPALIVE = 0x86, 0x81, 0x90, 0xBF, 0xBB


def _packet(cid: int, cmd: int, payload: bytes, length: int | None = None) -> bytes:
    n = len(payload) if length is None else length
    return struct.pack(">IBH", cid, cmd, n).ljust(7, b"\0") + payload.ljust(57, b"\0")[:57]


def _cont(cid: int, seq: int, payload: bytes) -> bytes:
    return (struct.pack(">IB", cid, seq) + payload).ljust(64, b"\0")


def _open(tmp_path) -> tuple[SimHidConnection, int]:
    conn = SimHidConnection(SoftKey.create(tmp_path / "k.json"))
    nonce = os.urandom(8)
    conn.write_packet(_packet(BROADCAST, INIT, nonce))
    reply = conn.read_packet()
    assert reply[:4] == b"\xff\xff\xff\xff" and reply[4] == INIT
    assert reply[7:15] == nonce
    cid = struct.unpack(">I", reply[15:19])[0]
    assert cid not in (0, BROADCAST) and reply[19] == 2  # CTAPHID protocol version 2
    assert reply[23] & 0x04 and reply[23] & 0x08  # CBOR, and NMSG: no CTAP1/U2F
    return conn, cid


def _error_code(conn: SimHidConnection, cid: int) -> int:
    reply = conn.read_packet()
    assert struct.unpack(">I", reply[:4])[0] == cid and reply[4] == ERROR, reply[:8].hex()
    return reply[7]


def test_init_allocates_a_channel_and_ping_spans_packets(tmp_path) -> None:
    conn, cid = _open(tmp_path)
    data = os.urandom(100)
    conn.write_packet(_packet(cid, PING, data[:57], length=100))
    conn.write_packet(_cont(cid, 0, data[57:]))
    first, second = conn.read_packet(), conn.read_packet()
    assert first[4] == PING and struct.unpack(">H", first[5:7])[0] == 100
    assert first[7:] + second[5 : 5 + 43] == data


def test_unknown_channel_and_channel_zero_are_refused(tmp_path) -> None:
    conn, cid = _open(tmp_path)
    conn.write_packet(_packet(cid ^ 0x1234, PING, b"x"))
    assert _error_code(conn, cid ^ 0x1234) == 0x0B  # ERR_INVALID_CHANNEL
    conn.write_packet(_packet(0, PING, b"x"))
    assert _error_code(conn, 0) == 0x0B


def test_wrong_sequence_number_is_refused(tmp_path) -> None:
    conn, cid = _open(tmp_path)
    conn.write_packet(_packet(cid, PING, b"a" * 57, length=100))
    conn.write_packet(_cont(cid, 1, b"b" * 43))  # should be 0
    assert _error_code(conn, cid) == 0x04  # ERR_INVALID_SEQ


def test_too_long_message_and_unknown_command(tmp_path) -> None:
    conn, cid = _open(tmp_path)
    conn.write_packet(_packet(cid, PING, b"", length=7610))
    assert _error_code(conn, cid) == 0x03  # ERR_INVALID_LEN
    conn.write_packet(_packet(cid, 0x83, b"\x00\x01\x00\x00"))  # MSG: U2F is not offered
    assert _error_code(conn, cid) == 0x01  # ERR_INVALID_CMD


def test_busy_while_a_slow_request_runs_then_cancel(tmp_path) -> None:
    key = SoftKey.create(
        tmp_path / "slow.json", faults=["slow"], fault_commands=[0x04], fault_delay=5.0
    )
    conn = SimHidConnection(key)
    conn.write_packet(_packet(BROADCAST, INIT, b"12345678"))
    cid = struct.unpack(">I", conn.read_packet()[15:19])[0]
    conn.write_packet(_packet(BROADCAST, INIT, b"87654321"))
    other = struct.unpack(">I", conn.read_packet()[15:19])[0]
    conn.write_packet(_packet(cid, CBOR, b"\x04"))  # getInfo, slow
    first = conn.read_packet()
    assert first[4] == KEEPALIVE and first[7] == 2  # UPNEEDED
    conn.write_packet(_packet(other, PING, b"x"))
    # keepalives may interleave; the busy error for the other channel must come
    while True:
        reply = conn.read_packet()
        if struct.unpack(">I", reply[:4])[0] == other:
            assert reply[4] == ERROR and reply[7] == 0x06  # ERR_CHANNEL_BUSY
            break
    conn.write_packet(_packet(cid, 0x91, b""))  # CANCEL
    while True:
        reply = conn.read_packet()
        if reply[4] == CBOR:
            assert reply[7] == 0x2D  # CTAP2_ERR_KEEPALIVE_CANCEL
            break
    conn.close()


def test_a_message_whose_continuation_never_comes_times_out(tmp_path) -> None:
    """CTAPHID: a partly received message is abandoned after the transaction timeout with
    ERR_MSG_TIMEOUT, and the channel works again (before: the key waited for the missing
    packets forever, which hung the lab when the kernel dropped the last reports)."""
    import time

    conn, cid = _open(tmp_path)
    conn.write_packet(_packet(cid, PING, b"a" * 57, length=100))  # its continuation is lost
    started = time.monotonic()
    assert _error_code(conn, cid) == 0x05  # ERR_MSG_TIMEOUT
    assert time.monotonic() - started < 5
    data = os.urandom(100)  # a slow but timely continuation still completes the message
    conn.write_packet(_packet(cid, PING, data[:57], length=100))
    time.sleep(0.3)
    conn.write_packet(_cont(cid, 0, data[57:]))
    first, second = conn.read_packet(), conn.read_packet()
    assert first[4] == PING and first[7:] + second[5 : 5 + 43] == data
