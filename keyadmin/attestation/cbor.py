"""A strict CBOR decoder for the subset WebAuthn uses.

python-fido2's decoder is lenient in ways a verifier must not be: it returns a truncated byte
string when the data runs short, lets a duplicate map key overwrite the first, and reads any
simple value or float as a boolean. This one accepts only unsigned and negative integers,
byte and text strings, arrays, maps (no duplicate keys), false, true and null, with definite
and minimally encoded lengths, and raises ``CborError`` on anything else.
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 16


class CborError(ValueError):
    """The bytes are not the strict CBOR subset WebAuthn uses."""


def decode(data: bytes) -> Any:
    """Decode exactly one item; trailing bytes are an error."""
    value, offset = decode_from(data, 0)
    if offset != len(data):
        raise CborError(f"{len(data) - offset} trailing bytes after the CBOR item")
    return value


def decode_from(data: bytes, offset: int, depth: int = 0) -> tuple[Any, int]:
    """Decode one item at ``offset``; return it and the offset after it."""
    if depth > MAX_DEPTH:
        raise CborError("CBOR nesting is too deep")
    if offset >= len(data):
        raise CborError("unexpected end of CBOR data")
    head = data[offset]
    major, info = head >> 5, head & 0x1F
    offset += 1
    if major == 7:
        simple = {20: False, 21: True, 22: None}
        if info not in simple:
            raise CborError(f"unsupported CBOR simple value or float (0x{head:02x})")
        return simple[info], offset
    arg, offset = _read_argument(data, offset, info)
    if major == 0:
        return arg, offset
    if major == 1:
        return -1 - arg, offset
    if major in (2, 3):
        end = offset + arg
        if end > len(data):
            raise CborError(f"CBOR string of {arg} bytes runs past the end of the data")
        raw = data[offset:end]
        if major == 2:
            return raw, end
        try:
            return raw.decode("utf-8"), end
        except UnicodeDecodeError:
            raise CborError("CBOR text string is not UTF-8") from None
    if major == 4:
        items = []
        for _ in range(arg):
            item, offset = decode_from(data, offset, depth + 1)
            items.append(item)
        return items, offset
    if major == 5:
        out: dict[Any, Any] = {}
        for _ in range(arg):
            key, offset = decode_from(data, offset, depth + 1)
            if not isinstance(key, (int, str)) or isinstance(key, bool):
                raise CborError("CBOR map key is not an integer or text string")
            if key in out:
                raise CborError(f"duplicate CBOR map key {key!r}")
            out[key], offset = decode_from(data, offset, depth + 1)
        return out, offset
    raise CborError(f"unsupported CBOR major type {major} (tags are not used by WebAuthn)")


def _read_argument(data: bytes, offset: int, info: int) -> tuple[int, int]:
    if info < 24:
        return info, offset
    sizes = {24: 1, 25: 2, 26: 4, 27: 8}
    if info not in sizes:
        raise CborError("indefinite or reserved CBOR length")
    size = sizes[info]
    if offset + size > len(data):
        raise CborError("unexpected end of CBOR data in a length")
    value = int.from_bytes(data[offset : offset + size], "big")
    if value < (24 if size == 1 else 1 << (8 * size // 2)):
        raise CborError("CBOR length or integer is not minimally encoded")
    return value, offset + size
