"""The exception tree shared by every layer, and the exit codes it maps to.

Verification raises; it never returns False. Each error carries the data a
caller needs (``retries_left``, ``reason``) and a ``hint`` that names the fix.
The CLI (keyadmin.cli.main) is the one place that turns these into messages
and exit codes; the table below is published in docs/exit-codes.md.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    POLICY_REFUSED = 3
    DEVICE = 4
    PIN_UV = 5
    COUNTER = 6
    METADATA = 7


class KeyadminError(Exception):
    """Base of every error keyadmin raises on purpose."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, *, hint: str | None = None, **data: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "error": type(self).__name__,
            "message": self.message,
            "exit_code": int(self.exit_code),
        }
        if self.hint:
            out["hint"] = self.hint
        if self.data:
            out["data"] = {k: _jsonable(v) for k, v in self.data.items()}
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def failed_summary(reasons: list[dict[str, str]]) -> str:
    """The "2 rules failed (a, b)" of a refusal's one-line message; the details stay in the
    error's ``reasons`` (the CLI prints one failing rule a line)."""
    names = [r["rule"] for r in reasons if r.get("outcome") == "fail"]
    if not names:
        return "a required rule did not pass"
    return f"{len(names)} rule{'s' if len(names) > 1 else ''} failed ({', '.join(names)})"


class UsageError(KeyadminError):
    exit_code = ExitCode.USAGE


class ConfigError(KeyadminError):
    """A configuration file or setting is wrong (bad policy, empty trust set...)."""


class StateFileError(KeyadminError):
    """A software-key state file is missing, unreadable or corrupt."""


class DeviceError(KeyadminError):
    """No device, several devices, or a device that stopped answering."""

    exit_code = ExitCode.DEVICE


class DeviceProtocolError(DeviceError):
    """A device answered with something that is not valid CTAP."""


class PinError(KeyadminError):
    exit_code = ExitCode.PIN_UV


class PinInvalid(PinError):
    def __init__(self, retries_left: int | None = None) -> None:
        msg = "wrong PIN"
        hint = None
        if retries_left is not None:
            msg += f" ({retries_left} attempts left before the key locks)"
            if retries_left <= 3:
                msg += f" - WARNING: only {retries_left} left"
                hint = (
                    "type it carefully: when no attempt is left the key is locked for good "
                    "and only a reset helps, which erases every credential on it"
                )
        super().__init__(msg, hint=hint, retries_left=retries_left)
        self.retries_left = retries_left


class PinBlocked(PinError):
    pass


class PinNotSet(PinError):
    """The key has no PIN (CTAP PIN_NOT_SET)."""


class PolicyRefused(KeyadminError):
    exit_code = ExitCode.POLICY_REFUSED


class CounterViolation(KeyadminError):
    exit_code = ExitCode.COUNTER


class MetadataError(KeyadminError):
    exit_code = ExitCode.METADATA
