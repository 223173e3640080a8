"""Base64 as keyadmin reads and writes it: the one module for every spelling.

Three spellings occur, each with one strict decoder:

- ``url``: base64url (RFC 4648 §5), written without padding (WebAuthn, JWS, receipts).
  :func:`decode_url` takes the padding optionally (browsers and libraries differ);
  ``padding=False`` refuses it, as RFC 7515 (JWS) requires.
- ``std``: standard base64 (X.509 certificates in metadata, the software key's state).
- :func:`decode_any`: either alphabet, padding optional: what a person pastes, and
  SafetyNet's JWS, which mixes them.

Every decoder refuses characters outside its alphabet (the standard library's default
silently drops them) and non-canonical text (stray bits in the last character), so two
different texts never decode to the same bytes. Errors are ``ValueError``; each caller
turns them into its own declared error.
"""

from __future__ import annotations

import binascii

_URL_TO_STD = bytes.maketrans(b"-_", b"+/")
_STD_TO_URL = bytes.maketrans(b"+/", b"-_")


def encode_url(data: bytes) -> str:
    """Unpadded base64url."""
    return binascii.b2a_base64(data, newline=False).translate(_STD_TO_URL).rstrip(b"=").decode()


def encode_std(data: bytes) -> str:
    """Padded standard base64."""
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _ascii(text: str | bytes) -> bytes:
    if isinstance(text, bytes):
        return text
    try:
        return text.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError("not ASCII") from None


def _decode(std: bytes) -> bytes:
    """Strict decoding of standard-alphabet text whose padding may be missing."""
    body = std.rstrip(b"=")
    if len(std) - len(body) > 2 or (len(std) != len(body) and len(std) % 4):
        raise ValueError("wrong padding")
    if len(body) % 4 == 1:
        raise ValueError("truncated")
    try:
        raw = binascii.a2b_base64(body + b"=" * (-len(body) % 4), strict_mode=True)
    except binascii.Error as e:
        raise ValueError(str(e)) from None
    if binascii.b2a_base64(raw, newline=False).rstrip(b"=") != body:
        raise ValueError("not canonical")
    return raw


def decode_url(text: str | bytes, *, padding: bool = True) -> bytes:
    """Decode base64url; ``padding=False`` refuses '=' (RFC 7515)."""
    data = _ascii(text)
    if b"+" in data or b"/" in data:
        raise ValueError("not the base64url alphabet")
    if not padding and b"=" in data:
        raise ValueError("padded")
    return _decode(data.translate(_URL_TO_STD))


def decode_std(text: str | bytes) -> bytes:
    """Decode standard base64 (padding optional)."""
    data = _ascii(text)
    if b"-" in data or b"_" in data:
        raise ValueError("not the standard base64 alphabet")
    return _decode(data)


def decode_any(text: str | bytes) -> bytes:
    """Decode either alphabet (not mixed), padding optional."""
    data = _ascii(text)
    url = b"-" in data or b"_" in data
    if url and (b"+" in data or b"/" in data):
        raise ValueError("mixes the two base64 alphabets")
    return _decode(data.translate(_URL_TO_STD) if url else data)
