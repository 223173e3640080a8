"""The SOFTWARE key over python-fido2's own CTAPHID code: registration, PIN, management, reset."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from fido2.attestation import AttestationVerifier, PackedAttestation, UntrustedAttestation
from fido2.client import ClientError
from fido2.ctap import CtapError
from fido2.ctap2 import ClientPin, Config, CredentialManagement, Ctap2
from fido2.ctap2.pin import PinProtocolV1, PinProtocolV2
from fido2.webauthn import ResidentKeyRequirement, UserVerificationRequirement

from keyadmin.sim.authenticator import SoftKey
from keyadmin.sim.hid import open_hid
from tests.conftest import PIN
from tests.webauthn_helpers import ORIGIN, RP_ID, make_client, register

ERR = CtapError.ERR


def _root_der(key: SoftKey) -> bytes:
    return x509.load_pem_x509_certificate(key.root_certificate_pem().encode()).public_bytes(
        Encoding.DER
    )


class LabRootVerifier(AttestationVerifier):
    def __init__(self, root_der: bytes | None) -> None:
        super().__init__()
        self.root_der = root_der

    def ca_lookup(self, result, auth_data):  # type: ignore[no-untyped-def]
        return self.root_der


def test_get_info_is_ctap21(hid_device) -> None:
    info = Ctap2(hid_device).info
    assert info.versions == ["FIDO_2_0", "FIDO_2_1"]
    assert info.pin_uv_protocols == [2, 1]
    for option in ("rk", "up", "credMgmt", "authnrCfg", "setMinPINLength", "pinUvAuthToken"):
        assert info.options[option] is True, option
    assert info.options["clientPin"] is False
    assert info.options["alwaysUv"] is False and info.options["ep"] is False
    assert [a["alg"] for a in info.algorithms] == [-7, -8, -35, -257]  # as a YubiKey 5.7
    assert info.firmware_version == 0x050700
    assert info.min_pin_length == 4
    assert info.remaining_disc_creds == 25
    assert info.transports == ["usb", "nfc"]


def test_ctaphid_ping_and_wink(hid_device) -> None:
    payload = os.urandom(300)  # spans several continuation packets
    assert hid_device.ping(payload) == payload
    hid_device.wink()


def test_register_and_authenticate_with_pin_verified_by_pyfido2(softkey, hid_device) -> None:
    ClientPin(Ctap2(hid_device)).set_pin(PIN)
    reg = register(hid_device, PIN, verify_attestation=LabRootVerifier(_root_der(softkey)))
    auth_data = reg.server.register_complete(reg.state, reg.response)
    att = reg.response.response.attestation_object
    assert att.fmt == "packed" and len(att.att_stmt["x5c"]) == 2
    assert auth_data.is_user_verified() and auth_data.is_user_present()
    assert not auth_data.flags & auth_data.FLAG.BE
    cred = auth_data.credential_data
    assert str(cred.aaguid) == softkey.state.aaguid
    # python-fido2's packed verifier, with the chain checked up to the lab root
    result = PackedAttestation().verify(
        att.att_stmt, att.auth_data, reg.response.response.client_data.hash
    )
    assert result.attestation_type.name == "BASIC"

    client = make_client(hid_device, PIN)
    request, state = reg.server.authenticate_begin(
        [cred], user_verification=UserVerificationRequirement.REQUIRED
    )
    assertion = client.get_assertion(request.public_key).get_response(0)
    reg.server.authenticate_complete(state, [cred], assertion)
    assert assertion.response.authenticator_data.is_user_verified()
    assert assertion.response.authenticator_data.counter > auth_data.counter


def test_untrusted_root_is_refused_by_pyfido2(softkey, hid_device) -> None:
    other = SoftKey.create(None)  # another lab PKI: its root must not vouch for this key
    ClientPin(Ctap2(hid_device)).set_pin(PIN)
    reg = register(hid_device, PIN, verify_attestation=LabRootVerifier(_root_der(other)))
    with pytest.raises(UntrustedAttestation):
        reg.server.register_complete(reg.state, reg.response)


def _pywebauthn_json(response) -> str:
    return json.dumps(dict(response))


def test_registration_verifies_in_py_webauthn(softkey, hid_device) -> None:
    from webauthn import verify_registration_response
    from webauthn.helpers.structs import AttestationFormat

    ClientPin(Ctap2(hid_device)).set_pin(PIN)
    reg = register(hid_device, PIN)
    verified = verify_registration_response(
        credential=_pywebauthn_json(reg.response),
        expected_challenge=reg.options.public_key.challenge,
        expected_origin=ORIGIN,
        expected_rp_id=RP_ID,
        require_user_verification=True,
        pem_root_certs_bytes_by_fmt={
            AttestationFormat.PACKED: [softkey.root_certificate_pem().encode()]
        },
    )
    assert verified.fmt == AttestationFormat.PACKED
    assert verified.user_verified
    assert str(verified.aaguid) == softkey.state.aaguid


def test_py_webauthn_refuses_another_root(softkey, hid_device) -> None:
    from webauthn import verify_registration_response
    from webauthn.helpers.exceptions import InvalidRegistrationResponse
    from webauthn.helpers.structs import AttestationFormat

    other = SoftKey.create(None)
    ClientPin(Ctap2(hid_device)).set_pin(PIN)
    reg = register(hid_device, PIN)
    with pytest.raises(InvalidRegistrationResponse):
        verify_registration_response(
            credential=_pywebauthn_json(reg.response),
            expected_challenge=reg.options.public_key.challenge,
            expected_origin=ORIGIN,
            expected_rp_id=RP_ID,
            pem_root_certs_bytes_by_fmt={
                AttestationFormat.PACKED: [other.root_certificate_pem().encode()]
            },
        )


@pytest.mark.parametrize("mode", ["self", "none", "fido-u2f"])
def test_other_attestation_modes_verify(key_path, mode) -> None:
    key = SoftKey.create(key_path, attestation=mode)
    dev = open_hid(key)
    reg = register(
        dev,
        None,
        uv=UserVerificationRequirement.DISCOURAGED,
        rk=ResidentKeyRequirement.DISCOURAGED,
        # python-fido2's verifier refuses the "none" format outright; the server alone accepts it
        verify_attestation=None if mode == "none" else LabRootVerifier(_root_der(key)),
    )
    att = reg.response.response.attestation_object
    assert att.fmt == {"self": "packed", "none": "none", "fido-u2f": "fido-u2f"}[mode]
    auth_data = reg.server.register_complete(reg.state, reg.response)
    if mode == "fido-u2f":
        assert auth_data.credential_data.aaguid == b"\0" * 16
    if mode == "self":
        assert "x5c" not in att.att_stmt


def test_eddsa_credential(softkey, hid_device) -> None:
    ctap = Ctap2(hid_device)
    cdh = hashlib.sha256(b"client data").digest()
    resp = ctap.make_credential(
        cdh, {"id": RP_ID}, {"id": b"u1", "name": "u1"}, [{"type": "public-key", "alg": -8}]
    )
    assert resp.auth_data.credential_data.public_key[3] == -8
    # a packed statement over the EdDSA credential, signed by the ES256 attestation leaf
    PackedAttestation().verify(resp.att_stmt, resp.auth_data, cdh)


# --------------------------------------------------------------------------- PIN
@pytest.mark.parametrize("protocol", [PinProtocolV1, PinProtocolV2])
def test_pin_set_change_and_token_both_protocols(hid_device, protocol) -> None:
    ctap = Ctap2(hid_device)
    cp = ClientPin(ctap, protocol())
    cp.set_pin(PIN)
    assert ctap.get_info().options["clientPin"] is True
    with pytest.raises(CtapError) as e:
        cp.set_pin("another-pin")  # a PIN exists already
    assert e.value.code == ERR.PIN_AUTH_INVALID
    cp.change_pin(PIN, "new-pin-77")
    token = cp.get_pin_token("new-pin-77", ClientPin.PERMISSION.CREDENTIAL_MGMT)
    assert len(token) == 32
    assert cp.get_pin_retries()[0] == 8


def test_pin_shorter_than_min_pin_length_is_refused_by_the_key(hid_device) -> None:
    ctap = Ctap2(hid_device)
    Config(ctap).set_min_pin_length(min_pin_length=8)  # no PIN yet: no token needed
    cp = ClientPin(ctap)
    with pytest.raises(CtapError) as e:
        cp.set_pin("1234567")  # python-fido2 only checks >= 4; the key enforces its minimum
    assert e.value.code == ERR.PIN_POLICY_VIOLATION


def test_pin_retries_block_after_three_and_lock_after_eight(softkey, key_path) -> None:
    dev = open_hid(softkey)
    cp = ClientPin(Ctap2(dev))
    cp.set_pin(PIN)
    codes = []
    for _ in range(3):
        with pytest.raises(CtapError) as e:
            cp.get_pin_token("wrong-pin")
        codes.append(e.value.code)
    assert codes == [ERR.PIN_INVALID, ERR.PIN_INVALID, ERR.PIN_AUTH_BLOCKED]
    assert cp.get_pin_retries() == (5, True)
    # Blocked until power cycle, even with the right PIN, and no retry is spent.
    with pytest.raises(CtapError) as e:
        cp.get_pin_token(PIN)
    assert e.value.code == ERR.PIN_AUTH_BLOCKED
    assert cp.get_pin_retries()[0] == 5

    # Power cycle = a new process opening the same state file.
    dev = open_hid(SoftKey.open(key_path))
    cp = ClientPin(Ctap2(dev))
    assert cp.get_pin_retries() == (5, False)
    cp.get_pin_token(PIN)  # the right PIN resets the counter
    assert cp.get_pin_retries()[0] == 8

    codes = []
    for i in range(8):
        if i and i % 3 == 0:
            dev = open_hid(SoftKey.open(key_path))
            cp = ClientPin(Ctap2(dev))
        with pytest.raises(CtapError) as e:
            cp.get_pin_token("wrong-pin")
        codes.append(e.value.code)
    assert codes[-1] == ERR.PIN_BLOCKED
    assert cp.get_pin_retries()[0] == 0
    dev = open_hid(SoftKey.open(key_path))
    with pytest.raises(CtapError) as e:
        ClientPin(Ctap2(dev)).get_pin_token(PIN)
    assert e.value.code == ERR.PIN_BLOCKED  # locked for good: only reset helps
    Ctap2(dev).reset()
    assert Ctap2(dev).get_info().options["clientPin"] is False


def test_client_with_wrong_pin_raises(softkey, hid_device) -> None:
    ClientPin(Ctap2(hid_device)).set_pin(PIN)
    with pytest.raises(ClientError) as e:
        register(hid_device, "not-the-pin")
    assert isinstance(e.value.cause, CtapError) and e.value.cause.code == ERR.PIN_INVALID
    assert ClientPin(Ctap2(hid_device)).get_pin_retries()[0] == 7


def test_make_credential_needs_uv_when_pin_set(hid_device) -> None:
    ctap = Ctap2(hid_device)
    ClientPin(ctap).set_pin(PIN)
    with pytest.raises(CtapError) as e:
        ctap.make_credential(
            b"\0" * 32,
            {"id": RP_ID},
            {"id": b"u"},
            [{"type": "public-key", "alg": -7}],
            options={"rk": True},
        )
    assert e.value.code == ERR.PUAT_REQUIRED


# --------------------------------------------------------------------------- management
def _token(dev, permission, rp_id=None) -> tuple[ClientPin, bytes]:
    cp = ClientPin(Ctap2(dev))
    return cp, cp.get_pin_token(PIN, permission, rp_id)


def test_credential_management(softkey, hid_device) -> None:
    ClientPin(Ctap2(hid_device)).set_pin(PIN)
    regs = [register(hid_device, PIN, user_name=name) for name in ("alice", "bob")]
    register(hid_device, PIN, rk=ResidentKeyRequirement.DISCOURAGED, user_name="carol")
    cp, token = _token(hid_device, ClientPin.PERMISSION.CREDENTIAL_MGMT)
    cm = CredentialManagement(Ctap2(hid_device), cp.protocol, token)
    meta = cm.get_metadata()
    assert meta[CredentialManagement.RESULT.EXISTING_CRED_COUNT] == 2  # carol is not discoverable
    assert meta[CredentialManagement.RESULT.MAX_REMAINING_COUNT] == 23
    rps = cm.enumerate_rps()
    assert [rp[CredentialManagement.RESULT.RP]["id"] for rp in rps] == [RP_ID]
    rp_hash = hashlib.sha256(RP_ID.encode()).digest()
    creds = cm.enumerate_creds(rp_hash)
    names = sorted(c[CredentialManagement.RESULT.USER]["name"] for c in creds)
    assert names == ["alice", "bob"]
    victim = next(c for c in creds if c[CredentialManagement.RESULT.USER]["name"] == "bob")
    cred_id = victim[CredentialManagement.RESULT.CREDENTIAL_ID]
    user = dict(victim[CredentialManagement.RESULT.USER])
    user["displayName"] = "Bob Renamed"
    cm.update_user_info(cred_id, user)
    after = cm.enumerate_creds(rp_hash)
    assert "Bob Renamed" in {c[CredentialManagement.RESULT.USER].get("displayName") for c in after}
    cm.delete_cred(cred_id)
    assert len(cm.enumerate_creds(rp_hash)) == 1
    with pytest.raises(CtapError) as e:
        cm.delete_cred(cred_id)
    assert e.value.code == ERR.NO_CREDENTIALS
    assert regs  # alice's registration still authenticates
    assert len(SoftKey.open(softkey.path).state.credentials) == 2  # persisted: alice + carol


def test_credential_management_needs_cm_permission(hid_device) -> None:
    ClientPin(Ctap2(hid_device)).set_pin(PIN)
    cp, token = _token(hid_device, ClientPin.PERMISSION.GET_ASSERTION, RP_ID)
    cm = CredentialManagement(Ctap2(hid_device), cp.protocol, token)
    with pytest.raises(CtapError) as e:
        cm.get_metadata()
    assert e.value.code == ERR.PIN_AUTH_INVALID


def test_config_always_uv_min_pin_length_and_ep(hid_device) -> None:
    ctap = Ctap2(hid_device)
    ClientPin(ctap).set_pin(PIN)
    cp, token = _token(hid_device, ClientPin.PERMISSION.AUTHENTICATOR_CFG)
    config = Config(ctap, cp.protocol, token)
    config.toggle_always_uv()
    config.set_min_pin_length(min_pin_length=10, rp_ids=[RP_ID], force_change_pin=True)
    config.enable_enterprise_attestation()
    info = ctap.get_info()
    assert info.options["alwaysUv"] is True and info.options["ep"] is True
    assert info.min_pin_length == 10 and info.force_pin_change is True
    with pytest.raises(CtapError) as e:  # forced change: no token until the PIN changes
        ClientPin(ctap).get_pin_token(PIN, ClientPin.PERMISSION.GET_ASSERTION, RP_ID)
    assert e.value.code == ERR.PIN_POLICY_VIOLATION  # 0x09; getPinToken (0x05): PIN_INVALID
    with pytest.raises(CtapError) as e:  # the new PIN must meet the new minimum
        ClientPin(ctap).change_pin(PIN, "short-9")
    assert e.value.code == ERR.PIN_POLICY_VIOLATION
    ClientPin(ctap).change_pin(PIN, "a-much-longer-pin")
    assert ctap.get_info().force_pin_change is False
    cp2 = ClientPin(ctap)
    token = cp2.get_pin_token("a-much-longer-pin", ClientPin.PERMISSION.AUTHENTICATOR_CFG)
    with pytest.raises(CtapError) as e:  # minPINLength never shrinks
        Config(ctap, cp2.protocol, token).set_min_pin_length(min_pin_length=6)
    assert e.value.code == ERR.PIN_POLICY_VIOLATION


def test_enterprise_attestation_needs_enabling(hid_device) -> None:
    ctap = Ctap2(hid_device)
    args = (b"\0" * 32, {"id": RP_ID}, {"id": b"u"}, [{"type": "public-key", "alg": -7}])
    with pytest.raises(CtapError) as e:
        ctap.make_credential(*args, enterprise_attestation=1)
    assert e.value.code == ERR.INVALID_PARAMETER
    Config(ctap).enable_enterprise_attestation()  # no PIN set: no token needed
    resp = ctap.make_credential(*args, enterprise_attestation=2)
    assert resp.ep_att is True
    # vendor-facilitated only for the RP IDs the key lists (none here): no epAtt
    assert not ctap.make_credential(*args, enterprise_attestation=1).ep_att


def test_exclude_list_and_cred_protect(hid_device) -> None:
    ClientPin(Ctap2(hid_device)).set_pin(PIN)
    reg = register(hid_device, PIN)
    cred = reg.server.register_complete(reg.state, reg.response).credential_data
    with pytest.raises(ClientError) as e:
        register(hid_device, PIN, exclude=[cred])
    assert e.value.cause.code == ERR.CREDENTIAL_EXCLUDED
    ctap = Ctap2(hid_device)
    resp = ctap.make_credential(
        b"\1" * 32,
        {"id": "cp.example"},
        {"id": b"u"},
        [{"type": "public-key", "alg": -7}],
        extensions={"credProtect": 3},
    )
    assert resp.auth_data.extensions == {"credProtect": 3}
    # uvRequired: invisible without user verification
    with pytest.raises(CtapError) as e2:
        ctap.get_assertion(
            "cp.example",
            b"\2" * 32,
            [{"type": "public-key", "id": resp.auth_data.credential_data.credential_id}],
        )
    assert e2.value.code == ERR.NO_CREDENTIALS


def test_get_next_assertion_iterates_discoverable(hid_device) -> None:
    ClientPin(Ctap2(hid_device)).set_pin(PIN)
    for name in ("a", "b", "c"):
        register(hid_device, PIN, user_name=name)
    client = make_client(hid_device, PIN)
    from fido2.webauthn import PublicKeyCredentialRequestOptions

    selection = client.get_assertion(
        PublicKeyCredentialRequestOptions(
            challenge=os.urandom(32),
            rp_id=RP_ID,
            user_verification=UserVerificationRequirement.REQUIRED,
        )
    )
    responses = selection.get_assertions()
    assert len(responses) == 3
    assert {r.user["name"] for r in responses} == {"a", "b", "c"}


def test_reset_wipes_credentials_and_pin(softkey, hid_device) -> None:
    ctap = Ctap2(hid_device)
    ClientPin(ctap).set_pin(PIN)
    register(hid_device, PIN)
    ctap.reset()
    info = ctap.get_info()
    assert info.options["clientPin"] is False and info.remaining_disc_creds == 25
    assert SoftKey.open(softkey.path).state.credentials == []


def test_selection(hid_device) -> None:
    Ctap2(hid_device).selection()


# --------------------------------------------------------------------------- counters
def _assert_counter(dev, cred) -> int:
    ctap = Ctap2(dev)
    resp = ctap.get_assertion(
        RP_ID, os.urandom(32), [{"type": "public-key", "id": cred.credential_id}]
    )
    return resp.auth_data.counter


def _plain_credential(dev):
    resp = Ctap2(dev).make_credential(
        os.urandom(32), {"id": RP_ID}, {"id": os.urandom(8)}, [{"type": "public-key", "alg": -7}]
    )
    return resp.auth_data.credential_data, resp.auth_data.counter


@pytest.mark.parametrize(
    ("mode", "extra", "expected"),
    [
        ("per-credential", {}, [1, 2, 3, 4, 5]),
        ("zero", {}, [0, 0, 0, 0, 0]),
        ("rollback", {"rollback_after": 3}, [1, 2, 3, 1, 2]),
    ],
)
def test_counter_modes(key_path, mode, extra, expected) -> None:
    dev = open_hid(SoftKey.create(key_path, counter_mode=mode, **extra))
    cred, first = _plain_credential(dev)
    assert [first] + [_assert_counter(dev, cred) for _ in range(4)] == expected


def test_global_counter_is_shared(key_path) -> None:
    dev = open_hid(SoftKey.create(key_path, counter_mode="global"))
    a, ca = _plain_credential(dev)
    b, cb = _plain_credential(dev)
    assert (ca, cb) == (1, 2)
    assert [_assert_counter(dev, a), _assert_counter(dev, b)] == [3, 4]


def test_copied_state_file_is_a_clone(key_path, tmp_path) -> None:
    dev = open_hid(SoftKey.create(key_path))
    cred, _ = _plain_credential(dev)
    assert _assert_counter(dev, cred) == 2
    clone_path = tmp_path / "clone.json"
    shutil.copy(key_path, clone_path)
    assert _assert_counter(dev, cred) == 3
    clone = open_hid(SoftKey.open(clone_path))
    assert _assert_counter(clone, cred) == 3  # the clone replays a counter already seen
    assert SoftKey.open(key_path).state.credentials[0].counter == 3


def test_state_file_is_private_and_survives_restart(key_path) -> None:
    key = SoftKey.create(key_path)
    dev = open_hid(key)
    cred, _ = _plain_credential(dev)
    assert oct(key_path.stat().st_mode & 0o777) == "0o600"
    again = open_hid(SoftKey.open(key_path))
    assert _assert_counter(again, cred) == 2


def test_backup_flags(key_path) -> None:
    dev = open_hid(SoftKey.create(key_path, backup_eligible=True, backed_up=True))
    resp = Ctap2(dev).make_credential(
        os.urandom(32), {"id": RP_ID}, {"id": b"u"}, [{"type": "public-key", "alg": -7}]
    )
    flags = resp.auth_data.flags
    assert flags & resp.auth_data.FLAG.BE and flags & resp.auth_data.FLAG.BS
