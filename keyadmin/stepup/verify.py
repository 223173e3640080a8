"""The checks on one WebAuthn assertion, one function per check, in a fixed order.

``parse_response`` turns the browser's ``PublicKeyCredential`` JSON (base64url fields, as
``credential.toJSON()`` produces) into bytes; ``check_*`` raise on the first thing that does
not hold. Nothing here touches the database: ``keyadmin.stepup.api.finish`` calls these
before its one write transaction.

Order: type -> challenge -> origin (and crossOrigin) -> rpIdHash -> UP -> UV -> BE matches
the registration -> signature over authenticatorData || SHA-256(clientDataJSON).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from keyadmin.stepup.errors import StepUpRefused, UserVerificationMissing

FLAG_UP = 0x01
FLAG_UV = 0x04
FLAG_BE = 0x08
FLAG_BS = 0x10


_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


def b64url_decode(text: str) -> bytes:
    """``base64.urlsafe_b64decode`` with the padding added, without its per-call overhead
    (same alphabet, same non-strict handling; a non-ASCII text is a ValueError as there)."""
    data = text.encode("ascii").translate(_FROM_URLSAFE)
    return binascii.a2b_base64(data + b"=" * (-len(data) % 4))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class Assertion:
    """The browser's response, decoded; nothing in it is verified yet."""

    credential_id: bytes
    client_data_json: bytes
    authenticator_data: bytes
    signature: bytes
    user_handle: bytes | None

    def to_json(self) -> dict[str, Any]:
        """The ``PublicKeyCredential.toJSON()`` shape (what ``finish`` accepts)."""
        out: dict[str, Any] = {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(self.client_data_json),
                "authenticatorData": b64url(self.authenticator_data),
                "signature": b64url(self.signature),
            },
            "clientExtensionResults": {},
        }
        if self.user_handle is not None:
            out["response"]["userHandle"] = b64url(self.user_handle)
        return out


@dataclass(frozen=True)
class AuthData:
    rp_id_hash: bytes
    flags: int
    counter: int


def _field(obj: Mapping[str, Any], key: str) -> bytes:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise StepUpRefused(f"the response lacks {key}")
    try:
        return b64url_decode(value)
    except (ValueError, TypeError):
        raise StepUpRefused(f"the response's {key} is not base64url") from None


def parse_response(response: Mapping[str, Any] | str | bytes) -> Assertion:
    """Decode ``PublicKeyCredential`` JSON (a dict, or its JSON text)."""
    if isinstance(response, (str, bytes)):
        try:
            response = json.loads(response)
        except ValueError:
            raise StepUpRefused("the response is not JSON") from None
    if not isinstance(response, Mapping):
        raise StepUpRefused("the response is not a PublicKeyCredential object")
    if response.get("type", "public-key") != "public-key":
        raise StepUpRefused(f"credential type {response.get('type')!r} is not public-key")
    inner = response.get("response")
    if not isinstance(inner, Mapping):
        raise StepUpRefused("the response lacks its 'response' object")
    raw_id = _field(response, "rawId" if "rawId" in response else "id")
    if "id" in response and "rawId" in response and _field(response, "id") != raw_id:
        raise StepUpRefused("id and rawId differ")
    handle = inner.get("userHandle")
    return Assertion(
        credential_id=raw_id,
        client_data_json=_field(inner, "clientDataJSON"),
        authenticator_data=_field(inner, "authenticatorData"),
        signature=_field(inner, "signature"),
        user_handle=_field(inner, "userHandle") if handle else None,
    )


def parse_auth_data(data: bytes) -> AuthData:
    if len(data) < 37:
        raise StepUpRefused(f"authenticatorData is {len(data)} bytes; at least 37 expected")
    return AuthData(data[:32], data[32], int.from_bytes(data[33:37], "big"))


def check_client_data(
    client_data_json: bytes, *, challenge: bytes, origins: tuple[str, ...]
) -> None:
    try:
        cd = json.loads(client_data_json)
    except ValueError:
        raise StepUpRefused("clientDataJSON is not JSON") from None
    if not isinstance(cd, dict):
        raise StepUpRefused("clientDataJSON is not an object")
    if cd.get("type") != "webauthn.get":
        raise StepUpRefused(f"clientData type {cd.get('type')!r} is not webauthn.get")
    try:
        signed = b64url_decode(str(cd.get("challenge", "")))
    except ValueError:
        signed = b""
    if not hmac.compare_digest(signed, challenge):
        raise StepUpRefused("the assertion was made for another challenge (or another action)")
    if cd.get("origin") not in origins:
        raise StepUpRefused(
            f"origin {cd.get('origin')!r} is not one of the policy's origins",
            hint=f"expected one of: {', '.join(origins)}",
        )
    if cd.get("crossOrigin") is True:
        raise StepUpRefused("cross-origin assertions are not accepted for step-up")


@lru_cache(maxsize=256)
def _rp_id_hash(rp_id: str) -> bytes:
    return hashlib.sha256(rp_id.encode()).digest()


def check_auth_data(
    auth: AuthData, *, rp_id: str, registered_backup_eligible: bool, device_bound: bool
) -> None:
    if not hmac.compare_digest(auth.rp_id_hash, _rp_id_hash(rp_id)):
        raise StepUpRefused(f"rpIdHash is not SHA-256 of {rp_id!r}")
    if not auth.flags & FLAG_UP:
        raise StepUpRefused("user presence (UP) is not set")
    if not auth.flags & FLAG_UV:
        raise UserVerificationMissing(
            "the key did not verify the user (UV not set)",
            hint="step-up needs the key's PIN or built-in verification",
        )
    be = bool(auth.flags & FLAG_BE)
    if be != registered_backup_eligible:
        raise StepUpRefused(
            f"backup eligibility changed since enrolment (BE={int(be)}, registered "
            f"{int(registered_backup_eligible)})"
        )
    if device_bound and be:
        raise StepUpRefused("the credential may be synced (BE=1); the policy wants device-bound")


Verifier = Callable[[bytes, bytes], None]


@lru_cache(maxsize=4096)
def verifier_for(cose_key: bytes) -> Verifier:
    """A verify(message, signature) for a stored COSE public key (parsed once, cached)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from fido2 import cbor

    params = cbor.decode(cose_key)
    if not isinstance(params, dict):
        raise StepUpRefused("the stored public key is not a COSE map")
    alg, kty = params.get(3), params.get(1)
    if alg == -7 and kty == 2 and params.get(-1) == 1:
        x, y = params[-2], params[-3]
        pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + x + y)
        algorithm = ec.ECDSA(hashes.SHA256())

        def es256(message: bytes, signature: bytes) -> None:
            pub.verify(signature, message, algorithm)

        return es256
    if alg == -8 and kty == 1 and params.get(-1) == 6:
        ed = ed25519.Ed25519PublicKey.from_public_bytes(params[-2])

        def eddsa(message: bytes, signature: bytes) -> None:
            ed.verify(signature, message)

        return eddsa
    return _cose_verifier(params)


def _cose_verifier(params: Mapping[int, Any]) -> Verifier:
    """Every other algorithm (ML-DSA, ES384, RS256, ...) through keyadmin's one COSE reader."""
    from cryptography.exceptions import InvalidSignature

    from keyadmin.attestation.errors import AttestationError
    from keyadmin.attestation.signatures import load_cose_key, verify_signature

    try:
        key, alg = load_cose_key(params)
    except AttestationError as e:
        raise StepUpRefused(f"the registered public key cannot be used: {e.reason}") from None
    if key is None:
        raise StepUpRefused(
            f"the registered key's COSE algorithm {alg} is not one keyadmin verifies"
        )
    checked_key = key

    def other(message: bytes, signature: bytes) -> None:
        try:
            verify_signature(checked_key, alg, message, signature, what="assertion signature")
        except AttestationError:
            raise InvalidSignature from None

    return other


def check_signature(cose_key: bytes, auth_data: bytes, client_data_json: bytes, sig: bytes) -> None:
    from cryptography.exceptions import InvalidSignature

    try:
        verify = verifier_for(cose_key)
        verify(auth_data + hashlib.sha256(client_data_json).digest(), sig)
    except StepUpRefused:
        raise
    except (InvalidSignature, ValueError, TypeError, KeyError):
        raise StepUpRefused("the signature does not verify with the registered key") from None
