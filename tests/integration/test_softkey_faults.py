"""Every fault the software key can inject is caught by python-fido2 or refused by a verifier."""

from __future__ import annotations

import os
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from fido2.attestation import AttestationVerifier, InvalidData, InvalidSignature, PackedAttestation
from fido2.client import ClientError
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.webauthn import ResidentKeyRequirement, UserVerificationRequirement

from keyadmin.sim.authenticator import SoftKey
from keyadmin.sim.hid import open_hid
from tests.webauthn_helpers import RP_ID, make_client, register

NO_UV = {"uv": UserVerificationRequirement.DISCOURAGED, "rk": ResidentKeyRequirement.DISCOURAGED}


class LabRoot(AttestationVerifier):
    def __init__(self, key: SoftKey) -> None:
        super().__init__()
        self.der = x509.load_pem_x509_certificate(key.root_certificate_pem().encode()).public_bytes(
            Encoding.DER
        )

    def ca_lookup(self, result, auth_data):  # type: ignore[no-untyped-def]
        return self.der


def _faulty(key_path, *faults, **kw):
    key = SoftKey.create(key_path, faults=list(faults), **kw)
    return key, open_hid(key)


@pytest.mark.parametrize("fault", ["malformed-cbor", "truncated"])
def test_broken_replies_make_python_fido2_raise(key_path, fault) -> None:
    _, dev = _faulty(key_path, fault)
    # python-fido2 raises plain ValueError/IndexError from its CBOR and authData parsers
    with pytest.raises((ValueError, IndexError, ClientError)):
        register(dev, None, **NO_UV)


def test_broken_get_info_reply_fails_device_open(key_path) -> None:
    _, dev = _faulty(key_path, "truncated", fault_commands=[0x04])
    with pytest.raises((ValueError, IndexError, CtapError)):
        Ctap2(dev)


def test_wrong_rp_id_hash_is_refused_by_the_server(key_path) -> None:
    key, dev = _faulty(key_path, "wrong-rpid-hash")
    reg = register(dev, None, verify_attestation=LabRoot(key), **NO_UV)
    with pytest.raises(ValueError, match="RP ID hash"):
        reg.server.register_complete(reg.state, reg.response)


def test_bad_attestation_signature_is_refused(key_path) -> None:
    key, dev = _faulty(key_path, "bad-signature")
    reg = register(dev, None, verify_attestation=LabRoot(key), **NO_UV)
    with pytest.raises(InvalidSignature):
        reg.server.register_complete(reg.state, reg.response)


def test_bad_assertion_signature_is_refused(key_path) -> None:
    key = SoftKey.create(key_path)
    dev = open_hid(key)
    reg = register(dev, None, verify_attestation=LabRoot(key), **NO_UV)
    cred = reg.server.register_complete(reg.state, reg.response).credential_data
    key.state.faults = ["bad-signature"]  # the key goes bad after enrolment
    request, state = reg.server.authenticate_begin(
        [cred], user_verification=UserVerificationRequirement.DISCOURAGED
    )
    assertion = make_client(dev, None).get_assertion(request.public_key).get_response(0)
    with pytest.raises(ValueError):
        reg.server.authenticate_complete(state, [cred], assertion)


def test_certificate_aaguid_mismatch_is_refused(key_path) -> None:
    key, dev = _faulty(key_path, "cert-aaguid-mismatch")
    reg = register(dev, None, **NO_UV)
    att = reg.response.response.attestation_object
    with pytest.raises(InvalidData, match="AAGUID"):
        PackedAttestation().verify(
            att.att_stmt, att.auth_data, reg.response.response.client_data.hash
        )


def test_cleared_up_flag_is_refused(key_path) -> None:
    key, dev = _faulty(key_path, "clear-up-uv")
    reg = register(dev, None, verify_attestation=LabRoot(key), **NO_UV)
    with pytest.raises(ValueError, match="User Present"):
        reg.server.register_complete(reg.state, reg.response)


def test_cleared_uv_flag_is_refused_when_uv_required(key_path) -> None:
    from fido2.ctap2 import ClientPin

    key = SoftKey.create(key_path)
    dev = open_hid(key)
    ClientPin(Ctap2(dev)).set_pin("4821-lab")
    reg = register(dev, "4821-lab", verify_attestation=LabRoot(key))
    cred = reg.server.register_complete(reg.state, reg.response).credential_data
    key.state.faults = ["clear-up-uv"]
    request, state = reg.server.authenticate_begin(
        [cred], user_verification=UserVerificationRequirement.REQUIRED
    )
    assertion = make_client(dev, "4821-lab").get_assertion(request.public_key).get_response(0)
    with pytest.raises(ValueError):
        reg.server.authenticate_complete(state, [cred], assertion)


@pytest.mark.parametrize("code", [0x31, 0x2E, 0x7F])
def test_ctap_error_on_demand(key_path, code) -> None:
    _, dev = _faulty(key_path, "ctap-error", fault_ctap_error=code)
    with pytest.raises(CtapError) as e:
        Ctap2(dev).make_credential(
            os.urandom(32), {"id": RP_ID}, {"id": b"u"}, [{"type": "public-key", "alg": -7}]
        )
    assert e.value.code == code


def test_slow_reply_sends_keepalives(key_path) -> None:
    _, dev = _faulty(key_path, "slow", fault_delay=0.4)
    seen: list[int] = []
    t0 = time.monotonic()
    resp = Ctap2(dev).make_credential(
        os.urandom(32),
        {"id": RP_ID},
        {"id": b"u"},
        [{"type": "public-key", "alg": -7}],
        on_keepalive=seen.append,
    )
    assert time.monotonic() - t0 >= 0.4
    assert resp.fmt == "packed"
    assert seen and seen[0] == 2  # UPNEEDED, reported once per change


def test_slow_reply_can_be_cancelled(key_path) -> None:
    _, dev = _faulty(key_path, "slow", fault_delay=5.0)
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    t0 = time.monotonic()
    with pytest.raises(CtapError) as e:
        Ctap2(dev).make_credential(
            os.urandom(32),
            {"id": RP_ID},
            {"id": b"u"},
            [{"type": "public-key", "alg": -7}],
            event=cancel,
        )
    assert e.value.code == CtapError.ERR.KEEPALIVE_CANCEL
    assert time.monotonic() - t0 < 3


@pytest.mark.parametrize(
    "fault", ["malformed-cbor", "truncated", "bad-signature", "wrong-rpid-hash"]
)
def test_cli_reports_faults_cleanly(key_path, fault) -> None:
    """keyadmin turns each broken reply into a one-line error and a non-zero exit, no traceback."""
    import subprocess
    import sys

    SoftKey.create(key_path, faults=[fault])
    proc = subprocess.run(
        [sys.executable, "-m", "keyadmin", "sim", "selftest", "--state", str(key_path)],
        input="4821-lab\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode in (1, 4), proc.stderr
    assert "Traceback" not in proc.stderr
    assert any(line.startswith("error: ") for line in proc.stderr.splitlines())
    assert proc.stdout == ""
