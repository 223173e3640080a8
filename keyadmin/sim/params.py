"""The CBOR values a software-key command reads and answers, and typed parameter access.

python-fido2's decoder yields integers (bool among them), text, byte strings, arrays and maps:
``CborIn``. A command's parameters are a map (``Params``); ``require_*`` and ``optional_*``
answer MISSING_PARAMETER / CBOR_UNEXPECTED_TYPE the way CTAP 2.1 §8 asks. A reply (``Reply``)
is a map of integer keys to ``CborOut`` values, which python-fido2's encoder writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias, TypeVar

from keyadmin.sim.ctap import CtapFailure, Err

CborIn: TypeAlias = "int | str | bytes | list[CborIn] | dict[CborIn, CborIn]"
CborMap: TypeAlias = "dict[CborIn, CborIn]"
Params: TypeAlias = "dict[CborIn, CborIn]"
CborOut: TypeAlias = (
    "int | str | bytes | Sequence[CborOut] | Mapping[str, CborOut] | Mapping[int, CborOut]"
)
Reply: TypeAlias = "dict[int, CborOut]"

_Scalar = TypeVar("_Scalar", int, str, bytes)


def _present(params: Params, key: int) -> CborIn:
    if key not in params:
        raise CtapFailure(Err.MISSING_PARAMETER, f"parameter 0x{key:02x} missing")
    return params[key]


def _wrong_type(key: int) -> CtapFailure:
    return CtapFailure(Err.CBOR_UNEXPECTED_TYPE, f"parameter 0x{key:02x} has the wrong type")


def require(params: Params, key: int, kind: type[_Scalar]) -> _Scalar:
    value = _present(params, key)
    if not isinstance(value, kind):
        raise _wrong_type(key)
    return value


def optional(params: Params, key: int, kind: type[_Scalar]) -> _Scalar | None:
    return require(params, key, kind) if key in params else None


def require_map(params: Params, key: int) -> CborMap:
    value = _present(params, key)
    if not isinstance(value, dict):
        raise _wrong_type(key)
    return value


def optional_map(params: Params, key: int) -> CborMap | None:
    return require_map(params, key) if key in params else None


def require_list(params: Params, key: int) -> list[CborIn]:
    value = _present(params, key)
    if not isinstance(value, list):
        raise _wrong_type(key)
    return value


def optional_list(params: Params, key: int) -> list[CborIn] | None:
    return require_list(params, key) if key in params else None


def text_or_none(value: CborIn | None) -> str | None:
    """An optional text member (rp.name, user.name, user.displayName): kept only when text."""
    return value if isinstance(value, str) else None
