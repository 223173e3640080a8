"""Register and authenticate once with a key, verifying both with python-fido2's server.

The demo of the foundation: it proves a key (normally the software key) works
end to end through python-fido2's unmodified client over a real transport.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from keyadmin.device.errors import device_errors
from keyadmin.errors import KeyadminError


class SelftestFailed(KeyadminError):
    pass


@dataclass(frozen=True)
class SelftestResult:
    device: str
    rp_id: str
    aaguid: str
    attestation_format: str
    attestation_trusted_by: str
    credential_id: str
    user_verified: bool
    counter_after_register: int
    counter_after_authenticate: int
    register_ms: float
    authenticate_ms: float


def run_selftest(
    device: Any,
    device_label: str,
    interaction: Any,
    *,
    rp_id: str = "keyadmin.example",
    trust_root_der: bytes | None = None,
) -> SelftestResult:
    from fido2.attestation import AttestationVerifier, UnsupportedType
    from fido2.client import DefaultClientDataCollector, Fido2Client
    from fido2.server import Fido2Server
    from fido2.webauthn import (
        AttestationConveyancePreference,
        PublicKeyCredentialRpEntity,
        PublicKeyCredentialUserEntity,
        ResidentKeyRequirement,
        UserVerificationRequirement,
    )

    class _LabRoot(AttestationVerifier):
        def ca_lookup(self, result: Any, auth_data: Any) -> bytes | None:
            return trust_root_der

    rp = PublicKeyCredentialRpEntity(name="keyadmin selftest", id=rp_id)
    verifier = _LabRoot()
    server = Fido2Server(
        rp, attestation=AttestationConveyancePreference.DIRECT, verify_attestation=verifier
    )
    client = Fido2Client(
        device, DefaultClientDataCollector(f"https://{rp_id}"), user_interaction=interaction
    )
    user = PublicKeyCredentialUserEntity(
        name="selftest", id=os.urandom(16), display_name="keyadmin selftest"
    )
    options, state = server.register_begin(
        user,
        user_verification=UserVerificationRequirement.REQUIRED,
        resident_key_requirement=ResidentKeyRequirement.DISCOURAGED,
    )
    t0 = time.perf_counter()
    with device_errors():
        response = client.make_credential(options.public_key)
    t1 = time.perf_counter()
    fmt = response.response.attestation_object.fmt
    try:
        auth_data = server.register_complete(state, response)
    except UnsupportedType:
        raise SelftestFailed(f"attestation format {fmt!r} is not supported") from None
    except Exception as e:  # noqa: BLE001 - any verification failure fails the selftest
        raise SelftestFailed(f"registration did not verify: {e}") from None
    cred = auth_data.credential_data
    assert cred is not None
    trusted_by = "lab root (software key)" if trust_root_der and fmt != "none" else "none"
    req, state = server.authenticate_begin(
        [cred], user_verification=UserVerificationRequirement.REQUIRED
    )
    t2 = time.perf_counter()
    with device_errors():
        assertion = client.get_assertion(req.public_key).get_response(0)
    t3 = time.perf_counter()
    try:
        server.authenticate_complete(state, [cred], assertion)
    except Exception as e:  # noqa: BLE001
        raise SelftestFailed(f"assertion did not verify: {e}") from None
    counter = assertion.response.authenticator_data.counter
    return SelftestResult(
        device=device_label,
        rp_id=rp_id,
        aaguid=str(cred.aaguid),
        attestation_format=fmt,
        attestation_trusted_by=trusted_by,
        credential_id=cred.credential_id.hex(),
        user_verified=assertion.response.authenticator_data.is_user_verified(),
        counter_after_register=auth_data.counter,
        counter_after_authenticate=counter,
        register_ms=round((t1 - t0) * 1000, 2),
        authenticate_ms=round((t3 - t2) * 1000, 2),
    )
