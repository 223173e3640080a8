"""The software key's attestation statements (WebAuthn §8.2 packed, §8.6 fido-u2f, §8.7 none).

``KeyState.attestation`` picks the format: packed with the lab batch certificate chain,
self (packed without x5c, signed by the credential key), none, or fido-u2f (a U2F-era key).
An enterprise attestation is packed, signed by the key's own enterprise certificate.
Every signature and the batch certificate pass through the fault hooks.
"""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from keyadmin.sim.credkeys import ES256, CredentialKey, sign
from keyadmin.sim.ctap import CtapFailure, Err
from keyadmin.sim.enterprise import signing_identity
from keyadmin.sim.faults import FaultHooks
from keyadmin.sim.params import CborOut
from keyadmin.sim.pki import ec_key
from keyadmin.sim.state import Credential, KeyState

Statement = tuple[str, dict[str, CborOut]]


def _der(cert_pem: str) -> bytes:
    return x509.load_pem_x509_certificate(cert_pem.encode()).public_bytes(
        serialization.Encoding.DER
    )


def attest(
    state: KeyState,
    faults: FaultHooks,
    *,
    auth_data: bytes,
    cdh: bytes,
    cred: Credential,
    key: CredentialKey,
    cose: dict[int, int | bytes],
    rp_id: str,
) -> Statement:
    """The (fmt, attStmt) of a new credential in the key's attestation mode."""
    mode = state.attestation
    if mode == "none":
        return "none", {}
    if mode == "self":
        sig = sign(cred.algorithm, key, auth_data + cdh)
        return "packed", {"alg": cred.algorithm, "sig": faults.signature(sig)}
    leaf_key = ec_key(state.leaf_key_pem)
    leaf_der = faults.leaf(_der(state.leaf_cert_pem))
    if mode == "fido-u2f":
        x, y = cose[-2], cose[-3]
        if cred.algorithm != ES256 or not isinstance(x, bytes) or not isinstance(y, bytes):
            raise CtapFailure(Err.UNSUPPORTED_ALGORITHM, "fido-u2f attestation needs ES256")
        point = b"\x04" + x + y
        signed = b"\0" + hashlib.sha256(rp_id.encode()).digest() + cdh + cred.id_bytes + point
        sig = sign(ES256, leaf_key, signed)
        return "fido-u2f", {"sig": faults.signature(sig), "x5c": [leaf_der]}
    sig = sign(ES256, leaf_key, auth_data + cdh)
    return "packed", {
        "alg": ES256,
        "sig": faults.signature(sig),
        "x5c": [leaf_der, _der(state.intermediate_cert_pem)],
    }


def attest_enterprise(state: KeyState, faults: FaultHooks, signed: bytes) -> Statement:
    """Packed attestation with the key's own enterprise certificate (its serial)."""
    ep_key, ep_der = signing_identity(state)
    return "packed", {
        "alg": ES256,
        "sig": faults.signature(sign(ES256, ep_key, signed)),
        "x5c": [ep_der, _der(state.intermediate_cert_pem)],
    }
