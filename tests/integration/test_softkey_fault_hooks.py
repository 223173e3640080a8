"""The software key's fault hooks (keyadmin.sim.faults): each fault still shows, and the same
key state behind ``NoFaults`` is a clean CTAP 2.1 key.

Each case makes two real software keys from ONE state file: the key as ``keyadmin sim`` opens
it (``StateFaults``: the faults the file names) and the same state behind ``NoFaults()``. They
are driven over python-fido2's own CTAPHID code (``open_hid``), or through ``process`` where
the fault is in the raw reply bytes; the check must see the fault on the first key and not on
the second.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from fido2 import cbor
from fido2.attestation import InvalidData, InvalidSignature, PackedAttestation
from fido2.ctap import CtapError
from fido2.ctap2 import AttestationResponse, Ctap2
from fido2.webauthn import ResidentKeyRequirement, UserVerificationRequirement

from keyadmin.sim.authenticator import SoftKey
from keyadmin.sim.faults import FaultHooks, NoFaults, StateFaults
from keyadmin.sim.hid import open_hid
from keyadmin.sim.state import FAULTS, load_state
from tests.integration.test_softkey_faults import LabRoot
from tests.webauthn_helpers import RP_ID, make_client, register

OID_AAGUID = x509.ObjectIdentifier("1.3.6.1.4.1.45724.1.1.4")
FLAG_UP = 0x01
NO_UV = {"uv": UserVerificationRequirement.DISCOURAGED, "rk": ResidentKeyRequirement.DISCOURAGED}
ES256 = [{"type": "public-key", "alg": -7}]


def _mc_request(cdh: bytes) -> bytes:
    params = {1: cdh, 2: {"id": RP_ID}, 3: {"id": b"user-1", "name": "u"}, 4: ES256}
    return b"\x01" + cbor.encode(params)


def _make(key: SoftKey) -> tuple[bytes, AttestationResponse]:
    cdh = os.urandom(32)
    return cdh, Ctap2(open_hid(key)).make_credential(cdh, {"id": RP_ID}, {"id": b"u"}, ES256)


def _assertions(key: SoftKey, count: int) -> list[tuple[bytes, bytes, bytes]]:
    """(authData, signature, clientDataHash) of ``count`` assertions with one new credential."""
    ctap = Ctap2(open_hid(key))
    made = ctap.make_credential(os.urandom(32), {"id": RP_ID}, {"id": b"u"}, ES256)
    cred_id = made.auth_data.credential_data.credential_id
    out = []
    for _ in range(count):
        cdh = os.urandom(32)
        got = ctap.get_assertion(RP_ID, cdh, [{"type": "public-key", "id": cred_id}])
        out.append((bytes(got.auth_data), got.signature, cdh))
    return out


# Each check answers: does the fault show on this key?
def _reply_not_cbor(key: SoftKey) -> bool:
    reply = key.process(_mc_request(os.urandom(32)))
    assert reply[0] == 0
    try:
        cbor.decode(reply[1:])
    except (ValueError, IndexError, KeyError):
        return True
    return False


def _wrong_rp_id_hash(key: SoftKey) -> bool:
    want = hashlib.sha256(RP_ID.encode()).digest()
    _, made = _make(key)
    got = [bytes(made.auth_data)[:32]] + [a[:32] for a, _, _ in _assertions(key, 1)]
    assert len({g == want for g in got}) == 1  # makeCredential and getAssertion agree
    return got[0] != want


def _bad_signatures(key: SoftKey) -> bool:
    cdh, made = _make(key)
    try:
        PackedAttestation().verify(made.att_stmt, made.auth_data, cdh)
        attestation_ok = True
    except InvalidSignature:
        attestation_ok = False
    ctap = Ctap2(open_hid(key))
    made = ctap.make_credential(os.urandom(32), {"id": RP_ID}, {"id": b"u"}, ES256)
    public = made.auth_data.credential_data.public_key
    cdh = os.urandom(32)
    allow = [{"type": "public-key", "id": made.auth_data.credential_data.credential_id}]
    got = ctap.get_assertion(RP_ID, cdh, allow)
    try:
        public.verify(bytes(got.auth_data) + cdh, got.signature)
        assertion_ok = True
    except Exception:  # noqa: BLE001 - cryptography's InvalidSignature
        assertion_ok = False
    assert attestation_ok == assertion_ok  # both signatures are spoiled, or neither
    return not attestation_ok


def _cert_aaguid_mismatch(key: SoftKey) -> bool:
    cdh, made = _make(key)
    try:
        PackedAttestation().verify(made.att_stmt, made.auth_data, cdh)
    except InvalidData as e:
        assert "AAGUID" in str(e)
        return True
    return False


def _leaf(key: SoftKey) -> x509.Certificate:
    _, made = _make(key)
    return x509.load_der_x509_certificate(made.att_stmt["x5c"][0])


def _no_cert_aaguid(key: SoftKey) -> bool:
    try:
        _leaf(key).extensions.get_extension_for_oid(OID_AAGUID)
    except x509.ExtensionNotFound:
        return True
    return False


def _up_cleared(key: SoftKey) -> bool:
    _, made = _make(key)
    flags = [made.auth_data.flags] + [a[32] for a, _, _ in _assertions(key, 1)]
    assert len({f & FLAG_UP for f in flags}) == 1
    return not flags[0] & FLAG_UP


def _ctap_error(key: SoftKey) -> bool:
    reply = key.process(_mc_request(os.urandom(32)))
    return reply == bytes([0x2E])


def _slow(key: SoftKey) -> bool:
    seen: list[int] = []
    t0 = time.monotonic()
    Ctap2(open_hid(key)).make_credential(
        os.urandom(32), {"id": RP_ID}, {"id": b"u"}, ES256, on_keepalive=seen.append
    )
    if seen:  # a slow reply sends keepalives while it waits, a prompt one none
        assert time.monotonic() - t0 >= 0.4
    return bool(seen)


def _counter_goes_back(key: SoftKey) -> bool:
    counters = [int.from_bytes(a[33:37], "big") for a, _, _ in _assertions(key, 4)]
    return any(b <= a for a, b in zip(counters, counters[1:], strict=False))


@dataclass(frozen=True)
class Case:
    name: str
    options: dict[str, object]
    shows: Callable[[SoftKey], bool]


CASES = [
    Case("malformed-cbor", {"faults": ["malformed-cbor"]}, _reply_not_cbor),
    Case("truncated", {"faults": ["truncated"]}, _reply_not_cbor),
    Case("wrong-rpid-hash", {"faults": ["wrong-rpid-hash"]}, _wrong_rp_id_hash),
    Case("bad-signature", {"faults": ["bad-signature"]}, _bad_signatures),
    Case("cert-aaguid-mismatch", {"faults": ["cert-aaguid-mismatch"]}, _cert_aaguid_mismatch),
    Case("no-cert-aaguid", {"faults": ["no-cert-aaguid"]}, _no_cert_aaguid),
    Case("clear-up-uv", {"faults": ["clear-up-uv"]}, _up_cleared),
    Case("ctap-error", {"faults": ["ctap-error"], "fault_ctap_error": 0x2E}, _ctap_error),
    Case("slow", {"faults": ["slow"], "fault_delay": 0.4}, _slow),
    Case("counter rollback", {"counter_mode": "rollback", "rollback_after": 2}, _counter_goes_back),
]


def test_every_fault_has_a_case() -> None:
    assert sorted(c.name for c in CASES if c.name in FAULTS) == sorted(FAULTS)


def _pair(path: Path, options: dict[str, object]) -> tuple[SoftKey, SoftKey]:
    """The key as ``keyadmin sim`` opens it, and the same state with no faults."""
    SoftKey.create(path, **options)
    faulty = SoftKey.open(path)
    clean = SoftKey(load_state(path), None, faults=NoFaults())
    return faulty, clean


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fault_hook_produces_its_fault_and_no_faults_does_not(tmp_path: Path, case: Case) -> None:
    faulty, clean = _pair(tmp_path / "key.json", case.options)
    assert isinstance(faulty.faults, StateFaults)
    assert case.shows(faulty), f"{case.name}: the fault did not show"
    assert not case.shows(clean), f"{case.name}: NoFaults still shows the fault"


def test_fault_list_is_read_at_each_command(key_path: Path) -> None:
    """A running key picks up a change of ``state.faults`` at its next command (tests turn a
    key bad after enrolment this way)."""
    key = SoftKey.create(key_path)
    assert not _bad_signatures(key)
    key.state.faults = ["bad-signature"]
    assert _bad_signatures(key)
    key.state.faults = []
    assert not _bad_signatures(key)


def test_ctap_error_and_reply_faults_hit_only_their_commands(key_path: Path) -> None:
    SoftKey.create(key_path, faults=["ctap-error", "truncated"], fault_commands=[0x04])
    key = SoftKey.open(key_path)
    assert key.process(b"\x04") == bytes([0x7F])  # getInfo: the configured error
    assert not _reply_not_cbor(key)  # makeCredential is not in fault_commands


def test_core_without_faults_passes_a_verified_ceremony(key_path: Path) -> None:
    """Every fault in the state file, NoFaults hooks: python-fido2's server accepts the
    registration (attestation verified to the key's lab root) and the assertion."""
    SoftKey.create(key_path, faults=list(FAULTS), counter_mode="rollback", rollback_after=1)
    key = SoftKey(load_state(key_path), None, faults=NoFaults())
    dev = open_hid(key)
    reg = register(dev, None, verify_attestation=LabRoot(key), **NO_UV)
    auth_data = reg.server.register_complete(reg.state, reg.response)
    cred = auth_data.credential_data
    last = auth_data.counter
    for _ in range(3):
        request, state = reg.server.authenticate_begin(
            [cred], user_verification=UserVerificationRequirement.DISCOURAGED
        )
        got = make_client(dev, None).get_assertion(request.public_key).get_response(0)
        reg.server.authenticate_complete(state, [cred], got)
        counter = got.response.authenticator_data.counter
        assert counter > last
        last = counter


def test_the_same_ceremony_fails_with_the_faults_on(key_path: Path) -> None:
    """The control for the test above: the hooks from the state file spoil it."""
    SoftKey.create(key_path, faults=["bad-signature"])
    key = SoftKey.open(key_path)
    reg = register(open_hid(key), None, verify_attestation=LabRoot(key), **NO_UV)
    with pytest.raises(InvalidSignature):
        reg.server.register_complete(reg.state, reg.response)


def test_no_faults_and_state_faults_are_fault_hooks(key_path: Path) -> None:
    key = SoftKey.create(key_path)
    hooks: list[FaultHooks] = [NoFaults(), StateFaults(key.state)]
    for h in hooks:
        assert h.before(0x04, None, None) is None
        assert h.reply(0x01, b"\x00\xa0") == b"\x00\xa0"
        assert h.signature(b"sig") == b"sig"
        assert h.flags(0x45) == 0x45
        assert h.rp_id(RP_ID) == RP_ID


def test_ctap_error_is_a_ctap_error_to_python_fido2(key_path: Path) -> None:
    SoftKey.create(key_path, faults=["ctap-error"], fault_ctap_error=0x31)
    with pytest.raises(CtapError) as e:
        _make(SoftKey.open(key_path))
    assert e.value.code == 0x31
