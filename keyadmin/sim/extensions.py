"""The software key's makeCredential / getAssertion extensions beyond credProtect.

CTAP 2.1 §12: hmac-secret (and CTAP 2.2's hmac-secret-mc, which python-fido2 uses for PRF
at registration), credBlob, largeBlobKey and minPinLength. credProtect stays with the
authenticator, which needs it to decide which credentials a request may see.

Each credential keeps what its extensions need in its state (keyadmin.sim.state.Credential):
CredRandomWithUV || CredRandomWithoutUV for hmac-secret, its credBlob, its largeBlobKey.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from keyadmin.sim.ctap import CtapFailure, Err
from keyadmin.sim.params import CborIn, CborMap, CborOut
from keyadmin.sim.pinproto import PinProtocol, PinProtocolError
from keyadmin.sim.state import Credential, KeyState, b64d, b64e

#: The extensions getInfo lists (minPinLength: CTAP 2.1 §12.4; hmac-secret-mc: CTAP 2.2 §12.7).
SUPPORTED = (
    "credProtect",
    "hmac-secret",
    "hmac-secret-mc",
    "credBlob",
    "largeBlobKey",
    "minPinLength",
)
MAX_CRED_BLOB_LENGTH = 32
HMAC_SECRET_SALT_LEN = 32


@dataclass
class Outputs:
    """What one request's extensions add: authData extension outputs, and the largeBlobKey
    (makeCredential response 0x05, getAssertion response 0x07)."""

    auth_data: dict[str, CborOut]
    large_blob_key: bytes | None = None


def _salted_secret(
    value: CborIn | None,
    cred: Credential,
    uv: bool,
    protocols: dict[int, PinProtocol],
) -> bytes:
    """hmac-secret's output (CTAP 2.1 §12.5): HMAC-SHA-256(CredRandom, salt1 [, salt2]),
    encrypted for the platform under the shared secret of its keyAgreement."""
    if not isinstance(value, dict):
        raise CtapFailure(Err.CBOR_UNEXPECTED_TYPE, "hmac-secret input is not a map")
    key_agreement, salt_enc, salt_auth = value.get(1), value.get(2), value.get(3)
    version = value.get(4, 1)
    if not isinstance(key_agreement, dict) or not isinstance(salt_enc, bytes):
        raise CtapFailure(Err.MISSING_PARAMETER, "hmac-secret keyAgreement or saltEnc missing")
    if not isinstance(salt_auth, bytes):
        raise CtapFailure(Err.MISSING_PARAMETER, "hmac-secret saltAuth missing")
    proto = protocols.get(version) if isinstance(version, int) else None
    if proto is None:
        raise CtapFailure(Err.INVALID_PARAMETER, f"PIN/UV protocol {version!r} not supported")
    try:
        shared = proto.decapsulate(key_agreement)
    except PinProtocolError as e:
        raise CtapFailure(Err.INVALID_PARAMETER, str(e)) from None
    if not proto.verify(shared, salt_enc, salt_auth):
        raise CtapFailure(Err.PIN_AUTH_INVALID, "hmac-secret saltAuth does not verify")
    try:
        salts = proto.decrypt(shared, salt_enc)
    except PinProtocolError as e:
        raise CtapFailure(Err.INVALID_PARAMETER, str(e)) from None
    if len(salts) not in (HMAC_SECRET_SALT_LEN, 2 * HMAC_SECRET_SALT_LEN):
        raise CtapFailure(Err.INVALID_LENGTH, "hmac-secret takes one or two 32-byte salts")
    randoms = b64d(cred.cred_random or "")
    cred_random = randoms[:32] if uv else randoms[32:]
    output = b"".join(
        hmac.new(cred_random, salts[i : i + HMAC_SECRET_SALT_LEN], hashlib.sha256).digest()
        for i in range(0, len(salts), HMAC_SECRET_SALT_LEN)
    )
    return proto.encrypt(shared, output)


def _require_true(extensions: CborMap, name: str) -> bool:
    if name not in extensions:
        return False
    if extensions[name] is not True:
        raise CtapFailure(Err.INVALID_OPTION, f"{name} must be true")
    return True


def make_credential(
    extensions: CborMap,
    cred: Credential,
    state: KeyState,
    protocols: dict[int, PinProtocol],
    *,
    uv: bool,
) -> Outputs:
    """Apply the extensions to a new credential; return their outputs."""
    out = Outputs({})
    hmac_secret = extensions.get("hmac-secret") is True
    if hmac_secret:
        cred.cred_random = b64e(os.urandom(64))
        out.auth_data["hmac-secret"] = True
    if "hmac-secret-mc" in extensions:
        if not hmac_secret:
            raise CtapFailure(Err.INVALID_PARAMETER, "hmac-secret-mc needs hmac-secret")
        value = extensions["hmac-secret-mc"]
        out.auth_data["hmac-secret-mc"] = _salted_secret(value, cred, uv, protocols)
    if "credBlob" in extensions:
        blob = extensions["credBlob"]
        if not isinstance(blob, bytes):
            raise CtapFailure(Err.CBOR_UNEXPECTED_TYPE, "credBlob is not a byte string")
        stored = len(blob) <= MAX_CRED_BLOB_LENGTH
        if stored:
            cred.cred_blob = b64e(blob)
        out.auth_data["credBlob"] = stored
    if _require_true(extensions, "largeBlobKey"):
        if not cred.discoverable:
            raise CtapFailure(Err.INVALID_OPTION, "largeBlobKey needs a discoverable credential")
        key = os.urandom(32)
        cred.large_blob_key = b64e(key)
        out.large_blob_key = key
    if extensions.get("minPinLength") is True and cred.rp_id in state.min_pin_length_rp_ids:
        out.auth_data["minPinLength"] = state.min_pin_length
    return out


def get_assertion(
    extensions: CborMap,
    cred: Credential,
    protocols: dict[int, PinProtocol],
    *,
    uv: bool,
) -> Outputs:
    """The extensions' outputs for an assertion with ``cred``."""
    out = Outputs({})
    if "hmac-secret" in extensions and cred.cred_random is not None:
        out.auth_data["hmac-secret"] = _salted_secret(
            extensions["hmac-secret"], cred, uv, protocols
        )
    if extensions.get("credBlob") is True:
        out.auth_data["credBlob"] = b64d(cred.cred_blob) if cred.cred_blob else b""
    if _require_true(extensions, "largeBlobKey") and cred.large_blob_key:
        out.large_blob_key = b64d(cred.large_blob_key)
    return out
