"""Translate python-fido2 exceptions into keyadmin errors that name the fix."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager

from keyadmin.errors import (
    DeviceError,
    DeviceProtocolError,
    KeyadminError,
    PinBlocked,
    PinError,
    PinInvalid,
    PinNotSet,
)


class CredentialExcluded(DeviceProtocolError):
    """makeCredential: the key already holds a credential of the exclude list."""


class UnsupportedAlgorithm(DeviceProtocolError):
    """makeCredential: the key makes credentials with none of the algorithms asked for."""


class NoCredentials(DeviceProtocolError):
    """getAssertion: the key holds none of the credentials asked for."""


@contextmanager
def device_errors() -> Iterator[None]:
    """Turn whatever python-fido2 raises on a broken device reply into a keyadmin error.

    python-fido2 raises CtapError for status codes, but plain ValueError, IndexError,
    KeyError or TypeError from its CBOR and authenticator-data parsers when a reply is
    malformed or truncated; callers wrap device calls in this. Such an error is the key's
    fault only when it was raised inside python-fido2: the same error raised by keyadmin's
    own code is a bug in keyadmin and goes on as it is ("unexpected", exit 1).
    """
    try:
        yield
    except KeyadminError:
        raise
    except OSError as e:  # a USB key pulled mid-command (ENODEV), a node gone, an I/O error
        raise DeviceError(
            f"the key cannot be reached ({e.strerror or e})",
            hint="check it is plugged in and readable (keyadmin doctor), then retry",
        ) from e
    except (ValueError, IndexError, KeyError, TypeError, struct.error) as e:
        if not _raised_in_fido2(e):
            raise
        raise DeviceProtocolError(
            f"the key sent a malformed reply ({type(e).__name__}: {e})",
            hint="retry; if it persists the key or its firmware is faulty",
        ) from e
    except Exception as e:
        if (type(e).__module__ or "").startswith("fido2"):
            raise from_fido2(e) from e
        raise


def _raised_in_fido2(exc: BaseException) -> bool:
    """Whether the innermost Python frame of ``exc``'s traceback is python-fido2's."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return str(tb.tb_frame.f_globals.get("__name__", "")).startswith("fido2")


def from_fido2(exc: BaseException) -> KeyadminError:
    from fido2.client import ClientError
    from fido2.ctap import CtapError

    if isinstance(exc, ClientError) and isinstance(exc.cause, BaseException):
        return from_fido2(exc.cause)
    if (
        isinstance(exc, ClientError)
        and exc.code == ClientError.ERR.CONFIGURATION_UNSUPPORTED
        and "user verification" in str(exc.cause).lower()
    ):
        return PinError(
            "the key has no PIN (user verification is not configured)",
            hint="set one with: keyadmin device pin set",
        )
    if isinstance(exc, CtapError):
        err = CtapError.ERR
        code = exc.code
        if code == err.PIN_INVALID:
            return PinInvalid()
        if code == err.PIN_BLOCKED:
            return PinBlocked(
                "the PIN is locked after too many wrong attempts",
                hint="only a reset helps (keyadmin device reset), and it destroys every credential",
            )
        if code == err.PIN_AUTH_BLOCKED:
            return PinBlocked(
                "PIN entry is blocked after 3 wrong attempts in a row",
                hint="remove the key and insert it again (power cycle), then retry",
            )
        if code == err.PIN_NOT_SET:
            return PinNotSet("the key has no PIN", hint="set one with: keyadmin device pin set")
        if code == err.PUAT_REQUIRED:
            return PinError("the key requires user verification (PIN) for this operation")
        if code == err.PIN_POLICY_VIOLATION:
            return PinError(
                "the PIN does not meet the key's policy (too short, or a PIN change is required)"
            )
        if code == err.KEEPALIVE_CANCEL:
            return DeviceError("the operation was cancelled")
        if code in (err.USER_ACTION_TIMEOUT, err.ACTION_TIMEOUT):
            return DeviceError(
                "the key was not touched in time", hint="touch the key when it blinks"
            )
        name = getattr(code, "name", None) or f"0x{int(code):02X}"
        refused = {
            err.CREDENTIAL_EXCLUDED: CredentialExcluded,
            err.UNSUPPORTED_ALGORITHM: UnsupportedAlgorithm,
            err.NO_CREDENTIALS: NoCredentials,
        }.get(code, DeviceProtocolError)
        return refused(f"the key refused the request: CTAP error {name}", ctap=int(code))
    return DeviceProtocolError(f"the key's reply could not be used ({type(exc).__name__}: {exc})")
