"""authenticatorClientPIN (CTAP 2.1 §6.5) and the pinUvAuthToken checks other commands make.

The PIN itself lives in the state file (LEFT(SHA-256(PIN), 16), the retry counter); the token,
the PIN/UV protocols' key-agreement keys and the consecutive-failure count are volatile: a
power cycle drops them, as on a real key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from keyadmin.sim.ctap import (
    MAX_CONSECUTIVE_PIN_FAILURES,
    MAX_PIN_RETRIES,
    CtapFailure,
    Err,
    Perm,
)
from keyadmin.sim.params import Params, Reply, optional, require, require_map
from keyadmin.sim.pinproto import PinProtocol, PinProtocolError, PinProtocolV1, PinProtocolV2
from keyadmin.sim.state import KeyState, b64d, b64e

#: getPinUvAuthTokenUsingPinWithPermissions: the permissions this key grants.
SUPPORTED_PERMISSIONS = Perm.MC | Perm.GA | Perm.CM | Perm.LBW | Perm.ACFG


@dataclass
class Token:
    """The current pinUvAuthToken and its permissions (CTAP 2.1 §6.5.2.1)."""

    value: bytes = field(default_factory=lambda: os.urandom(32))
    permissions: int = 0
    rp_id: str | None = None
    protocol: int = 0
    in_use: bool = False

    def reset(self) -> None:
        self.value = os.urandom(32)
        self.permissions = 0
        self.rp_id = None
        self.protocol = 0
        self.in_use = False


def _pin_hash(pin: bytes) -> str:
    return b64e(hashlib.sha256(pin).digest()[:16])


class ClientPin:
    """The PIN, the token and the checks on pinUvAuthParam."""

    def __init__(self, state: KeyState, save: Callable[[], None]) -> None:
        self.state = state
        self._save = save
        self.protocols: dict[int, PinProtocol] = {1: PinProtocolV1(), 2: PinProtocolV2()}
        self.token = Token()
        self.consecutive_failures = 0

    def power_cycle(self) -> None:
        self.consecutive_failures = 0
        for proto in self.protocols.values():
            proto.regenerate()
        self.token.reset()

    # ----------------------------------------------------------- checks for other commands
    def protocol(self, params: Params, key: int) -> PinProtocol:
        version = require(params, key, int)
        proto = self.protocols.get(version)
        if proto is None:
            raise CtapFailure(Err.INVALID_PARAMETER, f"PIN/UV protocol {version} not supported")
        return proto

    def check_token(
        self,
        params: Params,
        param_key: int,
        proto_key: int,
        message: bytes,
        permission: int,
        rp_id: str | None = None,
    ) -> None:
        """Verify pinUvAuthParam over ``message`` with the current token (CTAP 2.1 §6.5.5.7)."""
        proto = self.protocol(params, proto_key)
        auth = require(params, param_key, bytes)
        tok = self.token
        if not tok.in_use or tok.protocol != proto.version:
            raise CtapFailure(Err.PIN_AUTH_INVALID, "no token from this protocol")
        if not proto.verify(tok.value, message, auth):
            raise CtapFailure(Err.PIN_AUTH_INVALID, "pinUvAuthParam does not verify")
        if not tok.permissions & permission:
            raise CtapFailure(Err.PIN_AUTH_INVALID, "token lacks the permission")
        if rp_id is not None:
            if tok.rp_id is None:
                tok.rp_id = rp_id
            elif not hmac.compare_digest(tok.rp_id.encode(), rp_id.encode()):
                raise CtapFailure(Err.PIN_AUTH_INVALID, "token is bound to another RP ID")

    def selection_probe(self, params: Params, param_key: int) -> None:
        """An empty pinUvAuthParam is a 'touch to select' probe (CTAP 2.1 §6.1.2 step 1)."""
        auth = params.get(param_key)
        if isinstance(auth, bytes) and len(auth) == 0:
            if self.state.pin_hash is not None:
                raise CtapFailure(Err.PIN_AUTH_INVALID, "selection probe; a PIN is set")
            raise CtapFailure(Err.PIN_NOT_SET, "selection probe; no PIN set")

    # ----------------------------------------------------------- the command
    def command(self, params: Params) -> Reply | None:
        sub = require(params, 0x02, int)
        s = self.state
        if sub == 0x01:  # getPINRetries; a YubiKey without a PIN answers PIN_NOT_SET
            if s.pin_hash is None:
                raise CtapFailure(Err.PIN_NOT_SET, "no PIN set")
            return {0x03: s.pin_retries, 0x04: self._blocked()}
        proto = self.protocol(params, 0x01)
        if sub == 0x02:  # getKeyAgreement
            return {0x01: proto.get_public_key()}
        if sub == 0x03:
            self._set_pin(params, proto)
            return None
        if sub == 0x04:
            self._change_pin(params, proto)
            return None
        if sub == 0x05:  # getPinToken (CTAP 2.0): mc and ga permissions
            return self._pin_token(params, proto, Perm.MC | Perm.GA, None)
        if sub == 0x09:  # getPinUvAuthTokenUsingPinWithPermissions
            permissions = require(params, 0x09, int)
            rp_id = optional(params, 0x0A, str)
            if permissions == 0:
                raise CtapFailure(Err.INVALID_PARAMETER, "permissions must not be zero")
            if permissions & ~SUPPORTED_PERMISSIONS:
                raise CtapFailure(Err.UNAUTHORIZED_PERMISSION, "permission not supported")
            if permissions & (Perm.MC | Perm.GA) and rp_id is None:
                raise CtapFailure(Err.MISSING_PARAMETER, "mc/ga permissions need an rpId")
            return self._pin_token(params, proto, permissions, rp_id)
        if sub in (0x06, 0x07):
            raise CtapFailure(Err.INVALID_SUBCOMMAND, "no built-in user verification")
        raise CtapFailure(Err.INVALID_SUBCOMMAND, f"clientPIN subcommand {sub}")

    def _blocked(self) -> bool:
        return self.consecutive_failures >= MAX_CONSECUTIVE_PIN_FAILURES

    def _shared_secret(self, params: Params, proto: PinProtocol) -> bytes:
        platform_key = require_map(params, 0x03)
        try:
            return proto.decapsulate(platform_key)
        except PinProtocolError as e:
            raise CtapFailure(Err.INVALID_PARAMETER, str(e)) from None

    def _decrypt_new_pin(self, proto: PinProtocol, shared: bytes, new_pin_enc: bytes) -> bytes:
        expected = 64 if proto.version == 1 else 80
        if len(new_pin_enc) != expected:
            raise CtapFailure(Err.INVALID_PARAMETER, "newPinEnc has the wrong length")
        try:
            padded = proto.decrypt(shared, new_pin_enc)
        except PinProtocolError as e:
            raise CtapFailure(Err.INVALID_PARAMETER, str(e)) from None
        pin = padded.split(b"\0", 1)[0]
        if len(pin) > 63:
            raise CtapFailure(Err.PIN_POLICY_VIOLATION, "PIN longer than 63 bytes")
        try:
            code_points = len(pin.decode("utf-8"))
        except UnicodeDecodeError:
            raise CtapFailure(Err.PIN_POLICY_VIOLATION, "PIN is not UTF-8") from None
        if code_points < self.state.min_pin_length:
            raise CtapFailure(Err.PIN_POLICY_VIOLATION, "PIN shorter than minPINLength")
        return pin

    def _store_pin(self, pin: bytes) -> None:
        s = self.state
        s.pin_hash = _pin_hash(pin)
        s.pin_code_points = len(pin.decode("utf-8"))
        s.pin_retries = MAX_PIN_RETRIES
        s.force_pin_change = False
        self.token.reset()
        self._save()

    def _set_pin(self, params: Params, proto: PinProtocol) -> None:
        shared = self._shared_secret(params, proto)
        auth = require(params, 0x04, bytes)
        new_pin_enc = require(params, 0x05, bytes)
        if self.state.pin_hash is not None:
            raise CtapFailure(Err.PIN_AUTH_INVALID, "a PIN is already set; use changePIN")
        if not proto.verify(shared, new_pin_enc, auth):
            raise CtapFailure(Err.PIN_AUTH_INVALID, "pinUvAuthParam does not verify")
        self._store_pin(self._decrypt_new_pin(proto, shared, new_pin_enc))

    def _verify_pin_hash(self, proto: PinProtocol, shared: bytes, pin_hash_enc: bytes) -> None:
        """Check pinHashEnc against the stored PIN, counting retries (CTAP 2.1 §6.5.5.5)."""
        s = self.state
        if s.pin_retries <= 0:
            raise CtapFailure(Err.PIN_BLOCKED, "PIN retries exhausted")
        if self._blocked():
            raise CtapFailure(Err.PIN_AUTH_BLOCKED, "power cycle needed")
        s.pin_retries -= 1
        self._save()  # the decrement is persisted before the comparison
        try:
            got = proto.decrypt(shared, pin_hash_enc)[:16]
        except PinProtocolError:
            got = b""
        stored = b64d(s.pin_hash or "")
        if not (len(got) == 16 and hmac.compare_digest(got, stored)):
            proto.regenerate()
            self.consecutive_failures += 1
            if s.pin_retries <= 0:
                raise CtapFailure(Err.PIN_BLOCKED, "PIN retries exhausted")
            if self._blocked():
                raise CtapFailure(Err.PIN_AUTH_BLOCKED, "3 consecutive wrong PINs")
            raise CtapFailure(Err.PIN_INVALID, "wrong PIN")
        s.pin_retries = MAX_PIN_RETRIES
        self.consecutive_failures = 0
        self._save()

    def _change_pin(self, params: Params, proto: PinProtocol) -> None:
        shared = self._shared_secret(params, proto)
        auth = require(params, 0x04, bytes)
        new_pin_enc = require(params, 0x05, bytes)
        pin_hash_enc = require(params, 0x06, bytes)
        if self.state.pin_hash is None:
            raise CtapFailure(Err.PIN_NOT_SET, "no PIN to change")
        if self.state.pin_retries <= 0:
            raise CtapFailure(Err.PIN_BLOCKED, "PIN retries exhausted")
        if not proto.verify(shared, new_pin_enc + pin_hash_enc, auth):
            raise CtapFailure(Err.PIN_AUTH_INVALID, "pinUvAuthParam does not verify")
        self._verify_pin_hash(proto, shared, pin_hash_enc)
        new_pin = self._decrypt_new_pin(proto, shared, new_pin_enc)
        same = hmac.compare_digest(_pin_hash(new_pin), self.state.pin_hash or "")
        if self.state.force_pin_change and same:
            raise CtapFailure(Err.PIN_POLICY_VIOLATION, "a PIN change is forced: pick a new PIN")
        self._store_pin(new_pin)

    def _pin_token(
        self, params: Params, proto: PinProtocol, permissions: int, rp_id: str | None
    ) -> Reply:
        shared = self._shared_secret(params, proto)
        pin_hash_enc = require(params, 0x06, bytes)
        if self.state.pin_hash is None:
            raise CtapFailure(Err.PIN_NOT_SET, "no PIN set")
        self._verify_pin_hash(proto, shared, pin_hash_enc)
        if self.state.force_pin_change:
            # CTAP 2.1 §6.5.5.7: getPinToken (0x05) answers PIN_INVALID, the 0x09 form
            # PIN_POLICY_VIOLATION; the right PIN was checked first, so no retry is lost
            legacy = params.get(0x02) == 0x05
            code = Err.PIN_INVALID if legacy else Err.PIN_POLICY_VIOLATION
            raise CtapFailure(code, "the PIN must be changed first")
        tok = self.token
        tok.reset()
        tok.permissions = permissions
        tok.rp_id = rp_id
        tok.protocol = proto.version
        tok.in_use = True
        return {0x02: proto.encrypt(shared, tok.value)}
