"""The checks on one WebAuthn assertion, one function per check, in a fixed order.

``parse_response`` turns the browser's ``PublicKeyCredential`` JSON (base64url fields, as
``credential.toJSON()`` produces) into bytes; ``check_*`` raise on the first thing that does
not hold. Nothing here touches the database: ``keyadmin.stepup.api.finish`` calls these
before its one write transaction.

Every externally supplied value is bounded first (``MAX_SIZES``: the response text, then
each field before and after decoding). ``finish`` checks the signature over
authenticatorData || SHA-256(clientDataJSON) first, then: challenge (another one: a replay,
``AssertionReplayed``) -> type -> origin -> topOrigin and crossOrigin -> the layout of the
authenticator data (AT, ED, no trailing bytes) -> rpIdHash -> UP -> UV -> BS only with BE ->
BE matches the registration.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import NotRequired, TypedDict

from keyadmin.b64 import decode_url, encode_url
from keyadmin.stepup.errors import AssertionReplayed, StepUpRefused, UserVerificationMissing

FLAG_UP = 0x01
FLAG_UV = 0x04
FLAG_BE = 0x08
FLAG_BS = 0x10

#: The most bytes accepted per field of a response (WebAuthn: credential ids up to 1023
#: bytes, user handles up to 64); anything larger is refused before it is stored or logged.
MAX_SIZES = {
    "credential id": 1023,
    "clientDataJSON": 8192,
    "authenticatorData": 4096,
    "signature": 8192,  # ML-DSA-87 is 4627 bytes, RSA-8192 1024; ES256 is at most 72
    "userHandle": 64,
}
#: The most bytes of response JSON text ``parse_response`` reads.
MAX_RESPONSE_BYTES = 64 * 1024


def _short(value: object, limit: int = 64) -> str:
    """``repr(value)`` cut to ``limit`` characters: a message quoting client input stays short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def trace(value: str | bytes, keep: int = 16) -> dict[str, str | int]:
    """What the log keeps of an oversized value: its length, SHA-256 and first characters."""
    data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
    prefix = value[:keep] if isinstance(value, str) else value[:keep].hex()
    return {"length": len(value), "sha256": hashlib.sha256(data).hexdigest(), "prefix": prefix}


def _too_large(name: str, size: int) -> StepUpRefused:
    return StepUpRefused(
        f"the {name} is {size} bytes; at most {MAX_SIZES[name]} are accepted",
        hint="send the PublicKeyCredential exactly as the browser returned it",
    )


class AssertionResponseJSON(TypedDict):
    clientDataJSON: str  # base64url, as every field here
    authenticatorData: str
    signature: str
    userHandle: NotRequired[str]


class AssertionJSON(TypedDict):
    """``PublicKeyCredential.toJSON()`` of an assertion."""

    id: str
    rawId: str
    type: str
    response: AssertionResponseJSON
    clientExtensionResults: dict[str, object]


@dataclass(frozen=True)
class Assertion:
    """The browser's response, decoded; nothing in it is verified yet."""

    credential_id: bytes
    client_data_json: bytes
    authenticator_data: bytes
    signature: bytes
    user_handle: bytes | None

    def to_json(self) -> AssertionJSON:
        """The ``PublicKeyCredential.toJSON()`` shape (what ``finish`` accepts)."""
        out: AssertionJSON = {
            "id": encode_url(self.credential_id),
            "rawId": encode_url(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": encode_url(self.client_data_json),
                "authenticatorData": encode_url(self.authenticator_data),
                "signature": encode_url(self.signature),
            },
            "clientExtensionResults": {},
        }
        if self.user_handle is not None:
            out["response"]["userHandle"] = encode_url(self.user_handle)
        return out


@dataclass(frozen=True)
class AuthData:
    rp_id_hash: bytes
    flags: int
    counter: int


class _DuplicateKey(Exception):
    pass


def _unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj: dict[str, object] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKey(key)
        obj[key] = value
    return obj


def loads(text: str | bytes, what: str) -> object:
    """JSON from a browser or a key: refused (StepUpRefused) when it is not JSON, holds a key
    twice (parsers disagree on which one wins) or is nested too deeply for the parser."""
    try:
        return json.loads(text, object_pairs_hook=_unique)
    except _DuplicateKey as e:
        raise StepUpRefused(
            f"the {what} holds the key {_short(e.args[0])} twice (duplicate keys are ambiguous)"
        ) from None
    except RecursionError:
        raise StepUpRefused(f"the {what} is nested too deeply") from None
    except ValueError:
        raise StepUpRefused(f"the {what} is not JSON") from None


def _field(obj: Mapping[str, object], key: str, name: str) -> bytes:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise StepUpRefused(f"the response lacks {key}")
    if len(value) > 2 * (MAX_SIZES[name] * 4 // 3 + 4):  # far too long: do not even decode
        raise _too_large(name, len(value.rstrip("=")) * 3 // 4)
    try:
        return decode_url(value)
    except (ValueError, TypeError):
        raise StepUpRefused(f"the response's {key} is not base64url") from None


def check_sizes(assertion: Assertion) -> None:
    """Refuse any field larger than ``MAX_SIZES`` (also for an Assertion built by a caller)."""
    sizes = {
        "credential id": len(assertion.credential_id),
        "clientDataJSON": len(assertion.client_data_json),
        "authenticatorData": len(assertion.authenticator_data),
        "signature": len(assertion.signature),
        "userHandle": len(assertion.user_handle or b""),
    }
    for name, size in sizes.items():
        if size > MAX_SIZES[name]:
            raise _too_large(name, size)


def parse_response(response: Mapping[str, object] | str | bytes) -> Assertion:
    """Decode ``PublicKeyCredential`` JSON (a dict, or its JSON text), every field bounded."""
    decoded: object = response
    if isinstance(response, (str, bytes)):
        if len(response) > MAX_RESPONSE_BYTES:
            raise StepUpRefused(
                f"the response is {len(response)} bytes; at most {MAX_RESPONSE_BYTES} are read"
            )
        decoded = loads(response, "response")
    if not isinstance(decoded, Mapping):
        raise StepUpRefused("the response is not a PublicKeyCredential object")
    response = decoded
    if response.get("type", "public-key") != "public-key":
        raise StepUpRefused(f"credential type {_short(response.get('type'))} is not public-key")
    inner = response.get("response")
    if not isinstance(inner, Mapping):
        raise StepUpRefused("the response lacks its 'response' object")
    cid = "credential id"
    raw_id = _field(response, "rawId" if "rawId" in response else "id", cid)
    if "id" in response and "rawId" in response and _field(response, "id", cid) != raw_id:
        raise StepUpRefused("id and rawId differ")
    handle = inner.get("userHandle")
    assertion = Assertion(
        credential_id=raw_id,
        client_data_json=_field(inner, "clientDataJSON", "clientDataJSON"),
        authenticator_data=_field(inner, "authenticatorData", "authenticatorData"),
        signature=_field(inner, "signature", "signature"),
        user_handle=_field(inner, "userHandle", "userHandle") if handle else None,
    )
    check_sizes(assertion)  # the rule, on the decoded bytes
    return assertion


def parse_auth_data(data: bytes) -> AuthData:
    """rpIdHash, flags, counter; the flags must describe what follows them: AT never (an
    assertion carries no attested credential data), ED exactly when one CBOR map of
    extensions follows, nothing else after the counter (``keyadmin.attestation.authdata``,
    the one parser, with its strict CBOR)."""
    from keyadmin.attestation.authdata import parse
    from keyadmin.attestation.errors import AttestationMalformed

    try:
        parsed = parse(data, attested=False, what="authenticatorData")
    except AttestationMalformed as e:
        raise StepUpRefused(e.reason) from None
    return AuthData(parsed.rp_id_hash, parsed.flags.raw, parsed.counter)


def check_client_data(
    client_data_json: bytes, *, challenge: bytes, origins: tuple[str, ...]
) -> None:
    """Call only once the signature over this client data has verified: a different
    challenge is then a replay (``AssertionReplayed``), not a forgery."""
    cd = loads(client_data_json, "clientDataJSON")
    if not isinstance(cd, dict):
        raise StepUpRefused("clientDataJSON is not an object")
    try:
        signed = decode_url(str(cd.get("challenge", "")))
    except ValueError:
        signed = b""
    if not hmac.compare_digest(signed, challenge):
        raise AssertionReplayed(
            "the assertion was signed for another challenge (a replayed assertion, or one "
            "made for another action); this challenge stays usable",
            hint="make a new assertion for this challenge",
        )
    if cd.get("type") != "webauthn.get":
        raise StepUpRefused(f"clientData type {_short(cd.get('type'))} is not webauthn.get")
    if cd.get("origin") not in origins:
        raise StepUpRefused(
            f"origin {_short(cd.get('origin'))} is not one of the policy's origins",
            hint=f"expected one of: {', '.join(origins)}",
        )
    _check_cross_origin(cd, origins)


def _check_cross_origin(cd: Mapping[str, object], origins: tuple[str, ...]) -> None:
    """crossOrigin absent or a JSON boolean, and not true (no policy allows cross-origin
    step-up); topOrigin, which a client sends only for a cross-origin call, refused with the
    reason that names what is wrong with it."""
    cross = cd.get("crossOrigin", False)
    if not isinstance(cross, bool):
        raise StepUpRefused(f"clientData crossOrigin is not a JSON boolean: {_short(cross)}")
    if "topOrigin" in cd:
        top = cd["topOrigin"]
        if top not in origins:
            raise StepUpRefused(f"clientData topOrigin {_short(top)} is not an allowed origin")
        if not cross:
            raise StepUpRefused("clientData topOrigin is present but crossOrigin is not true")
    if cross:
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
    if auth.flags & FLAG_BS and not be:
        raise StepUpRefused(
            "BS=1 with BE=0 in authenticatorData: a credential that is not backup eligible "
            "cannot be backed up (invalid flags)"
        )
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


def _cose_verifier(params: Mapping[int, object]) -> Verifier:
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
