"""The software key's credential key algorithms: generate a key, its COSE_Key, sign with it.

ES256 and EdDSA by default; ML-DSA-44/65/87 (FIPS 204) when the key state lists them
(``keyadmin sim init --alg ML-DSA-44``). ML-DSA public keys are COSE key type AKP (7) with
the raw key in -1 ("pub"), signatures are pure ML-DSA with an empty context (RFC 9964).
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

ES256, EDDSA = -7, -8
ML_DSA_44, ML_DSA_65, ML_DSA_87 = -48, -49, -50
MLDSA = (ML_DSA_44, ML_DSA_65, ML_DSA_87)

#: The names ``keyadmin sim init --alg`` accepts (the policy file's names).
ALGORITHMS: dict[str, int] = {
    "ES256": ES256,
    "EdDSA": EDDSA,
    "ML-DSA-44": ML_DSA_44,
    "ML-DSA-65": ML_DSA_65,
    "ML-DSA-87": ML_DSA_87,
}
IMPLEMENTED = frozenset(ALGORITHMS.values())


def _mldsa_private_class(alg: int) -> Any:
    from cryptography.hazmat.primitives.asymmetric import mldsa

    classes: dict[int, Any] = {
        ML_DSA_44: mldsa.MLDSA44PrivateKey,
        ML_DSA_65: mldsa.MLDSA65PrivateKey,
        ML_DSA_87: mldsa.MLDSA87PrivateKey,
    }
    return classes[alg]


def check_available(alg: int) -> None:
    """Raise ValueError when this installation cannot make keys of ``alg``."""
    if alg not in IMPLEMENTED:
        raise ValueError(f"COSE algorithm {alg} is not one the software key implements")
    if alg in MLDSA:
        try:
            _mldsa_private_class(alg).generate()
        except Exception as e:  # noqa: BLE001 - ImportError or UnsupportedAlgorithm
            raise ValueError(
                f"this cryptography build cannot make ML-DSA keys ({type(e).__name__}); "
                "install cryptography >= 50"
            ) from None


def generate(alg: int) -> Any:
    if alg == ES256:
        return ec.generate_private_key(ec.SECP256R1())
    if alg == EDDSA:
        return ed25519.Ed25519PrivateKey.generate()
    return _mldsa_private_class(alg).generate()


def cose_public(alg: int, key: Any) -> dict[int, Any]:
    """The COSE_Key of ``key``'s public half, as it goes into authenticator data."""
    public = key.public_key()
    if alg == ES256:
        nums = public.public_numbers()
        return {
            1: 2,
            3: ES256,
            -1: 1,
            -2: nums.x.to_bytes(32, "big"),
            -3: nums.y.to_bytes(32, "big"),
        }
    if alg == EDDSA:
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {1: 1, 3: EDDSA, -1: 6, -2: raw}
    return {1: 7, 3: alg, -1: public.public_bytes_raw()}


def sign(alg: int, key: Any, message: bytes) -> bytes:
    if alg == ES256:
        return bytes(key.sign(message, ec.ECDSA(hashes.SHA256())))
    return bytes(key.sign(message))  # EdDSA, and ML-DSA with its empty context
