"""The WebAuthn ceremonies on a key: make a credential, get an assertion.

The one place keyadmin builds python-fido2's ``Fido2Client``. A flow describes what it wants
in a frozen request (``CredentialRequest``, ``AssertionRequest``) and gets the key's answer
back as plain bytes (``NewCredential``, ``SignedAssertion``): no python-fido2 object crosses
into the flows. Every python-fido2 error is unwrapped here, through
``keyadmin.device.errors.device_errors`` (ClientError -> its CtapError -> a keyadmin error;
a malformed reply is blamed on the key only when python-fido2 raised it).
User verification is always required; the PIN comes through the ``Interaction``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from keyadmin.device.errors import device_errors

if TYPE_CHECKING:
    from fido2.client import Fido2Client
    from fido2.ctap import CtapDevice
    from fido2.webauthn import (
        PublicKeyCredentialCreationOptions,
        PublicKeyCredentialRequestOptions,
    )

    from keyadmin.device.interaction import Interaction

#: credProtect levels (CTAP 2.1 §12.1) as python-fido2's client names them
CRED_PROTECT_NAMES = {
    1: "userVerificationOptional",
    2: "userVerificationOptionalWithCredentialIDList",
    3: "userVerificationRequired",
}


@dataclass(frozen=True)
class EnterpriseRequest:
    """Ask for enterprise attestation: platform-facilitated for ``platform_rp_ids``,
    vendor-facilitated when None."""

    platform_rp_ids: tuple[str, ...] | None = None


@dataclass(frozen=True)
class CredentialRequest:
    """makeCredential with user verification required and the relying party's origin."""

    rp_id: str
    rp_name: str
    origin: str
    user_id: bytes  # the WebAuthn user handle
    user_name: str
    user_display_name: str
    challenge: bytes
    algorithms: tuple[int, ...]  # COSE algorithms, in order of preference
    exclude: tuple[bytes, ...] = ()  # credential ids the key must not already hold
    resident_key: bool = True  # discoverable credential required (else discouraged)
    cred_protect: int | None = None  # 1..3, enforced when set
    enterprise: EnterpriseRequest | None = None  # None: direct attestation
    timeout_ms: int | None = 60000


@dataclass(frozen=True)
class NewCredential:
    """The key's answer to makeCredential, as bytes; nothing in it is verified yet."""

    attestation_object: bytes
    client_data_json: bytes
    credential_id: bytes
    aaguid: str
    sign_count: int
    flags: int  # authenticator data flags (UP 0x01, UV 0x04, BE 0x08, BS 0x10, AT 0x40)
    fmt: str  # the attestation statement format
    client_data_challenge: bytes  # the challenge the client data carries
    ep_att: bool = False  # the key answered epAtt = true (enterprise attestation)


@dataclass(frozen=True)
class AssertionRequest:
    """getAssertion with user verification required, for one of ``allow_credentials``."""

    rp_id: str
    origin: str
    challenge: bytes
    allow_credentials: tuple[bytes, ...]
    timeout_ms: int | None = None


@dataclass(frozen=True)
class SignedAssertion:
    """The key's answer to getAssertion, as bytes; nothing in it is verified yet."""

    credential_id: bytes
    client_data_json: bytes
    authenticator_data: bytes
    signature: bytes
    user_handle: bytes | None


def creation_options(request: CredentialRequest) -> PublicKeyCredentialCreationOptions:
    """``request`` as python-fido2's creation options."""
    from fido2.webauthn import (
        AttestationConveyancePreference,
        AuthenticatorSelectionCriteria,
        PublicKeyCredentialCreationOptions,
        PublicKeyCredentialDescriptor,
        PublicKeyCredentialParameters,
        PublicKeyCredentialRpEntity,
        PublicKeyCredentialType,
        PublicKeyCredentialUserEntity,
        ResidentKeyRequirement,
        UserVerificationRequirement,
    )

    extensions: dict[str, object] = {}
    if request.cred_protect:
        extensions["credentialProtectionPolicy"] = CRED_PROTECT_NAMES[request.cred_protect]
        extensions["enforceCredentialProtectionPolicy"] = True
    key = PublicKeyCredentialType.PUBLIC_KEY
    return PublicKeyCredentialCreationOptions(
        rp=PublicKeyCredentialRpEntity(name=request.rp_name, id=request.rp_id),
        user=PublicKeyCredentialUserEntity(
            name=request.user_name, id=request.user_id, display_name=request.user_display_name
        ),
        challenge=request.challenge,
        pub_key_cred_params=[
            PublicKeyCredentialParameters(type=key, alg=a) for a in request.algorithms
        ],
        timeout=request.timeout_ms,
        exclude_credentials=[
            PublicKeyCredentialDescriptor(type=key, id=c) for c in request.exclude
        ],
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED
            if request.resident_key
            else ResidentKeyRequirement.DISCOURAGED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        attestation=AttestationConveyancePreference.ENTERPRISE
        if request.enterprise is not None
        else AttestationConveyancePreference.DIRECT,
        extensions=extensions or None,
    )


def request_options(request: AssertionRequest) -> PublicKeyCredentialRequestOptions:
    """``request`` as python-fido2's request options."""
    from fido2.webauthn import (
        PublicKeyCredentialDescriptor,
        PublicKeyCredentialRequestOptions,
        PublicKeyCredentialType,
        UserVerificationRequirement,
    )

    return PublicKeyCredentialRequestOptions(
        challenge=request.challenge,
        timeout=request.timeout_ms,
        rp_id=request.rp_id,
        allow_credentials=[
            PublicKeyCredentialDescriptor(type=PublicKeyCredentialType.PUBLIC_KEY, id=c)
            for c in request.allow_credentials
        ],
        user_verification=UserVerificationRequirement.REQUIRED,
    )


def _client(device: CtapDevice, origin: str, interaction: Interaction) -> Fido2Client:
    """python-fido2's client for ``device`` at the relying party's ``origin``."""
    from fido2.client import DefaultClientDataCollector, Fido2Client

    from keyadmin.device.interaction import for_fido2

    return Fido2Client(
        device, DefaultClientDataCollector(origin), user_interaction=for_fido2(interaction)
    )


def make_credential(
    device: CtapDevice, request: CredentialRequest, interaction: Interaction
) -> NewCredential:
    """Run makeCredential on ``device``. Raises keyadmin errors only: CredentialExcluded,
    UnsupportedAlgorithm (keyadmin.device.errors), PinError, DeviceError, ..."""
    options = creation_options(request)
    with device_errors():
        client = _client(device, request.origin, interaction)
        ep_att = None
        if request.enterprise is not None:
            from keyadmin.device.enterprise import request_enterprise

            ep_att = request_enterprise(client, request.enterprise.platform_rp_ids)
        made = client.make_credential(options)
        response = made.response
        att_obj = response.attestation_object
        auth_data = att_obj.auth_data
        cred = auth_data.credential_data
        if cred is None:  # python-fido2 checks this; a key's reply without it is malformed
            from keyadmin.errors import DeviceProtocolError

            raise DeviceProtocolError("the key made no credential (no attested credential data)")
        return NewCredential(
            attestation_object=bytes(att_obj),
            client_data_json=bytes(response.client_data),
            credential_id=bytes(cred.credential_id),
            aaguid=str(cred.aaguid),
            sign_count=auth_data.counter,
            flags=int(auth_data.flags),
            fmt=att_obj.fmt,
            client_data_challenge=bytes(response.client_data.challenge),
            ep_att=ep_att() if ep_att is not None else False,
        )


def get_assertion(
    device: CtapDevice, request: AssertionRequest, interaction: Interaction
) -> SignedAssertion:
    """Run getAssertion on ``device``; the first (for an allow list, the only) response.
    Raises keyadmin errors only: NoCredentials when the key holds none of those asked for."""
    options = request_options(request)
    with device_errors():
        client = _client(device, request.origin, interaction)
        selection = client.get_assertion(options)
        response = selection.get_response(0)
        inner = response.response
        return SignedAssertion(
            credential_id=bytes(response.raw_id),
            client_data_json=bytes(inner.client_data),
            authenticator_data=bytes(inner.authenticator_data),
            signature=bytes(inner.signature),
            user_handle=bytes(inner.user_handle) if inner.user_handle else None,
        )
