"""Authenticator data (WebAuthn §6.1): the one strict parser, for registrations and assertions.

Layout: rpIdHash (32) | flags (1) | signCount (4, big endian) | attested credential data
(AAGUID 16 | credential ID length 2 | credential ID | COSE public key), present exactly when
AT is set | extensions (one CBOR map with text keys), present exactly when ED is set.

``parse`` refuses, with ``AttestationMalformed`` (step-up makes it ``StepUpRefused``) naming
what is wrong: fewer than 37 bytes; AT clear in a registration or set in an assertion
(``attested``); attested credential data cut short, or a credential ID length outside 1..1023;
a public key that is not one CBOR map with integer keys; ED set without one CBOR map with text
keys after what precedes it; any byte after the last item the flags announce. CBOR is decoded
by ``keyadmin.attestation.cbor`` (definite, minimal lengths, no duplicate keys, no floats or
tags) or, for the audit's evidence grouping (one parse per stored credential), by
``canonical_item``: cbor2's C decoder held to the same rules by a type check and a re-encoding.

Step-up (``keyadmin.stepup.verify.parse_auth_data``), registrations
(``keyadmin.attestation.parse``) and the audit's grouping (``keyadmin.flows.audit``) all call
this. It uses nothing of ``cryptography`` (and cbor2 only in ``canonical_item``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple
from uuid import UUID

from keyadmin.attestation import cbor
from keyadmin.attestation.errors import AttestationMalformed

FLAG_UP = 0x01
FLAG_UV = 0x04
FLAG_BE = 0x08
FLAG_BS = 0x10
FLAG_AT = 0x40
FLAG_ED = 0x80

#: Decodes the first CBOR item of its argument: (the item, how many bytes it used).
ItemDecoder = Callable[[bytes], tuple[object, int]]


@dataclass(frozen=True)
class Flags:
    """Authenticator data flags (WebAuthn section 6.1), by name; ``raw`` is the byte."""

    up: bool
    uv: bool
    be: bool
    bs: bool
    at: bool
    ed: bool
    raw: int

    @classmethod
    def from_byte(cls, value: int) -> Flags:
        return _FLAGS[value]

    def to_dict(self) -> dict[str, bool | int]:
        return dataclasses.asdict(self)


def _flags(value: int) -> Flags:
    return Flags(
        up=bool(value & FLAG_UP),
        uv=bool(value & FLAG_UV),
        be=bool(value & FLAG_BE),
        bs=bool(value & FLAG_BS),
        at=bool(value & FLAG_AT),
        ed=bool(value & FLAG_ED),
        raw=value,
    )


_FLAGS = tuple(_flags(i) for i in range(256))


class AttestedCredential(NamedTuple):
    """Attested credential data (WebAuthn 6.5.1). A NamedTuple: immutable, and cheap to make
    (the audit builds one per stored credential)."""

    aaguid_raw: bytes  # 16 bytes
    credential_id: bytes
    public_key: dict[int, object]  # the COSE_Key map
    public_key_cbor: bytes  # its exact bytes

    @property
    def aaguid(self) -> UUID:
        return UUID(bytes=self.aaguid_raw)


class AuthenticatorData(NamedTuple):
    """Authenticator data that parsed: its layout holds, nothing in it is verified."""

    rp_id_hash: bytes
    flags: Flags
    counter: int
    attested: AttestedCredential | None  # present exactly when AT is set
    extensions: dict[str, object]  # empty when ED is clear
    extensions_cbor: bytes  # b"" when ED is clear
    raw: bytes


def canonical_item(data: bytes) -> tuple[object, int]:
    """The first CBOR item of ``data`` and its length, by cbor2's C decoder, held to what
    ``keyadmin.attestation.cbor`` accepts: it must hold only integers of at most 64 bits,
    byte and text strings, arrays, maps with integer or text keys, false, true and null
    (no floats, tags, other simple values; nesting at most ``cbor.MAX_DEPTH``), and its bytes
    must be exactly cbor2's encoding of what it decoded to - definite, minimal lengths, so no
    indefinite or non-minimal length and no duplicate map key (a map that lost one re-encodes
    shorter). Several times as fast as the pure-Python decoder: for the audit's grouping."""
    loads, dumps, errors = _cbor2()
    try:
        value: object = loads(data)
    except errors as e:
        raise cbor.CborError(f"not valid CBOR: {e}") from None
    _check_plain(value, 0)
    encoded = dumps(value)
    if not data.startswith(encoded):
        raise cbor.CborError(
            "CBOR is not in its one minimal encoding (a non-minimal or indefinite length, "
            "or a duplicate map key)"
        )
    return value, len(encoded)


@functools.cache
def _cbor2() -> tuple[
    Callable[[bytes], object], Callable[[object], bytes], tuple[type[Exception], ...]
]:
    import cbor2  # a runtime dependency, imported only by the code that uses it

    # cbor2 6 raises CBORDecodeError (not a ValueError); a text string that is not UTF-8
    # may surface as UnicodeDecodeError, a nesting beyond its own limit as RecursionError
    return cbor2.loads, cbor2.dumps, (cbor2.CBORError, ValueError, RecursionError)


_SCALARS = frozenset({bytes, str, bool, type(None)})
_KEYS = frozenset({int, str})
_INT_RANGE = range(-(2**64), 2**64)  # CBOR's major types 0 and 1; beyond: a bignum tag


def _check_plain(value: object, depth: int) -> None:
    kind = type(value)
    if kind is dict:
        assert isinstance(value, dict)
        if not _KEYS.issuperset(map(type, value)):
            raise cbor.CborError("CBOR map key is not an integer or text string")
        items: list[object] = [*value, *value.values()]
    elif kind is list:
        assert isinstance(value, list)
        items = value
    elif kind is int:
        if value not in _INT_RANGE:
            raise cbor.CborError("CBOR integer beyond 64 bits (a bignum tag)")
        return
    elif kind in _SCALARS:
        return
    else:
        raise cbor.CborError(f"unsupported CBOR item {kind.__name__} (a float, tag or simple)")
    if depth >= cbor.MAX_DEPTH:
        raise cbor.CborError("CBOR nesting is too deep")
    for item in items:
        kind = type(item)
        if kind in _SCALARS or (kind is int and item in _INT_RANGE):
            continue
        _check_plain(item, depth + 1)


def _strict_item(data: bytes) -> tuple[object, int]:
    value: object
    value, end = cbor.decode_from(data, 0)
    return value, end


#: The one encoding of an ES256 P-256 COSE key, {1: 2, 3: -7, -1: 1, -2: x, -3: y} with x and
#: y 32 bytes each, that nearly every key sends: these bytes, then x, ``_ES256_Y``, then y. Seen
#: by its bytes it needs no CBOR decoder (the strict one reads exactly this map from them).
_ES256_HEAD = bytes.fromhex("a5 01 02 03 26 20 01 21 58 20")
_ES256_Y = bytes.fromhex("22 58 20")

_INTEGER, _TEXT = frozenset({int}), frozenset({str})  # exact types: bool is not an integer key
#: What an item decoder raises on bad CBOR (CborError, and cbor2's errors, are ValueErrors).
_DECODE_ERRORS = (ValueError, RecursionError)


def parse(
    data: bytes,
    *,
    attested: bool,
    what: str = "authData",
    decode_item: ItemDecoder = _strict_item,
) -> AuthenticatorData:
    """Parse ``data``; ``attested`` True for a registration (AT required), False for an
    assertion (AT refused). Raise ``AttestationMalformed`` naming what is wrong."""
    size = len(data)
    if size < 37:
        raise AttestationMalformed(f"{what} is {size} bytes, shorter than 37")
    flags = _FLAGS[data[32]]
    end = 37  # of what has been read
    credential = None
    if flags.at != attested:
        if attested:
            raise AttestationMalformed(f"{what} has no attested credential data (AT flag clear)")
        raise AttestationMalformed(
            f"AT is set in {what}, but an assertion carries no attested credential data "
            f"({size} bytes, {size - 37} after the counter)"
        )
    if attested:
        credential, end = _attested_credential(data, decode_item)
    extensions: dict[str, object] = {}
    extensions_cbor = b""
    if flags.ed:
        rest = data[end:]
        try:
            ext, used = decode_item(rest)
        except _DECODE_ERRORS as e:
            raise AttestationMalformed(
                f"ED is set in {what}, but its extensions are not valid CBOR: {e}"
            ) from None
        if not isinstance(ext, dict) or not _TEXT.issuperset(map(type, ext)):
            raise AttestationMalformed(
                f"{what} extensions after the ED flag are not a CBOR map with text keys"
            )
        extensions, extensions_cbor, end = ext, rest[:used], end + used
        if end < size:
            raise AttestationMalformed(f"{what} has {size - end} bytes after its extensions")
    elif end < size:
        after = "the credential public key" if attested else "the counter"
        raise AttestationMalformed(
            f"{size - end} unexpected bytes after {after} (ED flag clear) in {what}"
        )
    return AuthenticatorData(
        data[:32],
        flags,
        int.from_bytes(data[33:37], "big"),
        credential,
        extensions,
        extensions_cbor,
        data,
    )


def _attested_credential(data: bytes, decode_item: ItemDecoder) -> tuple[AttestedCredential, int]:
    """The attested credential data at offset 37, and the offset after it."""
    if len(data) < 55:
        raise AttestationMalformed(
            "attested credential data is truncated before the AAGUID and credential ID length"
        )
    cred_len = int.from_bytes(data[53:55], "big")
    if cred_len == 0 or cred_len > 1023:
        raise AttestationMalformed(f"credential ID length {cred_len} is outside 1..1023")
    start = 55 + cred_len  # of the public key
    if len(data) < start:
        raise AttestationMalformed(
            f"credential ID length says {cred_len} bytes but only {len(data) - 55} follow"
        )
    cose: object
    if (
        data.startswith(_ES256_HEAD, start)
        and data.startswith(_ES256_Y, start + 42)
        and len(data) >= start + 77
    ):
        key_bytes = data[start : start + 77]
        cose = {1: 2, 3: -7, -1: 1, -2: key_bytes[10:42], -3: key_bytes[45:]}  # a COSE_Key
    else:
        try:
            cose, used = decode_item(data[start:])
        except _DECODE_ERRORS as e:
            raise AttestationMalformed(f"credential public key is not valid CBOR: {e}") from None
        key_bytes = data[start : start + used]
        if not isinstance(cose, dict) or not _INTEGER.issuperset(map(type, cose)):
            raise AttestationMalformed("credential public key is not a COSE_Key map")
    credential = AttestedCredential(data[37:53], data[55:start], cose, key_bytes)
    return credential, start + len(key_bytes)
