"""COSE keys and algorithms: turn a COSE key into a ``cryptography`` key, verify a signature.

Every statement signature goes through ``verify_signature``, which refuses a key whose
type or curve does not match the COSE algorithm instead of guessing.

ML-DSA (FIPS 204, RFC 9964) keys are COSE key type AKP (7) with the raw public key in
parameter -1 ("pub"); they sign the message itself ("pure" ML-DSA, empty context). They need a
``cryptography`` with the ``mldsa`` module (and a backend that has ML-DSA); without one an
ML-DSA key is ``AttestationUnsupported``, never a crash.
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
ML_DSA_44, ML_DSA_65, ML_DSA_87 = -48, -49, -50

# COSE key types (IANA COSE Key Types registry); AKP is RFC 9964's "Algorithm Key Pair".
KTY_OKP, KTY_EC2, KTY_RSA, KTY_AKP = 1, 2, 3, 7
AKP_PUB, AKP_PRIV = -1, -2


@dataclass(frozen=True)
class _Alg:
    name: str
    family: str  # "ec", "rsa-pkcs1", "rsa-pss", "eddsa", "mldsa"
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
    ML_DSA_44: _Alg("ML-DSA-44", "mldsa", None),
    ML_DSA_65: _Alg("ML-DSA-65", "mldsa", None),
    ML_DSA_87: _Alg("ML-DSA-87", "mldsa", None),
    RS1: _Alg("RS1", "rsa-pkcs1", hashes.SHA1()),  # noqa: S303 - TPM statements only
}
# The COSE key type each algorithm family's keys have.
_KTY_FOR_FAMILY = {
    "ec": KTY_EC2,
    "rsa-pkcs1": KTY_RSA,
    "rsa-pss": KTY_RSA,
    "eddsa": KTY_OKP,
    "mldsa": KTY_AKP,
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


def load_cose_key(cose: Mapping[int, Any]) -> tuple[PublicKeyTypes | None, int]:
    """Turn a COSE_Key map into (cryptography public key, COSE alg); raise on anything odd.

    An algorithm keyadmin does not verify (unknown, or RS1 for a credential) is not an error
    here: the key is returned as None with its alg, so that the policy's ``algorithm`` rule
    refuses it by number. A known algorithm whose key does not fit it is malformed."""
    kty = cose.get(1)
    alg = cose.get(3)
    if not isinstance(alg, int) or isinstance(alg, bool):
        raise AttestationMalformed("credential public key has no integer alg (label 3)")
    entry = _ALGORITHMS.get(alg)
    if entry is None or alg in WEAK_ALGORITHMS:
        return None, alg
    if kty != _KTY_FOR_FAMILY[entry.family]:
        raise AttestationMalformed(
            f"credential public key of type {kty!r} does not fit algorithm {entry.name} "
            f"(which needs key type {_KTY_FOR_FAMILY[entry.family]})"
        )
    key: PublicKeyTypes
    try:
        if kty == KTY_EC2:
            crv = cose.get(-1)
            if not isinstance(crv, int) or crv not in _CURVES:
                raise AttestationMalformed(f"EC2 credential key on unknown curve {crv!r}")
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
        elif kty == KTY_RSA:
            n = _bytes_param(cose, -1, "n")
            e = _bytes_param(cose, -2, "e")
            key = rsa.RSAPublicNumbers(
                int.from_bytes(e, "big"), int.from_bytes(n, "big")
            ).public_key()
        elif kty == KTY_OKP:
            crv = cose.get(-1)
            x = _bytes_param(cose, -2, "x")
            if crv == 6:
                key = ed25519.Ed25519PublicKey.from_public_bytes(x)
            elif crv == 7:
                key = ed448.Ed448PublicKey.from_public_bytes(x)
            else:
                raise AttestationMalformed(f"OKP credential key on unknown curve {crv!r}")
        else:
            if AKP_PRIV in cose:
                raise AttestationMalformed(
                    "AKP credential key carries a private key (label -2): refused"
                )
            key = _mldsa_public_key(alg, _bytes_param(cose, AKP_PUB, "pub"))
    except (ValueError, UnsupportedAlgorithm) as e:
        raise AttestationMalformed(f"credential public key does not load: {e}") from None
    _check_key_matches_alg(key, alg, "credential public key")
    return key, alg


def _mldsa_public_key(alg: int, pub: bytes) -> PublicKeyTypes:
    """An ML-DSA public key from its raw encoding (FIPS 204 pkEncode); a wrong length is a
    ValueError. A ``cryptography`` without ML-DSA is AttestationUnsupported."""
    name = algorithm_name(alg)
    try:
        from cryptography.hazmat.primitives.asymmetric import mldsa
    except ImportError:
        raise AttestationUnsupported(
            f"{name} keys need a cryptography package with ML-DSA (50.x has it)",
            alg=alg,
        ) from None
    classes: dict[int, Any] = {
        ML_DSA_44: mldsa.MLDSA44PublicKey,
        ML_DSA_65: mldsa.MLDSA65PublicKey,
        ML_DSA_87: mldsa.MLDSA87PublicKey,
    }
    try:
        key: PublicKeyTypes = classes[alg].from_public_bytes(pub)
    except UnsupportedAlgorithm:
        raise AttestationUnsupported(
            f"{name} is not available in this cryptography build (its OpenSSL has no ML-DSA)",
            alg=alg,
        ) from None
    return key


def _mldsa_alg(key: PublicKeyTypes) -> int | None:
    """The COSE alg of an ML-DSA public key; None for any other key."""
    try:
        from cryptography.hazmat.primitives.asymmetric import mldsa
    except ImportError:
        return None
    if isinstance(key, mldsa.MLDSA44PublicKey):
        return ML_DSA_44
    if isinstance(key, mldsa.MLDSA65PublicKey):
        return ML_DSA_65
    if isinstance(key, mldsa.MLDSA87PublicKey):
        return ML_DSA_87
    return None


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
    elif entry.family == "mldsa" and _mldsa_alg(key) != alg:
        raise AttestationInvalid(f"{what}: algorithm {entry.name} needs an {entry.name} key")
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
        elif entry.family == "mldsa":
            from cryptography.hazmat.primitives.asymmetric import mldsa

            assert isinstance(
                key, (mldsa.MLDSA44PublicKey, mldsa.MLDSA65PublicKey, mldsa.MLDSA87PublicKey)
            )
            key.verify(signature, message)  # pure ML-DSA, empty context (RFC 9964)
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
