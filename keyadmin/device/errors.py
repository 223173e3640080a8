"""Translate python-fido2 exceptions into keyadmin errors that name the fix."""

from __future__ import annotations

from keyadmin.errors import (
    DeviceError,
    DeviceProtocolError,
    KeyadminError,
    PinBlocked,
    PinError,
    PinInvalid,
)


def from_fido2(exc: BaseException) -> KeyadminError:
    from fido2.client import ClientError
    from fido2.ctap import CtapError

    if isinstance(exc, ClientError) and isinstance(exc.cause, BaseException):
        return from_fido2(exc.cause)
    if isinstance(exc, CtapError):
        err = CtapError.ERR
        code = exc.code
        if code == err.PIN_INVALID:
            return PinInvalid()
        if code == err.PIN_BLOCKED:
            return PinBlocked(
                "the PIN is locked after too many wrong attempts",
                hint="the key must be reset (keyadmin device reset), which destroys its credentials",
            )
        if code == err.PIN_AUTH_BLOCKED:
            return PinBlocked(
                "PIN entry is blocked after 3 wrong attempts in a row",
                hint="remove the key and insert it again (power cycle), then retry",
            )
        if code == err.PIN_NOT_SET:
            return PinError("the key has no PIN", hint="set one with: keyadmin device pin set")
        if code == err.PUAT_REQUIRED:
            return PinError("the key requires user verification (PIN) for this operation")
        if code == err.PIN_POLICY_VIOLATION:
            return PinError(
                "the PIN does not meet the key's policy (too short, or a PIN change is required)"
            )
        if code == err.KEEPALIVE_CANCEL:
            return DeviceError("the operation was cancelled")
        if code in (err.USER_ACTION_TIMEOUT, err.ACTION_TIMEOUT):
            return DeviceError("the key was not touched in time", hint="touch the key when it blinks")
        name = getattr(code, "name", None) or f"0x{int(code):02X}"
        return DeviceProtocolError(f"the key refused the request: CTAP error {name}", ctap=int(code))
    return DeviceProtocolError(f"the key's reply could not be used ({type(exc).__name__}: {exc})")
