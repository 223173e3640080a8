"""Compact JWS as the MDS3 BLOB uses it: ``keyadmin.jws`` with metadata's errors.

The parsing and the signature check are ``keyadmin.jws`` (the one JWS module: strict unpadded
base64url, the JWA asymmetric algorithms only, ``crit`` understood or refused, the key fitted
to the algorithm, RSA of 2048 bits or more, ECDSA as raw ``r || s``). Here its refusals become
``BlobMalformed``, ``UnsupportedAlgorithm`` or ``SignatureInvalid``, and the header's x5c a
chain (``ChainInvalid``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keyadmin import jws as _jws
from keyadmin.jws import ALGORITHMS, UNDERSTOOD_HEADERS, CompactJws
from keyadmin.mds.errors import BlobMalformed, SignatureInvalid, UnsupportedAlgorithm

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

    from keyadmin.mds.errors import MetadataError

__all__ = [
    "ALGORITHMS",
    "UNDERSTOOD_HEADERS",
    "CompactJws",
    "b64url_decode",
    "parse_compact",
    "verify_signature",
    "x5c_der",
]


def _metadata_error(e: _jws.JwsError) -> MetadataError:
    kind: type[MetadataError] = BlobMalformed
    if e.reason in ("alg", "key"):
        kind = UnsupportedAlgorithm
    elif e.reason in ("length", "signature", "high-s"):
        kind = SignatureInvalid
    error = kind(e.message)
    error.data.update(e.data)  # alg, part, length … as the metadata errors always carried
    return error


def b64url_decode(text: bytes, what: str) -> bytes:
    """Strict base64url without padding, as RFC 7515 requires."""
    try:
        return _jws.b64url(text, what)
    except _jws.JwsError as e:
        raise _metadata_error(e) from e


def parse_compact(raw: bytes) -> CompactJws:
    """Split and decode a compact JWS; raises BlobMalformed / UnsupportedAlgorithm."""
    try:
        return _jws.parse(raw, ALGORITHMS)
    except _jws.JwsError as e:
        raise _metadata_error(e) from e


def x5c_der(jws: CompactJws) -> list[bytes]:
    """The header's certificate chain (DER); ChainInvalid when absent or malformed."""
    from keyadmin.mds.errors import ChainInvalid

    try:
        chain = jws.x5c()
    except _jws.JwsError as e:
        error = ChainInvalid(e.message)
        error.data.update(e.data)
        raise error from e
    if chain is None:
        raise ChainInvalid(
            "the JWS header has no x5c certificate chain"
            + (" (only x5u, which keyadmin does not follow)" if "x5u" in jws.header else ""),
        )
    return chain


def verify_signature(jws: CompactJws, key: CertificatePublicKeyTypes) -> None:
    """Verify ``jws`` with the signer's key; raise SignatureInvalid or UnsupportedAlgorithm."""
    try:
        _jws.verify(jws, key)
    except _jws.JwsError as e:
        raise _metadata_error(e) from e
