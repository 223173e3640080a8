"""A session with one FIDO2 key: info, PIN, configuration, credentials, reset.

Built on python-fido2 (Ctap2, ClientPin, Config, CredentialManagement). Every
method returns frozen dataclasses and raises keyadmin errors (never python-fido2's
own), so the CLI and the flows above never see a CtapError. PINs are arguments,
never stored on the session longer than the call, never logged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from keyadmin.device.discovery import DeviceRef
from keyadmin.device.errors import device_errors
from keyadmin.errors import DeviceError, KeyadminError, PinError, PinInvalid

if TYPE_CHECKING:
    from fido2.ctap import CtapDevice
    from fido2.ctap2 import ClientPin, Config, CredentialManagement, Info

    from keyadmin.device.ceremony import (
        AssertionRequest,
        CredentialRequest,
        NewCredential,
        SignedAssertion,
    )
    from keyadmin.device.interaction import Interaction

P = ParamSpec("P")
T = TypeVar("T")


def firmware_text(value: int | None) -> str | None:
    if value is None:
        return None
    return f"{(value >> 16) & 0xFF}.{(value >> 8) & 0xFF}.{value & 0xFF}"


@dataclass(frozen=True)
class DeviceInfo:
    """The decoded getInfo of a key, plus its PIN state."""

    transport: str
    path: str
    product: str | None
    aaguid: str
    versions: tuple[str, ...]
    extensions: tuple[str, ...]
    options: dict[str, bool]
    firmware: str | None
    min_pin_length: int
    force_pin_change: bool
    remaining_discoverable_credentials: int | None
    algorithms: tuple[int, ...]
    transports: tuple[str, ...]
    certifications: dict[str, int]
    pin_uv_protocols: tuple[int, ...]
    pin_set: bool
    pin_retries: int | None
    pin_blocked_until_power_cycle: bool

    @property
    def always_uv(self) -> bool:
        return bool(self.options.get("alwaysUv"))


@dataclass(frozen=True)
class DeviceIdentity:
    """Which key an action was done to, as the log records it (no secret in it).

    ``info_sha256`` is SHA-256 over the getInfo fields no command changes (everything but the
    options, PIN length and force-change flags, remaining credential slots, UV counter and the
    encrypted fields): the same for one key before and after a PIN change, a configuration
    change or a reset. Keys of one model and firmware share it; ``serial`` (the USB serial
    number, where the key reports one) tells those apart."""

    transport: str
    path: str
    product: str | None
    aaguid: str
    firmware: str | None
    serial: str | None
    info_sha256: str


#: getInfo keys whose values change with the key's state (CTAP 2.2 §6.4): left out of
#: DeviceIdentity.info_sha256 so it names the key, not its state.
_STATEFUL_INFO_KEYS = frozenset({0x04, 0x0C, 0x0D, 0x14, 0x17, 0x19, 0x1B})


@dataclass(frozen=True)
class StoredCredential:
    """A discoverable credential as the key's credential management reports it."""

    rp_id: str
    credential_id: str  # hex
    user_id: str  # hex
    user_name: str | None
    display_name: str | None
    cred_protect: int | None
    algorithm: int | None


_OPEN: list[DeviceSession] = []


def current_session() -> DeviceSession | None:
    """The key most recently opened and not yet closed: the one a PIN prompt is for."""
    return _OPEN[-1] if _OPEN else None


class DeviceSession:
    """One open key. Use as a context manager so the transport is closed.

    It is what flows receive as a ``keyadmin.device.port.Device``: getInfo, PIN,
    configuration, credential management, and the ceremonies (keyadmin.device.ceremony)."""

    def __init__(self, ref: DeviceRef, device: CtapDevice) -> None:
        from fido2.ctap2 import Ctap2

        self.ref = ref
        self.device = device
        with device_errors():
            self.ctap = Ctap2(device)
        _OPEN.append(self)

    def __enter__(self) -> DeviceSession:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        """Closes the key; a wrong PIN met anywhere inside (e.g. through python-fido2's
        client, which does not say how many attempts are left) leaves with the retries."""
        try:
            if isinstance(exc, PinInvalid) and exc.retries_left is None:
                try:
                    retries = self.pin_retries()[0]
                except (KeyadminError, OSError):
                    retries = None
                if retries is not None:
                    raise PinInvalid(retries_left=retries) from None
        finally:
            self.close()

    def pin_facts(self) -> tuple[int | None, int | None]:
        """(the minimum length a PIN typed for this key can have, the attempts left); None
        where the key cannot say. No minimum while the key demands a PIN change (its current
        PIN may predate a raised minimum)."""
        try:
            info = self.ctap_info()
            minimum = None if info.force_pin_change else int(info.min_pin_length or 4)
            retries = self.pin_retries()[0] if info.options.get("clientPin") else None
        except (KeyadminError, OSError):
            return None, None
        return minimum, retries

    def close(self) -> None:
        if self in _OPEN:
            _OPEN.remove(self)
        try:
            self.device.close()
        except Exception:  # noqa: BLE001,S110 - closing a vanished device is not an error
            pass

    # ------------------------------------------------------------------ info
    def info(self) -> DeviceInfo:
        from fido2.ctap2 import ClientPin

        with device_errors():
            info = self.ctap_info()
            pin_set = bool(info.options.get("clientPin"))
            retries: int | None = None
            power_cycle = False
            if pin_set:  # a key without a PIN answers getPINRetries with PIN_NOT_SET
                retries, pc = ClientPin(self.ctap).get_pin_retries()
                power_cycle = bool(pc)
        return DeviceInfo(
            transport=self.ref.transport,
            path=self.ref.path,
            product=self.ref.product,
            aaguid=str(info.aaguid),
            versions=tuple(info.versions),
            extensions=tuple(info.extensions),
            options=dict(info.options),
            firmware=firmware_text(info.firmware_version),
            min_pin_length=info.min_pin_length,
            force_pin_change=bool(info.force_pin_change),
            remaining_discoverable_credentials=info.remaining_disc_creds,
            algorithms=tuple(int(a["alg"]) for a in info.algorithms or [] if "alg" in a),
            transports=tuple(info.transports),
            certifications=dict(info.certifications or {}),
            pin_uv_protocols=tuple(info.pin_uv_protocols),
            pin_set=pin_set,
            pin_retries=retries,
            pin_blocked_until_power_cycle=power_cycle,
        )

    def identity(self) -> DeviceIdentity:
        """The key's identity for the log (getInfo only: no PIN, no touch)."""
        from fido2 import cbor

        info = self.ctap_info()
        stable = {k: v for k, v in dict(info).items() if k not in _STATEFUL_INFO_KEYS}
        serial = getattr(getattr(self.device, "descriptor", None), "serial_number", None)
        return DeviceIdentity(
            transport=self.ref.transport,
            path=self.ref.path,
            product=self.ref.product,
            aaguid=str(info.aaguid),
            firmware=firmware_text(info.firmware_version),
            serial=str(serial) if serial else None,
            info_sha256=hashlib.sha256(bytes(cbor.encode(stable))).hexdigest(),
        )

    # ------------------------------------------------------------------ PIN
    # ------------------------------------------------------------------ ceremonies
    def make_credential(
        self, request: CredentialRequest, interaction: Interaction
    ) -> NewCredential:
        """makeCredential on this key (keyadmin.device.ceremony.make_credential)."""
        from keyadmin.device.ceremony import make_credential

        return make_credential(self.device, request, interaction)

    def get_assertion(self, request: AssertionRequest, interaction: Interaction) -> SignedAssertion:
        """getAssertion on this key (keyadmin.device.ceremony.get_assertion)."""
        from keyadmin.device.ceremony import get_assertion

        return get_assertion(self.device, request, interaction)

    def _client_pin(self) -> ClientPin:
        from fido2.ctap2 import ClientPin

        if not ClientPin.is_supported(self.ctap.info):
            raise PinError("this key does not support a PIN (clientPin)")
        return ClientPin(self.ctap)

    def _pin_call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call a PIN operation; a wrong PIN becomes PinInvalid with the retries left."""
        from fido2.ctap import CtapError

        try:
            with device_errors():
                return fn(*args, **kwargs)
        except PinError as e:
            cause = e.__cause__
            if isinstance(e, PinInvalid) or (
                isinstance(cause, CtapError) and cause.code == CtapError.ERR.PIN_INVALID
            ):
                raise PinInvalid(retries_left=self.pin_retries()[0]) from None
            raise

    def pin_retries(self) -> tuple[int, bool]:
        with device_errors():
            retries, power_cycle = self._client_pin().get_pin_retries()
        return retries, bool(power_cycle)

    def set_pin(self, pin: str) -> None:
        if self.ctap_info().options.get("clientPin"):
            raise PinError(
                "the key already has a PIN", hint="change it with: keyadmin device pin change"
            )
        self._check_length(pin)
        self._pin_call(self._client_pin().set_pin, pin)

    def change_pin(self, old_pin: str, new_pin: str) -> None:
        self._check_length(new_pin)
        self._pin_call(self._client_pin().change_pin, old_pin, new_pin)

    def verify_pin(self, pin: str) -> None:
        """Prove the PIN by obtaining a token (and dropping it)."""
        self.token(pin)

    def token(self, pin: str, permissions: int | None = None, rp_id: str | None = None) -> bytes:
        from fido2.ctap2 import ClientPin

        if not self.ctap_info().options.get("clientPin"):
            raise PinError("the key has no PIN", hint="set one with: keyadmin device pin set")
        perms = permissions if permissions is not None else ClientPin.PERMISSION.GET_ASSERTION
        if perms & (ClientPin.PERMISSION.MAKE_CREDENTIAL | ClientPin.PERMISSION.GET_ASSERTION):
            rp_id = rp_id or "keyadmin.invalid"
        cp = self._client_pin()
        token: bytes = self._pin_call(cp.get_pin_token, pin, ClientPin.PERMISSION(perms), rp_id)
        self._last_protocol = cp.protocol
        return token

    def _check_length(self, pin: str) -> None:
        minimum = self.ctap_info().min_pin_length
        if len(pin) < minimum:
            raise PinError(
                f"the PIN is shorter than the key's minimum of {minimum} characters",
                hint="choose a longer PIN",
            )
        if len(pin.encode()) > 63:
            raise PinError("the PIN is longer than 63 bytes", hint="choose a shorter PIN")

    # ------------------------------------------------------------------ config
    def _config(self, pin: str | None) -> Config:
        from fido2.ctap2 import ClientPin, Config

        info = self.ctap_info()
        if not Config.is_supported(info):
            raise DeviceError("this key does not support authenticatorConfig (CTAP 2.1)")
        if not info.options.get("clientPin"):
            if info.options.get("alwaysUv"):
                raise PinError("alwaysUv is on but no PIN is set")
            return Config(self.ctap)
        if pin is None:
            raise PinError("the key has a PIN: it is needed to change the configuration")
        token = self.token(pin, ClientPin.PERMISSION.AUTHENTICATOR_CFG)
        return Config(self.ctap, self._last_protocol, token)

    def set_always_uv(self, enabled: bool, pin: str | None) -> bool:
        """Turn alwaysUv on or off. Returns True when it changed."""
        if bool(self.ctap_info().options.get("alwaysUv")) == enabled:
            return False
        config = self._config(pin)
        with device_errors():
            config.toggle_always_uv()
        return True

    def set_min_pin_length(
        self, length: int, pin: str | None, rp_ids: list[str] | None = None, force: bool = False
    ) -> bool:
        info = self.ctap_info()
        if length < info.min_pin_length:
            raise PinError(
                f"the key's minimum PIN length is {info.min_pin_length}; it can only grow",
                hint="only a reset lowers it",
            )
        if length == info.min_pin_length and not rp_ids and not force:
            return False
        config = self._config(pin)
        with device_errors():
            config.set_min_pin_length(
                min_pin_length=length, rp_ids=rp_ids or None, force_change_pin=force
            )
        return True

    def enable_enterprise_attestation(self, pin: str | None) -> bool:
        info = self.ctap_info()
        if "ep" not in info.options:
            raise DeviceError("this key does not support enterprise attestation")
        if info.options.get("ep"):
            return False
        config = self._config(pin)
        with device_errors():
            config.enable_enterprise_attestation()
        return True

    # ------------------------------------------------------------------ credentials
    def _credman(self, pin: str) -> CredentialManagement:
        from fido2.ctap2 import ClientPin, CredentialManagement

        if not CredentialManagement.is_supported(self.ctap_info()):
            raise DeviceError("this key does not support credential management")
        token = self.token(pin, ClientPin.PERMISSION.CREDENTIAL_MGMT)
        return CredentialManagement(self.ctap, self._last_protocol, token)

    def list_credentials(self, pin: str, rp_id: str | None = None) -> list[StoredCredential]:
        from fido2.ctap import CtapError
        from fido2.ctap2 import CredentialManagement

        r = CredentialManagement.RESULT
        cm = self._credman(pin)
        out: list[StoredCredential] = []
        with device_errors():
            try:
                rps = cm.enumerate_rps()
            except CtapError as e:
                if e.code == CtapError.ERR.NO_CREDENTIALS:
                    return []
                raise
            for rp in rps:
                rid = rp[r.RP]["id"]
                if rp_id is not None and rid != rp_id:
                    continue
                for cred in cm.enumerate_creds(rp[r.RP_ID_HASH]):
                    user = cred[r.USER]
                    key = cred.get(r.PUBLIC_KEY) or {}
                    out.append(
                        StoredCredential(
                            rp_id=rid,
                            credential_id=bytes(cred[r.CREDENTIAL_ID]["id"]).hex(),
                            user_id=bytes(user["id"]).hex(),
                            user_name=user.get("name"),
                            display_name=user.get("displayName"),
                            cred_protect=cred.get(r.CRED_PROTECT),
                            algorithm=key.get(3),
                        )
                    )
        return out

    def find_credential(self, pin: str, credential_id: bytes) -> StoredCredential:
        """The discoverable credential with this id (DeviceError when the key has none)."""
        import hmac

        for cred in self.list_credentials(pin):
            if hmac.compare_digest(bytes.fromhex(cred.credential_id), credential_id):
                return cred
        raise DeviceError(f"no credential {credential_id.hex()} on this key")

    def delete_credential(self, pin: str, credential_id: bytes) -> None:
        from fido2.ctap import CtapError
        from fido2.webauthn import PublicKeyCredentialDescriptor, PublicKeyCredentialType

        cm = self._credman(pin)
        try:
            with device_errors():
                cm.delete_cred(
                    PublicKeyCredentialDescriptor(
                        type=PublicKeyCredentialType.PUBLIC_KEY, id=credential_id
                    )
                )
        except DeviceError as e:
            cause = e.__cause__
            if isinstance(cause, CtapError) and cause.code == CtapError.ERR.NO_CREDENTIALS:
                raise DeviceError(f"no credential {credential_id.hex()} on this key") from None
            raise

    def ctap_info(self) -> Info:
        """getInfo, with a malformed or missing reply as a keyadmin error (exit 4)."""
        with device_errors():
            return self.ctap.get_info()

    # ------------------------------------------------------------------ reset
    def fingerprint(self) -> str:
        """What tells this key apart between two commands, as far as CTAP allows: transport
        and path, the USB serial number where the key reports one, the whole getInfo (AAGUID,
        firmware, remaining discoverable credentials, PIN set or not, ...) and the PIN retry
        counter. Two factory-fresh keys of one model still look alike: the touch the reset
        asks for, on the key that blinks, is the last word."""
        from fido2 import cbor

        with device_errors():
            info = self.ctap_info()
            retries = self.pin_retries() if info.options.get("clientPin") else None
        serial = getattr(getattr(self.device, "descriptor", None), "serial_number", None)
        parts = [
            self.ref.selector.encode(),
            str(serial).encode(),
            bytes(cbor.encode(dict(info))),
            str(retries).encode(),
        ]
        return hashlib.sha256(b"\x00".join(parts)).hexdigest()[:32]

    def reset(self, expected_fingerprint: str) -> None:
        if self.fingerprint() != expected_fingerprint:
            raise DeviceError(
                "the key changed since the confirmation; nothing was reset",
                hint="run the reset again with the key you mean to wipe",
            )
        with device_errors():
            self.ctap.reset()
