"""``Device``: the key as the flows see it.

A flow (enrol, prepare, step-up, selftest, an operator's authorization) receives a ``Device``
and never builds python-fido2 objects itself: the ceremonies live behind
``make_credential`` / ``get_assertion`` (keyadmin.device.ceremony), the rest is getInfo,
PIN, configuration and credential management. ``keyadmin.device.session.DeviceSession`` is
the implementation for every transport (USB HID, NFC over PC/SC, the software key). Every
method raises keyadmin errors only (keyadmin.device.errors maps python-fido2's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from keyadmin.device.ceremony import (
        AssertionRequest,
        CredentialRequest,
        NewCredential,
        SignedAssertion,
    )
    from keyadmin.device.discovery import DeviceRef
    from keyadmin.device.interaction import Interaction
    from keyadmin.device.session import DeviceIdentity, DeviceInfo, StoredCredential


@runtime_checkable
class Device(Protocol):
    """One open key."""

    @property
    def ref(self) -> DeviceRef:
        """Which key: transport, path, product (``ref.selector`` names it for --device)."""

    def info(self) -> DeviceInfo:
        """The decoded getInfo and the PIN state."""

    def identity(self) -> DeviceIdentity:
        """The key's identity for the log (no PIN, no touch)."""

    # the ceremonies (user verification required; the PIN through ``interaction``)
    def make_credential(
        self, request: CredentialRequest, interaction: Interaction
    ) -> NewCredential: ...

    def get_assertion(
        self, request: AssertionRequest, interaction: Interaction
    ) -> SignedAssertion: ...

    # PIN and configuration
    def verify_pin(self, pin: str) -> None: ...

    def set_pin(self, pin: str) -> None: ...

    def set_min_pin_length(
        self, length: int, pin: str | None, rp_ids: list[str] | None = None, force: bool = False
    ) -> bool: ...

    def set_always_uv(self, enabled: bool, pin: str | None) -> bool: ...

    # credential management (discoverable credentials)
    def list_credentials(self, pin: str, rp_id: str | None = None) -> list[StoredCredential]: ...

    def delete_credential(self, pin: str, credential_id: bytes) -> None: ...
