"""Compact JWS (RFC 7515): the one module that parses, verifies and signs them.

Used by the MDS3 BLOB check (``keyadmin.mds.jws``), step-up receipts
(``keyadmin.stepup.receipts``) and log anchors (``keyadmin.store.anchor``). It imports no
layer of keyadmin (only ``keyadmin.b64``), and ``cryptography`` only when a signature is
checked or made, so importing it costs nothing on a path that never does.

What it holds to, whoever calls it:

- three dot-separated parts, each strict unpadded base64url (RFC 7515 §2: no '=', no
  characters outside the alphabet, no stray bits): one token has one spelling;
- the header a JSON object whose ``alg`` is in the caller's allowlist, a subset of the JWA
  asymmetric algorithms (RS/PS/ES 256/384/512, EdDSA): never ``none`` or an HMAC;
- ``crit``, when present, a non-empty list of header names this module understands
  (RFC 7515 §4.1.11); other unknown headers are ignored, as the RFC says;
- the key fits the algorithm (ES256 needs P-256 …), an RSA key has at least 2048 bits and a
  signature of exactly its size, an ECDSA signature is raw ``r || s`` of exactly twice the
  coordinate size (RFC 7518 §3.4; the DER form is refused), and with ``low_s=True`` its
  ``s`` is at most n/2 (the one canonical form of a signature keyadmin made).

Signing makes ES256 only, with canonical JSON segments (sorted keys, no spaces) and low S, so
the same header and claims give the same first two parts, and one signature one token.

Errors are ``JwsError`` (a ``ValueError``) with a ``reason`` code; each caller turns them into
its own declared error (``BlobMalformed``, ``ReceiptInvalid``, ``AnchorInvalid`` …).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from keyadmin.b64 import decode_std, decode_url, encode_url

if TYPE_CHECKING:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

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

#: The smallest RSA key accepted for a signature.
MIN_RSA_BITS = 2048

#: The order of the P-256 group: a signature (r, s) and (r, n - s) both verify.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

Reason = Literal[
    "parts",  # not three parts
    "base64",  # a part is not strict unpadded base64url
    "json",  # the header (or a JSON payload) is not a JSON object
    "alg",  # alg missing or not in the caller's allowlist
    "crit",  # crit malformed or naming a header not understood
    "key",  # the key does not fit the algorithm (type, curve, RSA size)
    "length",  # the signature has the wrong length (e.g. a DER ECDSA signature)
    "high-s",  # an ECDSA signature with s > n/2 where low S is required
    "signature",  # the signature does not verify
    "x5c",  # the header's x5c is not a list of standard base64 certificates
]


class JwsError(ValueError):
    """A token this module refuses; ``reason`` says which rule, ``data`` the details."""

    def __init__(self, reason: Reason, message: str, **data: object) -> None:
        super().__init__(message)
        self.reason: Reason = reason
        self.message = message
        self.data = data


@dataclass(frozen=True)
class CompactJws:
    """A parsed token: nothing in it is verified until ``verify`` returns."""

    header: dict[str, object]
    payload: bytes
    signature: bytes
    signing_input: bytes

    @property
    def alg(self) -> str:
        return str(self.header["alg"])

    def json_payload(self) -> dict[str, object]:
        """The payload as a JSON object (receipts, anchors); ``JwsError('json')`` otherwise."""
        return _json_object(self.payload, "payload")

    def x5c(self) -> list[bytes] | None:
        """The header's ``x5c`` chain, DER (None when absent); ``JwsError('x5c')``."""
        x5c = self.header.get("x5c")
        if x5c is None:
            return None
        if not isinstance(x5c, list) or not x5c or not all(isinstance(c, str) for c in x5c):
            raise JwsError("x5c", "x5c must be a non-empty list of base64 certificates")
        out = []
        for i, c in enumerate(x5c):
            try:
                out.append(decode_std(c))
            except ValueError as e:
                raise JwsError("x5c", f"x5c[{i}] is not standard base64: {e}", index=i) from e
        return out


def b64url(text: bytes, what: str) -> bytes:
    """Strict base64url without padding, as RFC 7515 requires."""
    try:
        return decode_url(text, padding=False)
    except ValueError as e:
        raise JwsError("base64", f"{what} is not unpadded base64url: {e}", part=what) from e


def _json_object(data: bytes, what: str) -> dict[str, object]:
    try:
        value: object = json.loads(data)
    except RecursionError:
        raise JwsError("json", f"the JWS {what} nests too deeply", part=what) from None
    except ValueError as e:  # not UTF-8, not JSON, an integer too long to convert
        raise JwsError("json", f"the JWS {what} is not JSON: {e}", part=what) from e
    if not isinstance(value, dict):
        raise JwsError("json", f"the JWS {what} is not a JSON object", part=what)
    return value


def parse(raw: bytes | str, algorithms: Collection[str]) -> CompactJws:
    """Split and decode a compact JWS whose ``alg`` must be one of ``algorithms`` (each a
    key of ``ALGORITHMS``); raise ``JwsError``. Nothing is verified yet: call ``verify``."""
    if isinstance(raw, str):
        try:
            data = raw.strip().encode("ascii")
        except UnicodeEncodeError:
            raise JwsError("base64", "the token is not ASCII") from None
    else:
        data = raw.strip()
    parts = data.split(b".")
    if len(parts) != 3:
        raise JwsError(
            "parts",
            f"not a compact JWS: expected 3 dot-separated parts, found {len(parts)}"
            + (" (the file looks truncated)" if len(parts) < 3 else ""),
            parts=len(parts),
            size=len(raw),
        )
    h64, p64, s64 = parts
    header = _json_object(b64url(h64, "header"), "header")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms or alg not in ALGORITHMS:
        accepted = [a for a in ALGORITHMS if a in algorithms]
        raise JwsError(
            "alg", f"JWS alg {alg!r} is not accepted (accepted: {', '.join(accepted)})", alg=alg
        )
    _check_crit(header.get("crit"))
    payload = b64url(p64, "payload")
    signature = b64url(s64, "signature")
    return CompactJws(header, payload, signature, signing_input=h64 + b"." + p64)


def _check_crit(crit: object) -> None:
    if crit is None:
        return
    if not isinstance(crit, list) or not crit:
        raise JwsError("crit", "JWS crit must be a non-empty list", part="header")
    if not all(isinstance(c, str) for c in crit):
        raise JwsError("crit", "JWS crit must list header parameter names", part="header")
    unknown = [c for c in crit if c not in UNDERSTOOD_HEADERS]
    if unknown:
        raise JwsError(
            "crit", f"JWS header marks unknown parameters critical: {unknown}", part="header"
        )


def _hash(name: str | None) -> hashes.HashAlgorithm:
    from cryptography.hazmat.primitives import hashes

    if name == "sha256":
        return hashes.SHA256()
    if name == "sha384":
        return hashes.SHA384()
    if name == "sha512":
        return hashes.SHA512()
    raise AssertionError(f"no hash {name!r}")  # pragma: no cover - ALGORITHMS names these


def verify(jws: CompactJws, key: PublicKeyTypes, *, low_s: bool = False) -> None:
    """Verify ``jws`` with ``key``; raise ``JwsError`` (``key``, ``length``, ``high-s``,
    ``signature``). ``low_s`` (for ES256 only) refuses a signature whose s is above n/2."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa, utils

    alg = jws.alg
    family, hname, curve, coord = ALGORITHMS[alg]
    if low_s and alg != "ES256":
        raise ValueError("low_s is defined for ES256 only")
    sig = jws.signature
    try:
        if family.startswith("rsa"):
            if not isinstance(key, rsa.RSAPublicKey):
                raise JwsError(
                    "key",
                    f"alg {alg} needs an RSA key but the signer certificate has "
                    f"{type(key).__name__}",
                    alg=alg,
                )
            if key.key_size < MIN_RSA_BITS:
                raise JwsError(
                    "key",
                    f"the signer's RSA key has {key.key_size} bits; at least {MIN_RSA_BITS} "
                    "are required",
                    alg=alg,
                )
            if len(sig) != (key.key_size + 7) // 8:
                raise JwsError(
                    "length",
                    f"{alg} signature is {len(sig)} bytes; the {key.key_size}-bit key needs "
                    f"{(key.key_size + 7) // 8}",
                    alg=alg,
                    length=len(sig),
                )
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
                raise JwsError(
                    "key", f"alg {alg} needs a {curve} key but the signer certificate has {got}",
                    alg=alg,
                )  # fmt: skip
            if len(sig) != 2 * coord:
                raise JwsError(
                    "length",
                    f"{alg} signature is {len(sig)} bytes; a JWS signature is raw r||s of "
                    f"exactly {2 * coord} bytes",
                    alg=alg,
                    length=len(sig),
                )
            r = int.from_bytes(sig[:coord], "big")
            s = int.from_bytes(sig[coord:], "big")
            if low_s and s > P256_ORDER // 2:  # low_s is for ES256 (see verify's docstring)
                raise JwsError("high-s", f"{alg} signature has a high-S value (not canonical)")
            key.verify(utils.encode_dss_signature(r, s), jws.signing_input, ec.ECDSA(_hash(hname)))
        else:  # EdDSA
            if not isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
                raise JwsError(
                    "key",
                    f"alg EdDSA needs an Ed25519/Ed448 key, the signer has {type(key).__name__}",
                    alg=alg,
                )
            key.verify(sig, jws.signing_input)
    except InvalidSignature as e:
        raise JwsError(
            "signature",
            f"the {alg} signature does not verify with the signer certificate's key",
            alg=alg,
        ) from e


# ----------------------------------------------------------------------------------- signing
def key_id(public_key: PublicKeyTypes) -> str:
    """The ``kid`` keyadmin writes: SHA-256 of the key's SubjectPublicKeyInfo, base64url."""
    from cryptography.hazmat.primitives import serialization

    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return encode_url(hashlib.sha256(spki).digest())


def segment(obj: Mapping[str, object]) -> str:
    """A header or claims part: canonical JSON (sorted keys, no spaces), base64url."""
    return encode_url(json.dumps(obj, separators=(",", ":"), sort_keys=True).encode("utf-8"))


class Es256Signer:
    """Signs compact ES256 JWS statements with a P-256 private key held in memory."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        self._key = private_key
        self.kid = key_id(private_key.public_key())

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()

    def sign(self, typ: str, claims: Mapping[str, object]) -> str:
        """A compact ES256 JWS of ``claims`` with header ``{alg, kid, typ}``, low S (the one
        canonical form): receipts and log anchors."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        header = {"alg": "ES256", "typ": typ, "kid": self.kid}
        signing_input = (segment(header) + "." + segment(claims)).encode("ascii")
        r, s = decode_dss_signature(self._key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        if s > P256_ORDER // 2:
            s = P256_ORDER - s
        return (
            signing_input.decode("ascii")
            + "."
            + encode_url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
        )


#: The longest statement (receipt, anchor) accepted, in characters.
MAX_STATEMENT = 65536


def verify_statement(
    token: str,
    public_key: ec.EllipticCurvePublicKey,
    typ: str,
    error: type[Exception],
    *,
    what: str = "statement",
) -> dict[str, object]:
    """The claims of a compact ES256 JWS of type ``typ`` signed by ``public_key`` (what
    ``Es256Signer.sign`` makes); raise ``error`` naming what failed (format, header, key id,
    signature form, high S, signature)."""
    if len(token) > MAX_STATEMENT:
        raise error(f"not a compact JWS (three dot-separated parts expected; {len(token)} chars)")
    try:
        jws = parse(token, ("ES256",))
        claims = jws.json_payload()
    except JwsError as e:
        if e.reason == "parts":
            raise error("not a compact JWS (three dot-separated parts expected)") from None
        if e.reason in ("base64", "json"):
            raise error(f"the {what} does not decode (base64url JSON expected): {e}") from None
        raise error(f"unexpected {what} header: {e}") from None  # alg, crit
    if jws.header.get("typ") != typ:
        raise error(f"unexpected {what} header alg={jws.alg!r} typ={jws.header.get('typ')!r}")
    kid = str(jws.header.get("kid", ""))
    if not hmac.compare_digest(kid.encode("utf-8", "replace"), key_id(public_key).encode()):
        raise error(f"the {what} was signed by another key (kid differs)")
    try:
        verify(jws, public_key, low_s=True)
    except JwsError as e:
        if e.reason == "length":
            raise error(f"the {what}'s signature is not 64 bytes (ES256 r || s)") from None
        if e.reason == "high-s":
            raise error(f"the {what}'s signature has a high-S value (not canonical)") from None
        if e.reason == "key":
            raise error(f"the {what}'s public key does not fit: {e}") from None
        raise error(f"the {what}'s signature does not verify (tampered?)") from None
    return claims
