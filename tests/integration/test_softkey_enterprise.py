"""The software key's enterprise attestation (CTAP 2.1 §6.1.2 step 9, §7.1), over USB HID and
over PC/SC through the real pcscd + vpcd: vendor-facilitated only for the RP IDs in its state,
platform-facilitated when asked, an attestation certificate of its own carrying the key's serial
in id-fido-gen-ce-sernum, and epAtt only when an enterprise attestation was given."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from fido2.ctap import CtapError
from fido2.ctap2 import Config, Ctap2

from keyadmin.sim.authenticator import SoftKey

ERR = CtapError.ERR
SERNUM = x509.ObjectIdentifier("1.3.6.1.4.1.45724.1.1.2")
LISTED = "corp.example"
UNLISTED = "elsewhere.example"


def _args(rp_id: str) -> tuple[Any, ...]:
    return (b"\0" * 32, {"id": rp_id}, {"id": b"u"}, [{"type": "public-key", "alg": -7}])


@contextlib.contextmanager
def _device(transport: str, key: SoftKey, request: pytest.FixtureRequest) -> Iterator[Any]:
    if transport == "hid":
        from keyadmin.sim.hid import open_hid

        dev = open_hid(key)
        try:
            yield dev
        finally:
            dev.close()
        return
    pcsc = request.getfixturevalue("pcsc_softkey")
    with pcsc.swapped(key) as card:
        dev = card.open_device()
        try:
            yield dev
        finally:
            with contextlib.suppress(Exception):
                dev.close(release=True)


@pytest.fixture(params=["hid", pytest.param("pcsc", marks=pytest.mark.pcsc)])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _new_key(tmp_path: Path, name: str = "ea.json", **ep: Any) -> SoftKey:
    from keyadmin.sim.enterprise import configure

    key = SoftKey.create(tmp_path / name)
    configure(key, **ep)
    return key


def _leaf(resp: Any) -> x509.Certificate:
    return x509.load_der_x509_certificate(resp.att_stmt["x5c"][0])


def _sernum(cert: x509.Certificate) -> bytes | None:
    try:
        ext = cert.extensions.get_extension_for_oid(SERNUM)
    except x509.ExtensionNotFound:
        return None
    value = ext.value.value  # type: ignore[attr-defined]
    assert value[0] == 0x04 and value[1] == len(value) - 2  # an OCTET STRING
    return bytes(value[2:])


def test_vendor_facilitated_for_a_listed_rp_gives_the_enterprise_certificate(
    tmp_path, transport, request
) -> None:
    key = _new_key(tmp_path, rp_ids=[LISTED], serial=12345678)
    with _device(transport, key, request) as dev:
        ctap = Ctap2(dev)
        Config(ctap).enable_enterprise_attestation()
        batch = ctap.make_credential(*_args(LISTED))
        resp = ctap.make_credential(*_args(LISTED), enterprise_attestation=1)
    assert resp.ep_att is True
    leaf = _leaf(resp)
    assert _sernum(leaf) == (12345678).to_bytes(4, "big")
    assert _sernum(_leaf(batch)) is None and batch.ep_att is None
    assert leaf.serial_number != _leaf(batch).serial_number
    # the enterprise certificate still chains to the key's intermediate and names the AAGUID
    inter = x509.load_der_x509_certificate(resp.att_stmt["x5c"][1])
    leaf.verify_directly_issued_by(inter)


def test_vendor_facilitated_for_an_unlisted_rp_is_a_plain_attestation(
    tmp_path, transport, request
) -> None:
    key = _new_key(tmp_path, rp_ids=[LISTED])
    with _device(transport, key, request) as dev:
        ctap = Ctap2(dev)
        Config(ctap).enable_enterprise_attestation()
        resp = ctap.make_credential(*_args(UNLISTED), enterprise_attestation=1)
    assert not resp.ep_att  # CTAP 2.1 §6.1.2: a non-enterprise attestation, no epAtt
    assert _sernum(_leaf(resp)) is None


def test_platform_facilitated_gives_it_for_any_rp(tmp_path, transport, request) -> None:
    key = _new_key(tmp_path, rp_ids=[])
    with _device(transport, key, request) as dev:
        ctap = Ctap2(dev)
        Config(ctap).enable_enterprise_attestation()
        resp = ctap.make_credential(*_args(UNLISTED), enterprise_attestation=2)
    assert resp.ep_att is True
    assert _sernum(_leaf(resp)) == key.state.serial.to_bytes(4, "big")


def test_enterprise_attestation_needs_enabling_and_a_known_mode(tmp_path) -> None:
    from keyadmin.sim.hid import open_hid

    key = _new_key(tmp_path, rp_ids=[LISTED])
    ctap = Ctap2(open_hid(key))
    with pytest.raises(CtapError) as e:
        ctap.make_credential(*_args(LISTED), enterprise_attestation=1)
    assert e.value.code == ERR.INVALID_PARAMETER
    Config(ctap).enable_enterprise_attestation()
    with pytest.raises(CtapError) as e:
        ctap.make_credential(*_args(LISTED), enterprise_attestation=3)
    assert e.value.code == ERR.INVALID_OPTION


def test_every_key_has_its_own_serial_and_keeps_it(tmp_path) -> None:
    from keyadmin.sim.hid import open_hid

    serials = set()
    for n in range(3):
        key = _new_key(tmp_path, f"k{n}.json", rp_ids=[LISTED])
        ctap = Ctap2(open_hid(key))
        Config(ctap).enable_enterprise_attestation()
        first = _sernum(_leaf(ctap.make_credential(*_args(LISTED), enterprise_attestation=1)))
        reopened = SoftKey.open(tmp_path / f"k{n}.json")
        ctap = Ctap2(open_hid(reopened))
        again = _sernum(_leaf(ctap.make_credential(*_args(LISTED), enterprise_attestation=1)))
        assert first == again
        serials.add(first)
    assert len(serials) == 3


def test_sim_init_takes_the_rp_ids_and_serial(tmp_path) -> None:
    from tests.e2e.cli import invoke

    state = tmp_path / "cli.json"
    out = invoke(
        "sim", "init", "--state", str(state), "--ep-rp-id", LISTED, "--ep-rp-id", "b.example",
        "--serial", "40000001", "--json",
    )  # fmt: skip
    assert out.code == 0, out.stderr
    import json

    shown = json.loads(out.stdout)
    assert shown["serial"] == 40000001 and shown["ep_rp_ids"] == [LISTED, "b.example"]
    key = SoftKey.open(state)
    assert key.state.ep_rp_ids == [LISTED, "b.example"] and key.state.serial == 40000001
