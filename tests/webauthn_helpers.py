"""A relying party for tests: python-fido2's client and server against one device."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.server import Fido2Server
from fido2.webauthn import (
    AttestationConveyancePreference,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialUserEntity,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

RP_ID = "example.com"
ORIGIN = "https://example.com"


class PinInteraction(UserInteraction):
    def __init__(self, pin: str | None) -> None:
        self.pin = pin
        self.pin_requests = 0

    def request_pin(self, permissions: Any, rp_id: str | None) -> str | None:
        self.pin_requests += 1
        return self.pin


@dataclass
class Registration:
    server: Fido2Server
    options: Any
    state: Any
    response: Any
    user: PublicKeyCredentialUserEntity


def make_client(device: Any, pin: str | None) -> Fido2Client:
    return Fido2Client(
        device, DefaultClientDataCollector(ORIGIN), user_interaction=PinInteraction(pin)
    )


def register(
    device: Any,
    pin: str | None,
    *,
    uv: UserVerificationRequirement = UserVerificationRequirement.REQUIRED,
    rk: ResidentKeyRequirement = ResidentKeyRequirement.REQUIRED,
    verify_attestation: Any = None,
    user_name: str = "alice",
    exclude: list[Any] | None = None,
) -> Registration:
    server = Fido2Server(
        PublicKeyCredentialRpEntity(name="Example", id=RP_ID),
        attestation=AttestationConveyancePreference.DIRECT,
        verify_attestation=verify_attestation,
    )
    user = PublicKeyCredentialUserEntity(name=user_name, id=os.urandom(16), display_name=user_name)
    options, state = server.register_begin(
        user, credentials=exclude, user_verification=uv, resident_key_requirement=rk
    )
    response = make_client(device, pin).make_credential(options.public_key)
    return Registration(server, options, state, response, user)
