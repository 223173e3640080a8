"""The SOFTWARE key behaves like a current YubiKey 5 where python-fido2's device suite looks.

Each test names the CTAP 2.1 section (or the real-key behaviour) it pins; all run over
python-fido2's own CTAPHID code against the in-process key.
"""

from __future__ import annotations

import hashlib
import os
import struct

import pytest
from fido2 import cbor
from fido2.client import DefaultClientDataCollector, Fido2Client
from fido2.ctap import CtapError
from fido2.ctap2 import ClientPin, Config, CredentialManagement, Ctap2
from fido2.ctap2.blob import LargeBlobs
from fido2.ctap2.extensions import HmacSecretExtension
from fido2.server import Fido2Server
from fido2.utils import websafe_encode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import PIN
from tests.webauthn_helpers import ORIGIN, RP_ID, PinInteraction

ERR = CtapError.ERR
USER = {"id": b"user-ctap21", "name": "alice"}


def _config(ctap: Ctap2) -> Config:
    cp = ClientPin(ctap)
    token = cp.get_pin_token(PIN, ClientPin.PERMISSION.AUTHENTICATOR_CFG)
    return Config(ctap, cp.protocol, token)


def _client(device, pin: str = PIN, **kw) -> Fido2Client:  # type: ignore[no-untyped-def]
    return Fido2Client(
        device, DefaultClientDataCollector(ORIGIN), user_interaction=PinInteraction(pin), **kw
    )


def _register(device, extensions=None, *, rk="discouraged", alg=None, client=None):  # type: ignore[no-untyped-def]
    server = Fido2Server({"id": RP_ID, "name": "Example"})
    options, state = server.register_begin(
        USER, resident_key_requirement=rk, user_verification="required"
    )
    public_key = dict(options["publicKey"])
    if extensions is not None:
        public_key["extensions"] = extensions
    if alg is not None:
        public_key["pubKeyCredParams"] = [{"type": "public-key", "alg": alg}]
    result = (client or _client(device)).make_credential(public_key)
    return server, result, server.register_complete(state, result)


# ------------------------------------------------------------------ forced PIN change (§6.5.5.7)
def test_forced_pin_change_legacy_get_pin_token_answers_pin_invalid(hid_device) -> None:
    ctap = Ctap2(hid_device)
    ClientPin(ctap).set_pin(PIN)
    _config(ctap).set_min_pin_length(force_change_pin=True)
    cp = ClientPin(ctap)
    with pytest.raises(CtapError) as legacy:  # getPinToken (0x05): PIN_INVALID
        cp.get_pin_token(PIN)
    assert legacy.value.code == ERR.PIN_INVALID
    with pytest.raises(CtapError) as perms:  # getPinUvAuthTokenUsingPinWithPermissions (0x09)
        cp.get_pin_token(PIN, ClientPin.PERMISSION.GET_ASSERTION, RP_ID)
    assert perms.value.code == ERR.PIN_POLICY_VIOLATION
    # a right PIN refused for the forced change costs no retry
    assert cp.get_pin_retries()[0] == 8


# ------------------------------------------------------------------ minPinLength extension (§12.4)
def test_min_pin_length_extension_for_an_rp_on_the_list_only(hid_device) -> None:
    ctap = Ctap2(hid_device)
    ClientPin(ctap).set_pin(PIN)
    _config(ctap).set_min_pin_length(min_pin_length=6, rp_ids=[RP_ID])
    assert "minPinLength" in ctap.get_info().extensions
    _, _, auth = _register(hid_device, {"minPinLength": True})
    assert auth.extensions == {"minPinLength": 6}
    assert auth.flags & auth.FLAG.ED

    other = Fido2Server({"id": "other.example.com", "name": "Other"})
    options, state = other.register_begin(USER, user_verification="required")
    client = Fido2Client(
        hid_device,
        DefaultClientDataCollector("https://other.example.com"),
        user_interaction=PinInteraction(PIN),
    )
    result = client.make_credential({**options["publicKey"], "extensions": {"minPinLength": True}})
    assert not other.register_complete(state, result).extensions  # not on the list: no output


# ------------------------------------------------------------------ getPINRetries without a PIN
def test_get_pin_retries_without_a_pin_answers_pin_not_set(hid_device) -> None:
    ctap = Ctap2(hid_device)
    cp = ClientPin(ctap)
    with pytest.raises(CtapError) as e:
        cp.get_pin_retries()
    assert e.value.code == ERR.PIN_NOT_SET
    cp.set_pin(PIN)
    assert cp.get_pin_retries()[0] == 8
    ctap.reset()
    with pytest.raises(CtapError) as e:
        ClientPin(ctap).get_pin_retries()
    assert e.value.code == ERR.PIN_NOT_SET


# ------------------------------------------------------------------ ES384 and RS256 credentials
@pytest.mark.parametrize("alg", [-35, -257], ids=["ES384", "RS256"])
def test_es384_and_rs256_credentials_register_and_assert(hid_device, alg: int) -> None:
    ClientPin(Ctap2(hid_device)).set_pin(PIN)
    assert {"type": "public-key", "alg": alg} in Ctap2(hid_device).get_info().algorithms
    server, _, auth = _register(hid_device, alg=alg)
    cred = auth.credential_data
    assert cred.public_key[3] == alg
    request, state = server.authenticate_begin([cred], user_verification="required")
    response = _client(hid_device).get_assertion(request["publicKey"]).get_response(0)
    assert server.authenticate_complete(state, [cred], response) == cred


@pytest.mark.parametrize("alg", [-36, -37, -47], ids=["ES512", "PS256", "ES256K"])
def test_algorithms_offered_only_when_asked_for(tmp_path, alg: int) -> None:
    from keyadmin.sim.authenticator import SoftKey
    from keyadmin.sim.hid import open_hid

    assert alg not in SoftKey.create(None).state.algorithms  # not in a YubiKey 5's list
    device = open_hid(SoftKey.create(tmp_path / "key.json", algorithms=[alg]))
    try:
        ClientPin(Ctap2(device)).set_pin(PIN)
        assert Ctap2(device).get_info().algorithms == [{"type": "public-key", "alg": alg}]
        server, _, auth = _register(device, alg=alg)
        cred = auth.credential_data
        assert cred.public_key[3] == alg
        request, state = server.authenticate_begin([cred], user_verification="required")
        response = _client(device).get_assertion(request["publicKey"]).get_response(0)
        assert server.authenticate_complete(state, [cred], response) == cred
    finally:
        device.close()


# ------------------------------------------------------------ hmac-secret, PRF, hmac-secret-mc
def test_hmac_secret_outputs_are_stable_per_salt_and_differ_between_salts(hid_device) -> None:
    ClientPin(Ctap2(hid_device)).set_pin(PIN)
    assert {"hmac-secret", "hmac-secret-mc"} <= set(Ctap2(hid_device).get_info().extensions)
    client = _client(hid_device, extensions=[HmacSecretExtension(allow_hmac_secret=True)])
    server, result, auth = _register(hid_device, {"hmacCreateSecret": True}, client=client)
    assert result.client_extension_results["hmacCreateSecret"] is True
    cred = auth.credential_data
    request, _ = server.authenticate_begin([cred], user_verification="required")
    salt1, salt2 = os.urandom(32), os.urandom(32)

    def get(salts: dict) -> object:  # type: ignore[type-arg]
        ext = {"hmacGetSecret": salts}
        done = client.get_assertion({**request["publicKey"], "extensions": ext})
        return done.get_response(0).client_extension_results.hmac_get_secret

    first = get({"salt1": salt1})
    both = get({"salt1": salt1, "salt2": salt2})
    assert first.output1 == both.output1 and len(first.output1) == 32
    assert both.output2 not in (None, both.output1)


def test_prf_at_registration_matches_prf_at_assertion(hid_device) -> None:
    ClientPin(Ctap2(hid_device)).set_pin(PIN)
    first, second = websafe_encode(os.urandom(32)), websafe_encode(os.urandom(32))
    prf_in = {"prf": {"eval": {"first": first, "second": second}}}
    server, result, auth = _register(hid_device, prf_in)
    at_mc = result.client_extension_results.prf
    assert at_mc.enabled is True and at_mc.results.first and at_mc.results.second
    cred = auth.credential_data
    request, _ = server.authenticate_begin([cred], user_verification="required")
    done = _client(hid_device).get_assertion({**request["publicKey"], "extensions": prf_in})
    assert done.get_response(0).client_extension_results.prf.results == at_mc.results


def test_hmac_secret_salt_auth_is_checked(hid_device, softkey) -> None:
    """A tampered saltAuth is refused (CTAP 2.1 §12.5: PIN_AUTH_INVALID)."""
    from fido2.ctap2.pin import PinProtocolV2

    ctap = Ctap2(hid_device)
    ClientPin(ctap).set_pin(PIN)
    _, _, auth = _register(hid_device, {"prf": {}})
    proto = PinProtocolV2()
    key_agreement, shared = ClientPin(ctap, proto)._get_shared_secret()
    salt_enc = proto.encrypt(shared, os.urandom(32))
    bad_auth = bytes(32)
    ext = {"hmac-secret": {1: key_agreement, 2: salt_enc, 3: bad_auth, 4: 2}}
    cdh = hashlib.sha256(b"challenge").digest()
    allow = [{"type": "public-key", "id": auth.credential_data.credential_id}]
    with pytest.raises(CtapError) as e:
        ctap.get_assertion(RP_ID, cdh, allow, extensions=ext)
    assert e.value.code == ERR.PIN_AUTH_INVALID


# ------------------------------------------------------------------ credBlob
def test_cred_blob_is_stored_and_returned(hid_device) -> None:
    ClientPin(Ctap2(hid_device)).set_pin(PIN)
    info = Ctap2(hid_device).get_info()
    assert "credBlob" in info.extensions and info.max_cred_blob_length >= 32
    blob = os.urandom(32)
    server, _, auth = _register(hid_device, {"credBlob": blob}, rk="required")
    assert auth.extensions == {"credBlob": True}
    cred = auth.credential_data
    request, _ = server.authenticate_begin([cred], user_verification="required")
    done = _client(hid_device).get_assertion(
        {**request["publicKey"], "extensions": {"getCredBlob": True}}
    )
    assert done.get_response(0).response.authenticator_data.extensions["credBlob"] == blob


def test_cred_blob_too_long_is_not_stored(hid_device) -> None:
    ClientPin(Ctap2(hid_device)).set_pin(PIN)
    ctap = Ctap2(hid_device)
    cp = ClientPin(ctap)
    token = cp.get_pin_token(PIN, ClientPin.PERMISSION.MAKE_CREDENTIAL, RP_ID)
    cdh = os.urandom(32)
    too_long = os.urandom(ctap.get_info().max_cred_blob_length + 1)
    att = ctap.make_credential(
        cdh,
        {"id": RP_ID},
        USER,
        [{"type": "public-key", "alg": -7}],
        extensions={"credBlob": too_long},
        options={"rk": True},
        pin_uv_param=cp.protocol.authenticate(token, cdh),
        pin_uv_protocol=cp.protocol.VERSION,
    )
    assert att.auth_data.extensions == {"credBlob": False}


# ------------------------------------------------------------------ largeBlobs (§6.10)
def _large_blobs(ctap: Ctap2, permissions=ClientPin.PERMISSION.LARGE_BLOB_WRITE) -> LargeBlobs:  # type: ignore[no-untyped-def]
    cp = ClientPin(ctap)
    return LargeBlobs(ctap, cp.protocol, cp.get_pin_token(PIN, permissions))


def test_large_blobs_read_write_and_permissions(hid_device) -> None:
    ctap = Ctap2(hid_device)
    ClientPin(ctap).set_pin(PIN)
    info = ctap.get_info()
    assert info.options.get("largeBlobs") is True and "largeBlobKey" in info.extensions
    assert info.max_large_blob >= 1024
    assert LargeBlobs(ctap).read_blob_array() == []
    lb = _large_blobs(ctap)
    key = os.urandom(32)
    lb.put_blob(key, b"lab data")
    assert LargeBlobs(ctap).get_blob(key) == b"lab data"
    with pytest.raises(CtapError) as e:  # a PIN is set: writing needs a token
        LargeBlobs(ctap).put_blob(key, b"x")
    assert e.value.code == ERR.PUAT_REQUIRED
    with pytest.raises(CtapError) as e:  # a token without the lbw permission
        _large_blobs(ctap, ClientPin.PERMISSION.CREDENTIAL_MGMT).put_blob(key, b"x")
    assert e.value.code == ERR.PIN_AUTH_INVALID
    # a token with only lbw cannot manage credentials
    cp = ClientPin(ctap)
    token = cp.get_pin_token(PIN, ClientPin.PERMISSION.LARGE_BLOB_WRITE)
    with pytest.raises(CtapError) as e:
        CredentialManagement(ctap, cp.protocol, token).get_metadata()
    assert e.value.code == ERR.PIN_AUTH_INVALID


def test_large_blobs_bad_checksum_and_too_large(hid_device) -> None:
    ctap = Ctap2(hid_device)
    ClientPin(ctap).set_pin(PIN)
    lb = _large_blobs(ctap)
    data = cbor.encode([])
    data += hashlib.sha256(data).digest()[:15] + b"\xff"
    msg = b"\xff" * 32 + b"\x0c\x00" + struct.pack("<I", 0) + hashlib.sha256(data).digest()
    proto = lb.pin_uv.protocol
    with pytest.raises(CtapError) as e:
        ctap.large_blobs(
            0,
            set=data,
            length=len(data),
            pin_uv_protocol=proto.VERSION,
            pin_uv_param=proto.authenticate(lb.pin_uv.token, msg),
        )
    assert e.value.code == ERR.INTEGRITY_FAILURE
    too_big = [os.urandom(ctap.get_info().max_large_blob)]
    with pytest.raises(CtapError) as e:
        lb.write_blob_array(too_big)
    assert e.value.code == ERR.LARGE_BLOB_STORAGE_FULL
    assert LargeBlobs(ctap).read_blob_array() == []  # nothing half-written


def test_large_blob_key_through_the_client(hid_device) -> None:
    ClientPin(Ctap2(hid_device)).set_pin(PIN)
    ext = {"largeBlob": {"support": "required"}}
    server, result, auth = _register(hid_device, ext, rk="required")
    assert result.client_extension_results.large_blob.supported is True
    cred = auth.credential_data
    request, _ = server.authenticate_begin([cred], user_verification="required")
    write = {"largeBlob": {"write": websafe_encode(b"per-credential blob")}}
    client = _client(hid_device)
    done = client.get_assertion({**request["publicKey"], "extensions": write})
    assert done.get_response(0).client_extension_results.large_blob.written is True
    read = {"largeBlob": {"read": True}}
    done = client.get_assertion({**request["publicKey"], "extensions": read})
    assert done.get_response(0).client_extension_results.large_blob.blob == b"per-credential blob"


def test_reset_clears_large_blobs(hid_device) -> None:
    ctap = Ctap2(hid_device)
    ClientPin(ctap).set_pin(PIN)
    _large_blobs(ctap).put_blob(os.urandom(32), b"gone after reset")
    ctap.reset()
    assert LargeBlobs(ctap).read_blob_array() == []


def test_a_refused_extension_keeps_the_users_old_credential(hid_device, key_path) -> None:
    """makeCredential refused for its extensions (hmac-secret-mc without hmac-secret) must not
    drop the discoverable credential it would have replaced, not even at the next save."""
    from keyadmin.sim.authenticator import SoftKey

    ctap = Ctap2(hid_device)
    ClientPin(ctap).set_pin(PIN)
    _, _, first = _register(hid_device, rk="required")
    cp = ClientPin(ctap)
    token = cp.get_pin_token(PIN, ClientPin.PERMISSION.MAKE_CREDENTIAL, RP_ID)
    cdh = os.urandom(32)
    with pytest.raises(CtapError) as e:
        ctap.make_credential(
            cdh,
            {"id": RP_ID},
            USER,
            [{"type": "public-key", "alg": -7}],
            extensions={"hmac-secret-mc": {1: {}, 2: b"", 3: b""}},
            options={"rk": True},
            pin_uv_param=cp.protocol.authenticate(token, cdh),
            pin_uv_protocol=cp.protocol.VERSION,
        )
    assert e.value.code == ERR.INVALID_PARAMETER
    ClientPin(ctap).change_pin(PIN, PIN + "-2")  # any command that saves the state
    ids = [c.id_bytes for c in SoftKey.open(key_path).state.credentials]
    assert ids == [first.credential_data.credential_id]


# ------------------------------------------------------------ malformed extension input
_ANY = st.recursive(
    st.booleans() | st.integers(-(2**40), 2**40) | st.binary(max_size=80)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.integers(-4, 8) | st.sampled_from(["id", "alg"]), inner, max_size=5
    ),
    max_leaves=12,
)  # fmt: skip


_MC_EXTENSIONS = ["hmac-secret", "hmac-secret-mc", "credBlob", "largeBlobKey", "minPinLength"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mc_ext=st.dictionaries(
        st.sampled_from(_MC_EXTENSIONS),
        _ANY,
        max_size=3,
    ),
    ga_ext=st.dictionaries(
        st.sampled_from(["hmac-secret", "credBlob", "largeBlobKey"]), _ANY, max_size=3
    ),
    lb_params=st.dictionaries(st.integers(1, 6), _ANY, max_size=6),
)
def test_malformed_extension_and_large_blob_input_is_a_ctap_error(
    mc_ext: dict,
    ga_ext: dict,
    lb_params: dict,  # type: ignore[type-arg]
) -> None:
    """Whatever the extension or largeBlobs input, the key answers a status byte (and CBOR
    on success): never an exception out of the authenticator."""
    from keyadmin.sim.authenticator import SoftKey

    key = SoftKey.create(None)
    rk_mc = {
        1: b"\0" * 32, 2: {"id": RP_ID}, 3: {"id": b"u"},
        4: [{"type": "public-key", "alg": -7}], 6: mc_ext, 7: {"rk": True},
    }  # fmt: skip
    made = key.process(bytes([0x01]) + cbor.encode(rk_mc))
    assert len(made) == 1 or made[0] == 0
    ga = {1: RP_ID, 2: b"\1" * 32, 4: ga_ext}
    got = key.process(bytes([0x02]) + cbor.encode(ga))
    assert len(got) == 1 or got[0] == 0
    blobs = key.process(bytes([0x0C]) + cbor.encode(lb_params))
    assert len(blobs) == 1 or blobs[0] == 0
