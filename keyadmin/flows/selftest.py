"""Register and authenticate once with a key, verifying both with python-fido2's server.

The demo of the foundation: it proves a key (normally the software key) works
end to end through python-fido2's unmodified client over a real transport.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from keyadmin.errors import KeyadminError

if TYPE_CHECKING:
    from keyadmin.device.interaction import Interaction
    from keyadmin.device.port import Device


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
    device: Device,
    interaction: Interaction,
    *,
    rp_id: str = "keyadmin.example",
    trust_root_der: bytes | None = None,
) -> SelftestResult:
    """Register (UV required, not discoverable) and authenticate once on ``device``; each
    response is verified by python-fido2's server, the attestation against
    ``trust_root_der`` (the software key's lab root) when given."""
    from fido2.attestation import AttestationResult, AttestationVerifier, UnsupportedType
    from fido2.server import Fido2Server
    from fido2.webauthn import (
        AttestationConveyancePreference,
        AttestationObject,
        AuthenticationResponse,
        AuthenticatorAssertionResponse,
        AuthenticatorAttestationResponse,
        AuthenticatorData,
        CollectedClientData,
        PublicKeyCredentialRpEntity,
        PublicKeyCredentialUserEntity,
        RegistrationResponse,
        ResidentKeyRequirement,
        UserVerificationRequirement,
    )

    from keyadmin.device.ceremony import AssertionRequest, CredentialRequest

    class _LabRoot(AttestationVerifier):
        def ca_lookup(
            self, result: AttestationResult, auth_data: AuthenticatorData
        ) -> bytes | None:
            return trust_root_der

    origin = f"https://{rp_id}"
    rp = PublicKeyCredentialRpEntity(name="keyadmin selftest", id=rp_id)
    verifier = _LabRoot()
    server = Fido2Server(
        rp, attestation=AttestationConveyancePreference.DIRECT, verify_attestation=verifier
    )
    user = PublicKeyCredentialUserEntity(
        name="selftest", id=os.urandom(16), display_name="keyadmin selftest"
    )
    options, state = server.register_begin(
        user,
        user_verification=UserVerificationRequirement.REQUIRED,
        resident_key_requirement=ResidentKeyRequirement.DISCOURAGED,
    )
    create = options.public_key
    t0 = time.perf_counter()
    made = device.make_credential(
        CredentialRequest(
            rp_id=rp_id,
            rp_name=rp.name,
            origin=origin,
            user_id=bytes(user.id),
            user_name=str(user.name),
            user_display_name=str(user.display_name),
            challenge=bytes(create.challenge),
            algorithms=tuple(int(p.alg) for p in create.pub_key_cred_params),
            resident_key=False,
            timeout_ms=create.timeout,
        ),
        interaction,
    )
    t1 = time.perf_counter()
    fmt = made.fmt
    registration = RegistrationResponse(
        raw_id=made.credential_id,
        response=AuthenticatorAttestationResponse(
            client_data=CollectedClientData(made.client_data_json),
            attestation_object=AttestationObject(made.attestation_object),
        ),
    )
    try:
        auth_data = server.register_complete(state, registration)
    except UnsupportedType:
        raise SelftestFailed(f"attestation format {fmt!r} is not supported") from None
    except Exception as e:  # noqa: BLE001 - any verification failure fails the selftest
        raise SelftestFailed(f"registration did not verify: {e}") from None
    cred = auth_data.credential_data
    if cred is None:
        raise SelftestFailed("registration did not verify: no attested credential data")
    trusted_by = "lab root (software key)" if trust_root_der and fmt != "none" else "none"
    req, state = server.authenticate_begin(
        [cred], user_verification=UserVerificationRequirement.REQUIRED
    )
    get = req.public_key
    t2 = time.perf_counter()
    signed = device.get_assertion(
        AssertionRequest(
            rp_id=rp_id,
            origin=origin,
            challenge=bytes(get.challenge),
            allow_credentials=tuple(bytes(c.id) for c in get.allow_credentials or ()),
            timeout_ms=get.timeout,
        ),
        interaction,
    )
    t3 = time.perf_counter()
    signed_data = AuthenticatorData(signed.authenticator_data)
    try:
        server.authenticate_complete(
            state,
            [cred],
            AuthenticationResponse(
                raw_id=signed.credential_id,
                response=AuthenticatorAssertionResponse(
                    client_data=CollectedClientData(signed.client_data_json),
                    authenticator_data=signed_data,
                    signature=signed.signature,
                    user_handle=signed.user_handle,
                ),
            ),
        )
    except Exception as e:  # noqa: BLE001
        raise SelftestFailed(f"assertion did not verify: {e}") from None
    return SelftestResult(
        device=device.ref.selector,
        rp_id=rp_id,
        aaguid=str(cred.aaguid),
        attestation_format=fmt,
        attestation_trusted_by=trusted_by,
        credential_id=cred.credential_id.hex(),
        user_verified=signed_data.is_user_verified(),
        counter_after_register=auth_data.counter,
        counter_after_authenticate=signed_data.counter,
        register_ms=round((t1 - t0) * 1000, 2),
        authenticate_ms=round((t3 - t2) * 1000, 2),
    )
