"""Authenticator side of the CTAP 2.1 PIN/UV auth protocols 1 and 2 (CTAP 2.1 §6.5.6, §6.5.7).

Written independently of python-fido2's platform side, so the two check each other.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class PinProtocolError(Exception):
    """The platform sent something the protocol cannot accept (maps to a CTAP error)."""


def _cose_ec2_public(key: ec.EllipticCurvePublicKey) -> dict[int, int | bytes]:
    nums = key.public_numbers()
    # ECDH-ES+HKDF-256 (-25) is what CTAP names for the key agreement key.
    return {1: 2, 3: -25, -1: 1, -2: nums.x.to_bytes(32, "big"), -3: nums.y.to_bytes(32, "big")}


def _platform_public(cose: object) -> ec.EllipticCurvePublicKey:
    if not isinstance(cose, dict):
        raise PinProtocolError("keyAgreement is not a COSE key map")
    x, y = cose.get(-2), cose.get(-3)
    if (
        cose.get(1) != 2
        or cose.get(-1) != 1
        or not isinstance(x, bytes)
        or not isinstance(y, bytes)
    ):
        raise PinProtocolError("keyAgreement is not a P-256 COSE key")
    try:
        return ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
        ).public_key()
    except ValueError:
        raise PinProtocolError("keyAgreement point is not on P-256") from None


class PinProtocol:
    version = 0
    token_bytes = 32

    def __init__(self) -> None:
        self.regenerate()

    def regenerate(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())

    def get_public_key(self) -> dict[int, int | bytes]:
        return _cose_ec2_public(self._key.public_key())

    def decapsulate(self, platform_cose: object) -> bytes:
        z = self._key.exchange(ec.ECDH(), _platform_public(platform_cose))
        return self.kdf(z)

    def kdf(self, z: bytes) -> bytes:
        raise NotImplementedError

    def encrypt(self, shared: bytes, plaintext: bytes) -> bytes:
        raise NotImplementedError

    def decrypt(self, shared: bytes, ciphertext: bytes) -> bytes:
        raise NotImplementedError

    def authenticate(self, key: bytes, message: bytes) -> bytes:
        raise NotImplementedError

    def verify(self, key: bytes, message: bytes, signature: object) -> bool:
        if not isinstance(signature, bytes):
            return False
        return hmac.compare_digest(self.authenticate(key, message), signature)


class PinProtocolV1(PinProtocol):
    version = 1

    def kdf(self, z: bytes) -> bytes:
        return hashlib.sha256(z).digest()

    def encrypt(self, shared: bytes, plaintext: bytes) -> bytes:
        enc = Cipher(algorithms.AES(shared), modes.CBC(b"\0" * 16)).encryptor()
        return enc.update(plaintext) + enc.finalize()

    def decrypt(self, shared: bytes, ciphertext: bytes) -> bytes:
        if len(ciphertext) % 16 or not ciphertext:
            raise PinProtocolError("ciphertext is not a whole number of AES blocks")
        dec = Cipher(algorithms.AES(shared), modes.CBC(b"\0" * 16)).decryptor()
        return dec.update(ciphertext) + dec.finalize()

    def authenticate(self, key: bytes, message: bytes) -> bytes:
        return hmac.new(key, message, hashlib.sha256).digest()[:16]


class PinProtocolV2(PinProtocol):
    version = 2

    def kdf(self, z: bytes) -> bytes:
        def hkdf(info: bytes) -> bytes:
            return HKDF(hashes.SHA256(), 32, b"\0" * 32, info).derive(z)

        return hkdf(b"CTAP2 HMAC key") + hkdf(b"CTAP2 AES key")

    def encrypt(self, shared: bytes, plaintext: bytes) -> bytes:
        iv = os.urandom(16)
        enc = Cipher(algorithms.AES(shared[32:]), modes.CBC(iv)).encryptor()
        return iv + enc.update(plaintext) + enc.finalize()

    def decrypt(self, shared: bytes, ciphertext: bytes) -> bytes:
        if len(ciphertext) < 32 or len(ciphertext) % 16:
            raise PinProtocolError("ciphertext is not IV plus whole AES blocks")
        dec = Cipher(algorithms.AES(shared[32:]), modes.CBC(ciphertext[:16])).decryptor()
        return dec.update(ciphertext[16:]) + dec.finalize()

    def authenticate(self, key: bytes, message: bytes) -> bytes:
        # With a shared secret the HMAC key is its first half; a token is used whole.
        return hmac.new(key[:32], message, hashlib.sha256).digest()
