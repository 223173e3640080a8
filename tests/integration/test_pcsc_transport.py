"""The software key over the REAL PC/SC stack: pcscd + vpcd + keyadmin.sim.pcsc.VirtualCard.

The client side is unmodified: python-fido2's CtapPcscDevice / Fido2Client, and
raw pyscard for the APDUs python-fido2 would never send. The APDU trace comes
from python-fido2's own traffic log (logger "fido2.pcsc"), so the tests can
check WHICH path a call took (command chaining, GET RESPONSE, extended APDUs,
NFCCTAP_GETRESPONSE polling), not only that it worked.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from keyadmin.sim.pcsc import DEFAULT_ATR
from keyadmin.sim.pcscd import wait_for_card

pytestmark = pytest.mark.pcsc

ORIGIN = "https://keyadmin.example"
RP = {"id": "keyadmin.example", "name": "keyadmin integration tests"}
USER = {"id": b"user-0001", "name": "alice@keyadmin.example", "displayName": "Alice"}
ES256 = [{"type": "public-key", "alg": -7}]
PIN = "246810"
CTAP_MAKE_CREDENTIAL = 0x01
TRAFFIC = 5  # python-fido2's LOG_LEVEL_TRAFFIC


# --------------------------------------------------------------------------- helpers


class Trace:
    """The APDUs python-fido2 exchanged, read from its traffic log."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self._caplog = caplog

    def _records(self, prefix: str) -> list[Any]:
        return [
            r
            for r in self._caplog.records
            if r.name == "fido2.pcsc" and isinstance(r.msg, str) and r.msg.startswith(prefix)
        ]

    @property
    def sent(self) -> list[bytes]:
        return [bytes.fromhex(r.args[0]) for r in self._records("SEND")]

    @property
    def status_words(self) -> list[int]:
        return [(r.args[1] << 8) | r.args[2] for r in self._records("RECV")]

    def clear(self) -> None:
        self._caplog.clear()


@pytest.fixture
def trace(caplog: pytest.LogCaptureFixture) -> Trace:
    caplog.set_level(TRAFFIC, logger="fido2.pcsc")
    return Trace(caplog)


@pytest.fixture
def device(pcsc_softkey: Any) -> Iterator[Any]:
    dev = pcsc_softkey.open_device()
    try:
        yield dev
    finally:
        with contextlib.suppress(Exception):  # the card may be gone (removal test)
            dev.close(release=True)


@contextlib.contextmanager
def slow_make_credential(softkey: Any, seconds: float) -> Iterator[None]:
    """The software key's own "slow" fault: makeCredential takes ``seconds``, with keepalives."""
    state = softkey.state
    saved = (list(state.faults), list(state.fault_commands), state.fault_delay)
    state.faults = [*state.faults, "slow"]
    state.fault_commands = [CTAP_MAKE_CREDENTIAL]
    state.fault_delay = seconds
    try:
        yield
    finally:
        state.faults, state.fault_commands, state.fault_delay = saved


def long_exclude_list(count: int = 8, id_length: int = 64) -> list[dict[str, Any]]:
    """Credentials the key never made: makeCredential still succeeds, the request grows."""
    return [
        {"type": "public-key", "id": hashlib.sha512(bytes([i])).digest()[:id_length]}
        for i in range(count)
    ]


def make_credential(ctap2: Any, **kwargs: Any) -> Any:
    return ctap2.make_credential(hashlib.sha256(b"client data").digest(), RP, USER, ES256, **kwargs)


def raw_connection(pcsc_softkey: Any) -> Any:
    from smartcard.System import readers

    matches = [r for r in readers() if pcsc_softkey.reader_name in str(r)]
    assert len(matches) == 1, matches
    conn = matches[0].createConnection()
    conn.connect()
    return conn


def transmit(conn: Any, apdu_hex: str) -> tuple[bytes, str]:
    data, sw1, sw2 = conn.transmit(list(bytes.fromhex(apdu_hex.replace(" ", ""))))
    return bytes(data), f"{sw1:02X}{sw2:02X}"


# --------------------------------------------------------------------------- tests


def test_python_fido2_finds_the_card_and_reads_get_info(pcsc_softkey: Any) -> None:
    from fido2.ctap2 import Ctap2
    from fido2.pcsc import CtapPcscDevice

    devices = list(CtapPcscDevice.list_devices(pcsc_softkey.reader_name))
    try:
        assert len(devices) == 1
        dev = devices[0]
        assert dev.get_atr() == DEFAULT_ATR
        info = Ctap2(dev).get_info()
        assert info.aaguid == pcsc_softkey.softkey.aaguid
        assert "FIDO_2_0" in info.versions
    finally:
        for dev in devices:
            dev.close(release=True)


def test_long_request_is_sent_with_short_apdu_command_chaining(device: Any, trace: Trace) -> None:
    from fido2.ctap2 import Ctap2

    ctap2 = Ctap2(device)
    trace.clear()
    response = make_credential(ctap2, exclude_list=long_exclude_list())

    assert response.auth_data.credential_data is not None
    sent = trace.sent
    chained = [a for a in sent if a[0] == 0x90 and a[1] == 0x10]
    assert len(chained) >= 2, [a[:5].hex() for a in sent]  # > 500 bytes: at least 3 blocks
    assert all(len(a) == 5 + 250 for a in chained)
    last = sent[len(chained)]
    assert last[:4] == bytes.fromhex("80108000")  # the chain's last block, then polling


def test_long_response_is_fetched_with_get_response(device: Any, trace: Trace) -> None:
    from fido2.ctap2 import Ctap2

    ctap2 = Ctap2(device)
    trace.clear()
    response = make_credential(ctap2)  # packed attestation with a 2-certificate x5c

    assert len(response.att_stmt["x5c"]) >= 1
    assert any(sw >> 8 == 0x61 for sw in trace.status_words)
    assert any(a[:4] == bytes.fromhex("00C00000") for a in trace.sent)


def test_extended_apdus(device: Any, trace: Trace) -> None:
    from fido2.ctap2 import Ctap2

    device.use_ext_apdu = True
    ctap2 = Ctap2(device)
    trace.clear()
    assert ctap2.get_info().aaguid
    response = make_credential(ctap2, exclude_list=long_exclude_list())

    assert response.auth_data.credential_data is not None
    sent = trace.sent
    assert not [a for a in sent if a[0] & 0x10], "no command chaining with extended APDUs"
    assert not [a for a in sent if a[:2] == b"\x00\xc0"], "no GET RESPONSE with extended APDUs"
    assert not [sw for sw in trace.status_words if sw >> 8 == 0x61]
    big = [a for a in sent if a[:4] == bytes.fromhex("80108000") and len(a) > 261]
    assert big and big[0][4] == 0x00  # the extended-length marker


def test_slow_key_answers_keepalives_through_nfcctap_getresponse(
    pcsc_softkey: Any, device: Any, trace: Trace
) -> None:
    from fido2.ctap import STATUS
    from fido2.ctap2 import Ctap2

    ctap2 = Ctap2(device)
    statuses: list[int] = []
    trace.clear()
    with slow_make_credential(pcsc_softkey.softkey, 0.6):
        started = time.monotonic()
        response = make_credential(ctap2, on_keepalive=statuses.append)
        elapsed = time.monotonic() - started

    assert response.auth_data.credential_data is not None
    assert elapsed >= 0.6
    # python-fido2 reports each change of status once; PROCESSING may come first on a busy box.
    assert STATUS.UPNEEDED in statuses
    assert set(statuses) <= {STATUS.PROCESSING, STATUS.UPNEEDED}
    assert 0x9100 in trace.status_words
    assert any(a[:4] == bytes.fromhex("80110000") for a in trace.sent)


def test_cancel_stops_a_slow_request(pcsc_softkey: Any, device: Any, trace: Trace) -> None:
    from fido2.ctap import CtapError
    from fido2.ctap2 import Ctap2

    ctap2 = Ctap2(device)
    cancel = threading.Event()
    trace.clear()
    with slow_make_credential(pcsc_softkey.softkey, 10.0):
        started = time.monotonic()
        with pytest.raises(CtapError) as raised:
            make_credential(ctap2, event=cancel, on_keepalive=lambda _status: cancel.set())
        elapsed = time.monotonic() - started

    assert raised.value.code == CtapError.ERR.KEEPALIVE_CANCEL
    assert elapsed < 2.0
    assert any(a[:4] == bytes.fromhex("80111100") for a in trace.sent)  # P1 0x11: cancel
    # The card is usable right away.
    assert Ctap2(device).get_info().aaguid == pcsc_softkey.softkey.aaguid


def test_card_removed_mid_command_raises_card_connection_exception(
    pcsc_softkey: Any, device: Any
) -> None:
    """What a client sees when the key leaves the reader during a request.

    python-fido2 does not wrap it: pyscard's ``CardConnectionException``
    (smartcard.Exceptions) surfaces from ``CtapPcscDevice.call``, not a
    ``CtapError``. It comes from the next NFCCTAP_GETRESPONSE poll; the text
    says "Transaction failed. (0x80100016)" (SCARD_E_NOT_TRANSACTED: vpcd lost
    its card during the transmit) or, when pcscd's presence poll noticed the
    removal first, "Card was removed. (0x80100069)" (SCARD_W_REMOVED_CARD).
    """
    from fido2.ctap2 import Ctap2
    from smartcard.Exceptions import CardConnectionException

    ctap2 = Ctap2(device)
    removed: list[float] = []

    def remove_card(_status: int) -> None:
        if not removed:
            removed.append(time.monotonic())
            pcsc_softkey.card.stop()

    try:
        with slow_make_credential(pcsc_softkey.softkey, 5.0):
            with pytest.raises(CardConnectionException) as raised:
                make_credential(ctap2, on_keepalive=remove_card)
        assert removed
        assert time.monotonic() - removed[0] < 2.0
        assert "0x80100016" in str(raised.value) or "0x80100069" in str(raised.value)
        wait_for_card(pcsc_softkey.reader_name, 10.0, present=False)
    finally:
        with contextlib.suppress(Exception):
            device.close(release=True)
        pcsc_softkey.insert()

    # Tapped again: the same key answers a new session.
    dev = pcsc_softkey.open_device()
    try:
        assert Ctap2(dev).get_info().aaguid == pcsc_softkey.softkey.aaguid
    finally:
        dev.close(release=True)


SELECT_FIDO = "00 A4 04 00 08 A0000006472F0001 00"


@pytest.mark.parametrize(
    ("before_select", "apdu", "expected_sw"),
    [
        (True, "80 10 00 00 01 04 00", "6985"),  # NFCCTAP_MSG before SELECT
        (True, "80 11 00 00 00", "6985"),  # NFCCTAP_GETRESPONSE before SELECT
        (True, "00 A4 04 00 08 A0000006472F0002 00", "6A82"),  # another AID
        (True, "00 A4 04 00 05 A000000308 00", "6A82"),  # the PIV AID
        (False, "00 A4 00 00 02 3F00", "6A86"),  # SELECT by file ID
        (False, "A0 10 00 00 01 04 00", "6E00"),  # unknown class
        (False, "00 B0 00 00 00", "6D00"),  # READ BINARY
        (False, "80 12 00 00 00", "6D00"),  # unknown proprietary instruction
        (False, "80 10 80 00", "6700"),  # NFCCTAP_MSG without a request
        (False, "80 10 80 00 05 04 00", "6700"),  # Lc 5, 2 bytes follow
        (False, "80 10 80 00 00 00 05 04", "6700"),  # extended Lc 5, 1 byte follows
        (False, "80 10 80 00 00 00", "6700"),  # truncated extended length
        (False, "80 10 01 00 01 04 00", "6A86"),  # bad P1
        (False, "80 10 80 01 01 04 00", "6A86"),  # bad P2
        (False, "80 11 00 00 00", "6985"),  # nothing to poll
        (False, "80 11 42 00 00", "6A86"),  # bad GETRESPONSE P1
        (False, "00 C0 00 00 00", "6985"),  # GET RESPONSE with nothing pending
        (False, "00 C0 01 00 00", "6A86"),  # GET RESPONSE with P1 != 0
    ],
)
def test_malformed_apdus_get_the_right_status_words(
    pcsc_softkey: Any, before_select: bool, apdu: str, expected_sw: str
) -> None:
    conn = raw_connection(pcsc_softkey)  # a new connection powers the card up: nothing selected
    try:
        if not before_select:
            assert transmit(conn, SELECT_FIDO) == (b"FIDO_2_0", "9000")
        assert transmit(conn, apdu)[1] == expected_sw
        # The applet still works afterwards.
        if before_select:
            assert transmit(conn, SELECT_FIDO)[1] == "9000"
        data, sw = transmit(conn, "80 10 00 00 01 04 00")
        assert data[:1] == b"\x00" and (sw == "9000" or sw.startswith("61")), (data[:4], sw)
    finally:
        conn.release()


def test_interrupted_command_chain_is_refused(pcsc_softkey: Any) -> None:
    conn = raw_connection(pcsc_softkey)
    try:
        assert transmit(conn, SELECT_FIDO)[1] == "9000"
        assert transmit(conn, "90 10 80 00 02 A4 01")[1] == "9000"  # first block of a chain
        assert transmit(conn, "80 11 00 00 00")[1] == "6883"  # last command of chain expected
        # A complete chain works: getInfo's command byte in a chained block, then the last block.
        assert transmit(conn, "90 10 00 00 01 04")[1] == "9000"
        data, sw = transmit(conn, "80 10 00 00 00")
        assert data[:1] == b"\x00" and (sw == "9000" or sw.startswith("61"))
    finally:
        conn.release()


def test_raw_get_info_with_short_le_pages_through_get_response(pcsc_softkey: Any) -> None:
    conn = raw_connection(pcsc_softkey)
    try:
        assert transmit(conn, SELECT_FIDO)[1] == "9000"
        data, sw = transmit(conn, "80 10 00 00 01 04 10")  # Le = 16
        pages = [data]
        while sw.startswith("61"):
            data, sw = transmit(conn, "00 C0 00 00 10")
            pages.append(data)
        assert sw == "9000"
        assert len(pages) > 2
        assert all(len(page) == 16 for page in pages[:-1])
        full, _ = transmit(conn, "80 10 00 00 00 00 01 04 00 00")  # extended: all at once
        assert b"".join(pages) == full
    finally:
        conn.release()


class _TrustTheSoftKeyRoot:
    """python-fido2's AttestationVerifier, trusting one software key's lab root."""

    def __init__(self, root_pem: str) -> None:
        from fido2.attestation import AttestationVerifier

        root_der = x509.load_pem_x509_certificate(root_pem.encode()).public_bytes(Encoding.DER)

        class Verifier(AttestationVerifier):
            def ca_lookup(self, attestation_result: Any, auth_data: Any) -> bytes:
                return root_der

        self.verifier = Verifier()
        self.calls = 0

    def __call__(self, attestation_object: Any, client_data_hash: bytes) -> None:
        self.calls += 1
        self.verifier.verify_attestation(attestation_object, client_data_hash)


def test_fido2_client_registers_and_authenticates_with_pin(
    pcsc_softkey: Any, tmp_path: Path
) -> None:
    from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
    from fido2.ctap2 import Ctap2
    from fido2.ctap2.pin import ClientPin
    from fido2.server import Fido2Server

    from keyadmin.sim.authenticator import SoftKey

    key = SoftKey.create(tmp_path / "pin-key.json")

    class Operator(UserInteraction):
        def __init__(self) -> None:
            self.pin_requests = 0

        def request_pin(self, permissions: Any, rp_id: str | None) -> str | None:
            self.pin_requests += 1
            return PIN

    with pcsc_softkey.swapped(key):
        dev = pcsc_softkey.open_device()
        try:
            ClientPin(Ctap2(dev)).set_pin(PIN)
            operator = Operator()
            client = Fido2Client(dev, DefaultClientDataCollector(ORIGIN), operator)
            verify = _TrustTheSoftKeyRoot(key.root_certificate_pem())
            server = Fido2Server(RP, attestation="direct", verify_attestation=verify)

            creation, reg_state = server.register_begin(
                USER, user_verification="required", authenticator_attachment="cross-platform"
            )
            registration = client.make_credential(creation.public_key)
            auth_data = server.register_complete(reg_state, registration)

            assert verify.calls == 1
            assert registration.response.attestation_object.fmt == "packed"
            assert auth_data.is_user_verified()
            assert auth_data.credential_data is not None
            assert auth_data.credential_data.aaguid == key.aaguid

            request, auth_state = server.authenticate_begin(
                [auth_data.credential_data], user_verification="required"
            )
            assertion = client.get_assertion(request.public_key).get_response(0)
            server.authenticate_complete(auth_state, [auth_data.credential_data], assertion)

            signed = assertion.response.authenticator_data
            assert signed.is_user_verified()
            assert signed.counter > auth_data.counter
            assert operator.pin_requests >= 1  # the PIN came from the interaction callback
        finally:
            dev.close(release=True)


def test_a_second_pcscd_is_refused_while_one_runs(pcscd_service: Any, tmp_path: Path) -> None:
    from keyadmin.sim.pcscd import PcscdAlreadyRunning, PrivatePcscd

    second = PrivatePcscd(port=pcscd_service.port + 10, workdir=tmp_path)
    with pytest.raises(PcscdAlreadyRunning) as raised:
        second.start()
    assert "only one pcscd" in raised.value.message
    assert not second.running
    assert pcscd_service.running
