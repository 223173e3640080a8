"""The device port: the Device protocol, its ceremonies, their errors, the Interaction
protocol and the typed selector, on the real software key over python-fido2's own CTAPHID
client (no mocks)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from fido2.client import UserInteraction
from fido2.ctap2 import ClientPin
from fido2.webauthn import AttestationObject

from keyadmin.b64 import encode_url
from keyadmin.device.ceremony import (
    AssertionRequest,
    CredentialRequest,
    NewCredential,
    SignedAssertion,
)
from keyadmin.device.discovery import OPENERS, DeviceRef, Selector, open_device
from keyadmin.device.errors import CredentialExcluded, NoCredentials, UnsupportedAlgorithm
from keyadmin.device.interaction import Interaction, for_fido2
from keyadmin.device.port import Device
from keyadmin.device.session import DeviceSession
from keyadmin.errors import DeviceError, DeviceProtocolError, PinInvalid, UsageError
from keyadmin.sim.authenticator import SoftKey

PIN = "4821-lab"
RP = "keyadmin.example"
ORIGIN = f"https://{RP}"


class Desk:
    """An Interaction that is NOT python-fido2's UserInteraction: the protocol is enough."""

    def __init__(self, pin: str | None) -> None:
        self.pin = pin
        self.asked = 0
        self.touches = 0

    def prompt_up(self) -> None:
        self.touches += 1

    def request_pin(self, permissions: ClientPin.PERMISSION, rp_id: str | None) -> str | None:
        self.asked += 1
        return self.pin

    def request_uv(self, permissions: ClientPin.PERMISSION, rp_id: str | None) -> bool:
        return True

    def known_pin(self) -> str | None:
        return self.pin if self.asked else None


class BuggyDesk(Desk):
    """A PIN prompt with a bug of keyadmin's own: the key must not be blamed for it."""

    def request_pin(self, permissions: ClientPin.PERMISSION, rp_id: str | None) -> str | None:
        return {"pin": self.pin}["PIN"]  # KeyError raised in our code, inside fido2's call


def _session(path: Path, **kw: object) -> DeviceSession:
    SoftKey.create(path, **kw)  # type: ignore[arg-type]
    session = DeviceSession(*open_device(f"sim:{path}"))
    session.set_pin(PIN)
    return session


def _request(**kw: object) -> CredentialRequest:
    fields: dict[str, object] = {
        "rp_id": RP,
        "rp_name": "test",
        "origin": ORIGIN,
        "user_id": os.urandom(16),
        "user_name": "alice",
        "user_display_name": "Alice",
        "challenge": os.urandom(32),
        "algorithms": (-7,),
    }
    fields.update(kw)
    return CredentialRequest(**fields)  # type: ignore[arg-type]


def _assert_for(cred: NewCredential, challenge: bytes | None = None) -> AssertionRequest:
    return AssertionRequest(
        rp_id=RP,
        origin=ORIGIN,
        challenge=challenge or os.urandom(32),
        allow_credentials=(cred.credential_id,),
    )


def test_device_session_is_a_device_and_cli_interaction_an_interaction(key_path) -> None:
    from keyadmin.cli.interact import CliInteraction

    with _session(key_path) as session:
        device: Device = session  # mypy checks the protocol here, isinstance at run time
        assert isinstance(device, Device)
        assert device.ref == DeviceRef("sim", str(key_path), device.ref.product)
    pin_only: Interaction = CliInteraction(PIN)
    assert isinstance(pin_only, Interaction)
    assert not isinstance(object(), Interaction)


def test_make_credential_and_get_assertion_return_the_keys_own_bytes(key_path) -> None:
    desk = Desk(PIN)
    challenge = os.urandom(32)
    with _session(key_path) as session:
        made = session.make_credential(_request(challenge=challenge), desk)
        assert desk.asked == 1  # the PIN came through the port (asked once)
        signed = session.get_assertion(_assert_for(made, b"\x07" * 32), desk)
    assert isinstance(made, NewCredential) and isinstance(signed, SignedAssertion)
    att = AttestationObject(made.attestation_object)
    cred = att.auth_data.credential_data
    assert cred is not None
    assert made.credential_id == cred.credential_id and made.aaguid == str(cred.aaguid)
    assert made.fmt == att.fmt == "packed"
    assert made.client_data_challenge == challenge
    assert made.flags & 0x05 == 0x05  # UP and UV: user verification was required
    assert signed.credential_id == made.credential_id
    assert signed.authenticator_data[32] & 0x04  # UV
    # the signature is the key's over authData || SHA-256(clientDataJSON) of OUR challenge
    cred.public_key.verify(
        signed.authenticator_data + hashlib.sha256(signed.client_data_json).digest(),
        signed.signature,
    )
    assert json.loads(signed.client_data_json)["challenge"] == encode_url(b"\x07" * 32)


def test_the_key_refusals_come_back_as_typed_errors(key_path) -> None:
    desk = Desk(PIN)
    with _session(key_path) as session:
        made = session.make_credential(_request(), desk)
        with pytest.raises(CredentialExcluded) as excluded:
            session.make_credential(_request(exclude=(made.credential_id,)), desk)
        with pytest.raises(NoCredentials) as none:
            session.get_assertion(
                AssertionRequest(RP, ORIGIN, os.urandom(32), (os.urandom(32),)), desk
            )
    with _session(key_path.with_name("mldsa.key"), algorithms=[-48]) as only_mldsa:
        with pytest.raises(UnsupportedAlgorithm) as unsupported:
            only_mldsa.make_credential(_request(algorithms=(-7, -8)), desk)
    assert excluded.value.data["ctap"] == 0x19
    assert unsupported.value.data["ctap"] == 0x26
    assert none.value.data["ctap"] == 0x2E
    for e in (excluded.value, unsupported.value, none.value):  # exit code and class kept
        assert isinstance(e, DeviceProtocolError)
        assert e.message.startswith("the key refused the request: CTAP error ")


def test_a_wrong_pin_is_a_pin_error_not_a_fido2_error(key_path) -> None:
    with _session(key_path) as session, pytest.raises(PinInvalid):
        session.make_credential(_request(), Desk("0000-wrong"))


def test_a_malformed_reply_from_the_key_is_blamed_on_the_key(key_path) -> None:
    with _session(key_path, faults=["malformed-cbor"]) as session:
        with pytest.raises(DeviceProtocolError, match="malformed reply"):
            session.make_credential(_request(), Desk(PIN))


def test_a_bug_in_keyadmins_prompt_is_not_blamed_on_the_key(key_path) -> None:
    with _session(key_path) as session, pytest.raises(KeyError, match="PIN"):
        session.make_credential(_request(), BuggyDesk(PIN))


def test_for_fido2_passes_a_user_interaction_through_and_adapts_anything_else() -> None:
    from keyadmin.cli.interact import CliInteraction

    cli = CliInteraction(PIN)
    assert for_fido2(cli) is cli
    desk = Desk(PIN)
    adapted = for_fido2(desk)
    assert isinstance(adapted, UserInteraction)
    assert adapted.request_pin(ClientPin.PERMISSION.GET_ASSERTION, RP) == PIN
    adapted.prompt_up()
    assert (desk.asked, desk.touches) == (1, 1)


# ----------------------------------------------------------------------------- selectors
@pytest.mark.parametrize(
    "text", ["", "hid", "hid:", "usb:/dev/hidraw0", "sim", ":x", "HID:/dev/hidraw0"]
)
def test_a_bad_selector_is_a_usage_error_with_the_same_words(text) -> None:
    with pytest.raises(UsageError) as e:
        Selector.parse(text)
    assert e.value.message == f"bad --device value {text!r}"
    assert e.value.hint == "use hid:PATH, nfc:READER or sim:STATEFILE (see 'keyadmin device list')"


def test_a_selector_is_parsed_once_into_transport_and_target() -> None:
    assert Selector.parse("nfc:ACS ACR122U:0") == Selector("nfc", "ACS ACR122U:0")
    assert str(Selector.parse("sim:/tmp/a:b.key")) == "sim:/tmp/a:b.key"
    assert set(OPENERS) == {"hid", "nfc", "sim"}


def test_sim_and_hid_openers_keep_their_errors(tmp_path) -> None:
    missing = tmp_path / "none.key"
    with pytest.raises(DeviceError) as e:
        open_device(f"sim:{missing}")
    assert type(e.value) is DeviceError and str(missing) in e.value.message
    plain = tmp_path / "file"
    plain.write_text("")
    with pytest.raises(DeviceError, match=f"^{plain} is not a device node$"):
        open_device(f"hid:{plain}")
    with pytest.raises(DeviceError, match=f"^cannot open {tmp_path}/gone: "):
        open_device(Selector("hid", f"{tmp_path}/gone"))
