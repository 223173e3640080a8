"""COSE keys and algorithms: turn a COSE key into a ``cryptography`` key, verify a signature.

Every statement signature goes through ``verify_signature``, which refuses a key whose
type or curve does not match the COSE algorithm instead of guessing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from keyadmin.attestation.errors import (
    AttestationInvalid,
    AttestationMalformed,
    AttestationUnsupported,
)

# COSE algorithm identifiers (IANA COSE Algorithms registry).
ES256, ES384, ES512 = -7, -35, -36
EDDSA, ED25519 = -8, -19
RS256, RS384, RS512, RS1 = -257, -258, -259, -65535
PS256, PS384, PS512 = -37, -38, -39


@dataclass(frozen=True)
class _Alg:
    name: str
    family: str  # "ec", "rsa-pkcs1", "rsa-pss", "eddsa"
    hash: hashes.HashAlgorithm | None
    curve: type[ec.EllipticCurve] | None = None


_ALGORITHMS: dict[int, _Alg] = {
    ES256: _Alg("ES256", "ec", hashes.SHA256(), ec.SECP256R1),
    ES384: _Alg("ES384", "ec", hashes.SHA384(), ec.SECP384R1),
    ES512: _Alg("ES512", "ec", hashes.SHA512(), ec.SECP521R1),
    RS256: _Alg("RS256", "rsa-pkcs1", hashes.SHA256()),
    RS384: _Alg("RS384", "rsa-pkcs1", hashes.SHA384()),
    RS512: _Alg("RS512", "rsa-pkcs1", hashes.SHA512()),
    PS256: _Alg("PS256", "rsa-pss", hashes.SHA256()),
    PS384: _Alg("PS384", "rsa-pss", hashes.SHA384()),
    PS512: _Alg("PS512", "rsa-pss", hashes.SHA512()),
    EDDSA: _Alg("EdDSA", "eddsa", None),
    ED25519: _Alg("Ed25519", "eddsa", None),
    RS1: _Alg("RS1", "rsa-pkcs1", hashes.SHA1()),  # noqa: S303 - TPM statements only
}

# RS1 (SHA-1) is allowed only where a format explicitly needs it (TPM statements made by
# Windows Hello); credential keys and other statements must use the modern set.
WEAK_ALGORITHMS = frozenset({RS1})

_CURVES: dict[int, ec.EllipticCurve] = {1: ec.SECP256R1(), 2: ec.SECP384R1(), 3: ec.SECP521R1()}


def algorithm_name(alg: int) -> str:
    entry = _ALGORITHMS.get(alg)
    return entry.name if entry else f"COSE {alg}"


def hash_for(alg: int) -> hashes.HashAlgorithm:
    """The digest algorithm a COSE algorithm signs with (TPM extraData needs it)."""
    entry = _ALGORITHMS.get(alg)
    if entry is None or entry.hash is None:
        raise AttestationUnsupported(f"COSE algorithm {alg} has no fixed digest", alg=alg)
    return entry.hash


def _bytes_param(cose: Mapping[int, Any], label: int, what: str) -> bytes:
    value = cose.get(label)
    if not isinstance(value, bytes) or not value:
        raise AttestationMalformed(f"credential public key: {what} (label {label}) is missing")
    return value


def load_cose_key(cose: Mapping[int, Any]) -> tuple[PublicKeyTypes, int]:
    """Turn a COSE_Key map into (cryptography public key, COSE alg); raise on anything odd."""
    kty = cose.get(1)
    alg = cose.get(3)
    if not isinstance(alg, int) or isinstance(alg, bool):
        raise AttestationMalformed("credential public key has no integer alg (label 3)")
    if alg not in _ALGORITHMS or alg in WEAK_ALGORITHMS:
        raise AttestationUnsupported(
            f"credential public key algorithm {alg} is not supported", alg=alg
        )
    key: PublicKeyTypes
    try:
        if kty == 2:
            crv = cose.get(-1)
            if not isinstance(crv, int) or crv not in _CURVES:
                raise AttestationUnsupported(f"EC2 credential key on unsupported curve {crv!r}")
            x = _bytes_param(cose, -2, "x")
            y = _bytes_param(cose, -3, "y")
            size = (_CURVES[crv].key_size + 7) // 8
            if len(x) != size or len(y) != size:
                raise AttestationMalformed(
                    f"EC2 credential key coordinates are {len(x)}/{len(y)} bytes, not {size}"
                )
            key = ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), _CURVES[crv]
            ).public_key()
        elif kty == 3:
            n = _bytes_param(cose, -1, "n")
            e = _bytes_param(cose, -2, "e")
            key = rsa.RSAPublicNumbers(
                int.from_bytes(e, "big"), int.from_bytes(n, "big")
            ).public_key()
        elif kty == 1:
            crv = cose.get(-1)
            x = _bytes_param(cose, -2, "x")
            if crv == 6:
                key = ed25519.Ed25519PublicKey.from_public_bytes(x)
            elif crv == 7:
                key = ed448.Ed448PublicKey.from_public_bytes(x)
            else:
                raise AttestationUnsupported(f"OKP credential key on unsupported curve {crv!r}")
        else:
            raise AttestationUnsupported(f"credential key type {kty!r} is not supported")
    except (ValueError, UnsupportedAlgorithm) as e:
        raise AttestationMalformed(f"credential public key does not load: {e}") from None
    _check_key_matches_alg(key, alg, "credential public key")
    return key, alg


def _check_key_matches_alg(key: PublicKeyTypes, alg: int, what: str) -> _Alg:
    entry = _ALGORITHMS.get(alg)
    if entry is None:
        raise AttestationUnsupported(f"{what}: COSE algorithm {alg} is not supported", alg=alg)
    if entry.family == "ec":
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise AttestationInvalid(f"{what}: algorithm {entry.name} needs an EC key")
        if entry.curve is not None and not isinstance(key.curve, entry.curve):
            raise AttestationInvalid(
                f"{what}: algorithm {entry.name} needs curve {entry.curve.name}, "
                f"the key is on {key.curve.name}"
            )
    elif entry.family in ("rsa-pkcs1", "rsa-pss"):
        if not isinstance(key, rsa.RSAPublicKey):
            raise AttestationInvalid(f"{what}: algorithm {entry.name} needs an RSA key")
        if key.key_size < 2048:
            raise AttestationInvalid(f"{what}: RSA key of {key.key_size} bits is too short")
    elif entry.family == "eddsa":
        if not isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            raise AttestationInvalid(f"{what}: algorithm {entry.name} needs an EdDSA key")
        if alg == ED25519 and not isinstance(key, ed25519.Ed25519PublicKey):
            raise AttestationInvalid(f"{what}: algorithm Ed25519 needs an Ed25519 key")
    return entry


def verify_signature(
    key: PublicKeyTypes,
    alg: int,
    message: bytes,
    signature: bytes,
    *,
    what: str,
    allow_weak: bool = False,
) -> None:
    """Verify ``signature`` over ``message`` with ``key`` under COSE ``alg``; raise if not."""
    if alg in WEAK_ALGORITHMS and not allow_weak:
        raise AttestationUnsupported(f"{what}: algorithm {algorithm_name(alg)} is not accepted")
    entry = _check_key_matches_alg(key, alg, what)
    try:
        if entry.family == "ec":
            assert isinstance(key, ec.EllipticCurvePublicKey) and entry.hash is not None
            key.verify(signature, message, ec.ECDSA(entry.hash))
        elif entry.family == "rsa-pkcs1":
            assert isinstance(key, rsa.RSAPublicKey) and entry.hash is not None
            key.verify(signature, message, padding.PKCS1v15(), entry.hash)
        elif entry.family == "rsa-pss":
            assert isinstance(key, rsa.RSAPublicKey) and entry.hash is not None
            key.verify(
                signature,
                message,
                padding.PSS(mgf=padding.MGF1(entry.hash), salt_length=padding.PSS.AUTO),
                entry.hash,
            )
        else:
            assert isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey))
            key.verify(signature, message)
    except InvalidSignature:
        raise AttestationInvalid(f"{what}: signature does not verify ({entry.name})") from None
    except (ValueError, UnsupportedAlgorithm) as e:
        raise AttestationInvalid(f"{what}: signature cannot be checked: {e}") from None


def spki(key: PublicKeyTypes) -> bytes:
    """SubjectPublicKeyInfo DER: the canonical form used to compare two keys."""
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def same_key(a: PublicKeyTypes, b: PublicKeyTypes) -> bool:
    return spki(a) == spki(b)
