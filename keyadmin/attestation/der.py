"""A strict, minimal DER reader for the few ASN.1 structures keyadmin reads itself.

``cryptography`` parses certificates; this reads the contents of extensions it
leaves opaque (the FIDO AAGUID, Apple's nonce, Android's key description) and the
outer AlgorithmIdentifier of a certificate. Only definite, minimally encoded
lengths are accepted; any deviation raises ``DerError``.
"""

from __future__ import annotations

from dataclasses import dataclass

UNIVERSAL = 0
CONTEXT = 2

TAG_INTEGER = 2
TAG_OCTET_STRING = 4
TAG_NULL = 5
TAG_OID = 6
TAG_ENUMERATED = 10
TAG_SEQUENCE = 16
TAG_SET = 17

_MAX_LENGTH = 1 << 24


class DerError(ValueError):
    """The bytes are not valid DER for the expected structure."""


@dataclass(frozen=True)
class Tlv:
    """One DER element: its tag and its content octets."""

    tag_class: int
    constructed: bool
    tag: int
    value: bytes

    def is_universal(self, tag: int) -> bool:
        return self.tag_class == UNIVERSAL and self.tag == tag

    def is_context(self, tag: int) -> bool:
        return self.tag_class == CONTEXT and self.tag == tag


def read_tlv(data: bytes, offset: int = 0) -> tuple[Tlv, int]:
    """Read one element at ``offset``; return it and the offset after it."""
    end = len(data)
    if offset >= end:
        raise DerError("unexpected end of data reading a tag")
    first = data[offset]
    offset += 1
    tag_class = first >> 6
    constructed = bool(first & 0x20)
    tag = first & 0x1F
    if tag == 0x1F:
        tag = 0
        for _ in range(4):
            if offset >= end:
                raise DerError("unexpected end of data in a high tag number")
            b = data[offset]
            offset += 1
            if tag == 0 and b == 0x80:
                raise DerError("non-minimal high tag number")
            tag = (tag << 7) | (b & 0x7F)
            if not b & 0x80:
                break
        else:
            raise DerError("tag number too large")
        if tag < 0x1F:
            raise DerError("high tag form used for a low tag number")
    if offset >= end:
        raise DerError("unexpected end of data reading a length")
    length = data[offset]
    offset += 1
    if length & 0x80:
        count = length & 0x7F
        if count == 0:
            raise DerError("indefinite length is not DER")
        if count > 3 or offset + count > end:
            raise DerError("length field too long")
        length = int.from_bytes(data[offset : offset + count], "big")
        offset += count
        if length < 0x80 or length < (1 << (8 * (count - 1))):
            raise DerError("non-minimal length encoding")
    if length > _MAX_LENGTH or offset + length > end:
        raise DerError("element runs past the end of the data")
    return Tlv(tag_class, constructed, tag, data[offset : offset + length]), offset + length


def parse_one(data: bytes) -> Tlv:
    """Parse exactly one element; trailing bytes are an error."""
    tlv, offset = read_tlv(data)
    if offset != len(data):
        raise DerError(f"{len(data) - offset} trailing bytes after the DER element")
    return tlv


def children(tlv: Tlv) -> list[Tlv]:
    """The elements inside a constructed element (SEQUENCE, SET, explicit tag)."""
    if not tlv.constructed:
        raise DerError("expected a constructed element")
    out: list[Tlv] = []
    offset = 0
    while offset < len(tlv.value):
        child, offset = read_tlv(tlv.value, offset)
        out.append(child)
    return out


def expect(tlv: Tlv, tag: int, what: str) -> Tlv:
    """Return ``tlv`` if it is the universal ``tag``; raise naming ``what`` otherwise."""
    if not tlv.is_universal(tag):
        raise DerError(
            f"{what}: expected universal tag {tag}, found class {tlv.tag_class} tag {tlv.tag}"
        )
    return tlv


def as_int(tlv: Tlv, what: str) -> int:
    """Decode an INTEGER or ENUMERATED element."""
    if tlv.tag_class != UNIVERSAL or tlv.tag not in (TAG_INTEGER, TAG_ENUMERATED):
        raise DerError(f"{what}: expected an INTEGER")
    if not tlv.value:
        raise DerError(f"{what}: empty INTEGER")
    if len(tlv.value) > 1 and (
        (tlv.value[0] == 0 and not tlv.value[1] & 0x80)
        or (tlv.value[0] == 0xFF and tlv.value[1] & 0x80)
    ):
        raise DerError(f"{what}: non-minimal INTEGER")
    return int.from_bytes(tlv.value, "big", signed=True)


def as_octets(tlv: Tlv, what: str) -> bytes:
    """Decode a primitive OCTET STRING."""
    if not tlv.is_universal(TAG_OCTET_STRING) or tlv.constructed:
        raise DerError(f"{what}: expected an OCTET STRING")
    return tlv.value
