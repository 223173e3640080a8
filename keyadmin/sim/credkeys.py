"""The software key's credential key algorithms: generate a key, its COSE_Key, sign with it.

ES256, EdDSA, ES384 and RS256 by default (what a YubiKey 5.7 offers); ML-DSA-44/65/87
(FIPS 204) when the key state lists them
(``keyadmin sim init --alg ML-DSA-44``). ML-DSA public keys are COSE key type AKP (7) with
the raw key in -1 ("pub"), signatures are pure ML-DSA with an empty context (RFC 9964).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeAlias, runtime_checkable

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

ES256, EDDSA, ES384, RS256 = -7, -8, -35, -257
ES512, PS256, ES256K = -36, -37, -47  # offered only when asked for (no YubiKey 5 has them)
ML_DSA_44, ML_DSA_65, ML_DSA_87 = -48, -49, -50
MLDSA = (ML_DSA_44, ML_DSA_65, ML_DSA_87)

#: The names ``keyadmin sim init --alg`` accepts (the policy file's names).
ALGORITHMS: dict[str, int] = {
    "ES256": ES256,
    "EdDSA": EDDSA,
    "ES384": ES384,
    "RS256": RS256,
    "ES512": ES512,
    "PS256": PS256,
    "ES256K": ES256K,
    "ML-DSA-44": ML_DSA_44,
    "ML-DSA-65": ML_DSA_65,
    "ML-DSA-87": ML_DSA_87,
}
IMPLEMENTED = frozenset(ALGORITHMS.values())
#: What a new key offers unless ``keyadmin sim init --alg`` says otherwise.
DEFAULT_ALGORITHMS = (ES256, EDDSA, ES384, RS256)
_EC_CURVES: dict[int, tuple[type[ec.EllipticCurve], type[hashes.HashAlgorithm], int]] = {
    ES256: (ec.SECP256R1, hashes.SHA256, 1),  # COSE crv P-256
    ES384: (ec.SECP384R1, hashes.SHA384, 2),  # COSE crv P-384
    ES512: (ec.SECP521R1, hashes.SHA512, 3),  # COSE crv P-521
    ES256K: (ec.SECP256K1, hashes.SHA256, 8),  # COSE crv secp256k1 (RFC 8812)
}
_RSA = (RS256, PS256)


class _RawPublicKey(Protocol):
    def public_bytes_raw(self) -> bytes: ...


@runtime_checkable
class RawSigningKey(Protocol):
    """An ML-DSA private key (cryptography >= 50): pure signatures, raw public bytes."""

    def sign(self, data: bytes) -> bytes: ...

    def public_key(self) -> _RawPublicKey: ...

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes: ...


#: A credential's private key, as the software key keeps it (PEM in the state file).
CredentialKey: TypeAlias = (
    ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | RawSigningKey
)


def _mldsa_generator(alg: int) -> Callable[[], RawSigningKey]:
    from cryptography.hazmat.primitives.asymmetric import mldsa

    generators: dict[int, Callable[[], RawSigningKey]] = {
        ML_DSA_44: mldsa.MLDSA44PrivateKey.generate,
        ML_DSA_65: mldsa.MLDSA65PrivateKey.generate,
        ML_DSA_87: mldsa.MLDSA87PrivateKey.generate,
    }
    return generators[alg]


def check_available(alg: int) -> None:
    """Raise ValueError when this installation cannot make keys of ``alg``."""
    if alg not in IMPLEMENTED:
        raise ValueError(f"COSE algorithm {alg} is not one the software key implements")
    if alg in MLDSA:
        try:
            _mldsa_generator(alg)()
        except Exception as e:  # noqa: BLE001 - ImportError or UnsupportedAlgorithm
            raise ValueError(
                f"this cryptography build cannot make ML-DSA keys ({type(e).__name__}); "
                "install cryptography >= 50"
            ) from None


def generate(alg: int) -> CredentialKey:
    if alg in _EC_CURVES:
        return ec.generate_private_key(_EC_CURVES[alg][0]())
    if alg in _RSA:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == EDDSA:
        return ed25519.Ed25519PrivateKey.generate()
    return _mldsa_generator(alg)()


def load(pem: str) -> CredentialKey:
    """A credential key from its PEM (PKCS#8, as ``pem`` writes it)."""
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        return key
    if isinstance(key, RawSigningKey):
        return key
    raise TypeError(f"a credential key of type {type(key).__name__} is not one the key makes")


def pem(key: CredentialKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def cose_public(alg: int, key: CredentialKey) -> dict[int, int | bytes]:
    """The COSE_Key of ``key``'s public half, as it goes into authenticator data."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        public = key.public_key()
        nums = public.public_numbers()
        size = (public.curve.key_size + 7) // 8
        return {
            1: 2,
            3: alg,
            -1: _EC_CURVES[alg][2],
            -2: nums.x.to_bytes(size, "big"),
            -3: nums.y.to_bytes(size, "big"),
        }
    if isinstance(key, rsa.RSAPrivateKey):
        rsa_nums = key.public_key().public_numbers()
        return {
            1: 3,
            3: alg,
            -1: rsa_nums.n.to_bytes((rsa_nums.n.bit_length() + 7) // 8, "big"),
            -2: rsa_nums.e.to_bytes((rsa_nums.e.bit_length() + 7) // 8, "big"),
        }
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return {1: 1, 3: EDDSA, -1: 6, -2: raw}
    return {1: 7, 3: alg, -1: key.public_key().public_bytes_raw()}


def sign(alg: int, key: CredentialKey, message: bytes) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(message, ec.ECDSA(_EC_CURVES[alg][1]()))
    if isinstance(key, rsa.RSAPrivateKey):
        if alg == PS256:  # RFC 8230: MGF1 with SHA-256, a salt as long as the hash
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            return key.sign(message, pss, hashes.SHA256())
        return key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(message)  # EdDSA, and ML-DSA with its empty context
