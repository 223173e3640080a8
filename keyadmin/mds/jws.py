"""Compact JWS (RFC 7515) as used by the MDS3 BLOB: strict parsing and signature verification.

Written here rather than borrowed: python-fido2 hands ES256 signatures to a DER verifier, which
refuses every standard JWS (RFC 7518 §3.4: raw ``r || s``). This module accepts exactly the JWA
asymmetric algorithms (RS/PS/ES 256/384/512, EdDSA), checks that the key fits the algorithm
(ES256 needs P-256, and so on) and that a raw ECDSA signature has the exact length.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keyadmin.b64 import decode_std, decode_url
from keyadmin.mds.errors import BlobMalformed, SignatureInvalid, UnsupportedAlgorithm

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

#: alg -> (family, hash name, curve name or None, raw ECDSA coordinate length)
ALGORITHMS: dict[str, tuple[str, str | None, str | None, int]] = {
    "RS256": ("rsa-pkcs1v15", "sha256", None, 0),
    "RS384": ("rsa-pkcs1v15", "sha384", None, 0),
    "RS512": ("rsa-pkcs1v15", "sha512", None, 0),
    "PS256": ("rsa-pss", "sha256", None, 0),
    "PS384": ("rsa-pss", "sha384", None, 0),
    "PS512": ("rsa-pss", "sha512", None, 0),
    "ES256": ("ecdsa", "sha256", "secp256r1", 32),
    "ES384": ("ecdsa", "sha384", "secp384r1", 48),
    "ES512": ("ecdsa", "sha512", "secp521r1", 66),
    "EdDSA": ("eddsa", None, None, 0),
}

#: Header parameters we understand; ``crit`` naming anything else is refused (RFC 7515 4.1.11).
UNDERSTOOD_HEADERS = frozenset(
    {"alg", "typ", "x5c", "x5u", "kid", "crit", "cty", "x5t", "x5t#S256"}
)


def b64url_decode(text: bytes, what: str) -> bytes:
    """Strict base64url without padding, as RFC 7515 requires."""
    try:
        return decode_url(text, padding=False)
    except ValueError as e:
        raise BlobMalformed(f"{what} is not unpadded base64url: {e}", part=what) from e


@dataclass(frozen=True)
class CompactJws:
    header: dict[str, Any]
    payload: bytes
    signature: bytes
    signing_input: bytes

    @property
    def alg(self) -> str:
        return str(self.header["alg"])

    def x5c_der(self) -> list[bytes]:
        from keyadmin.mds.errors import ChainInvalid

        x5c = self.header.get("x5c")
        if x5c is None:
            raise ChainInvalid(
                "the JWS header has no x5c certificate chain"
                + (" (only x5u, which keyadmin does not follow)" if "x5u" in self.header else ""),
            )
        if not isinstance(x5c, list) or not x5c or not all(isinstance(c, str) for c in x5c):
            raise ChainInvalid("x5c must be a non-empty list of base64 certificates")
        out = []
        for i, c in enumerate(x5c):
            try:
                out.append(decode_std(c))
            except ValueError as e:
                raise ChainInvalid(f"x5c[{i}] is not standard base64: {e}", index=i) from e
        return out


def parse_compact(raw: bytes) -> CompactJws:
    """Split and decode a compact JWS; raises BlobMalformed / UnsupportedAlgorithm."""
    data = raw.strip()
    parts = data.split(b".")
    if len(parts) != 3:
        raise BlobMalformed(
            f"not a compact JWS: expected 3 dot-separated parts, found {len(parts)}"
            + (" (the file looks truncated)" if len(parts) < 3 else ""),
            parts=len(parts),
            size=len(raw),
        )
    h64, p64, s64 = parts
    try:
        header = json.loads(b64url_decode(h64, "header"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BlobMalformed(f"the JWS header is not JSON: {e}", part="header") from e
    except RecursionError:
        raise BlobMalformed("the JWS header nests too deeply", part="header") from None
    if not isinstance(header, dict):
        raise BlobMalformed("the JWS header is not a JSON object", part="header")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALGORITHMS:
        raise UnsupportedAlgorithm(
            f"JWS alg {alg!r} is not accepted (accepted: {', '.join(ALGORITHMS)})", alg=alg
        )
    crit = header.get("crit")
    if crit is not None:
        if not isinstance(crit, list) or not crit:
            raise BlobMalformed("JWS crit must be a non-empty list", part="header")
        if not all(isinstance(c, str) for c in crit):
            raise BlobMalformed("JWS crit must list header parameter names", part="header")
        unknown = [c for c in crit if c not in UNDERSTOOD_HEADERS]
        if unknown:
            raise BlobMalformed(
                f"JWS header marks unknown parameters critical: {unknown}", part="header"
            )
    payload = b64url_decode(p64, "payload")
    signature = b64url_decode(s64, "signature")
    return CompactJws(header, payload, signature, signing_input=h64 + b"." + p64)


def _hash(name: str) -> Any:
    from cryptography.hazmat.primitives import hashes

    return {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}[name]


def verify_signature(jws: CompactJws, key: CertificatePublicKeyTypes) -> None:
    """Verify ``jws`` with the signer's key; raise SignatureInvalid or UnsupportedAlgorithm."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa, utils

    family, hname, curve, coord = ALGORITHMS[jws.alg]
    sig = jws.signature
    try:
        if family.startswith("rsa"):
            if not isinstance(key, rsa.RSAPublicKey):
                raise UnsupportedAlgorithm(
                    f"alg {jws.alg} needs an RSA key but the signer certificate has "
                    f"{type(key).__name__}",
                    alg=jws.alg,
                )
            if key.key_size < 2048:
                raise UnsupportedAlgorithm(
                    f"the signer's RSA key has {key.key_size} bits; at least 2048 are required",
                    alg=jws.alg,
                )
            if len(sig) != (key.key_size + 7) // 8:
                raise SignatureInvalid(
                    f"{jws.alg} signature is {len(sig)} bytes; the {key.key_size}-bit key needs "
                    f"{(key.key_size + 7) // 8}",
                    alg=jws.alg,
                    length=len(sig),
                )
            assert hname is not None
            pad: padding.AsymmetricPadding = (
                padding.PKCS1v15()
                if family == "rsa-pkcs1v15"
                else padding.PSS(
                    mgf=padding.MGF1(_hash(hname)), salt_length=_hash(hname).digest_size
                )
            )
            key.verify(sig, jws.signing_input, pad, _hash(hname))
        elif family == "ecdsa":
            if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != curve:
                got = (
                    key.curve.name
                    if isinstance(key, ec.EllipticCurvePublicKey)
                    else type(key).__name__
                )
                raise UnsupportedAlgorithm(
                    f"alg {jws.alg} needs a {curve} key but the signer certificate has {got}",
                    alg=jws.alg,
                )
            if len(sig) != 2 * coord:
                raise SignatureInvalid(
                    f"{jws.alg} signature is {len(sig)} bytes; a JWS signature is raw r||s of "
                    f"exactly {2 * coord} bytes",
                    alg=jws.alg,
                    length=len(sig),
                )
            r = int.from_bytes(sig[:coord], "big")
            s = int.from_bytes(sig[coord:], "big")
            assert hname is not None
            key.verify(utils.encode_dss_signature(r, s), jws.signing_input, ec.ECDSA(_hash(hname)))
        else:  # EdDSA
            if not isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
                raise UnsupportedAlgorithm(
                    f"alg EdDSA needs an Ed25519/Ed448 key, the signer has {type(key).__name__}",
                    alg=jws.alg,
                )
            key.verify(sig, jws.signing_input)
    except InvalidSignature as e:
        raise SignatureInvalid(
            f"the {jws.alg} signature does not verify with the signer certificate's key",
            alg=jws.alg,
        ) from e
