"""fmt "android-safetynet" (WebAuthn 8.5): a SafetyNet attestation JWS.

Beyond python-fido2: the JWS alg restricted to RS256/ES256 and matched to the leaf key,
every base64 part decoded strictly, ``ver`` required, ``timestampMs`` checked against the
verification time (at most ``MAX_AGE`` old, not in the future), and ``ctsProfileMatch``
required true. The JWS x5c becomes the chain to validate.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509

from keyadmin.attestation.errors import AttestationInvalid, AttestationMalformed
from keyadmin.attestation.formats._common import check_not_ca, require_keys, signed_data
from keyadmin.attestation.model import AttestationType, ParsedRegistration, StatementResult
from keyadmin.attestation.parse import load_certificate
from keyadmin.attestation.signatures import ES256, RS256, verify_signature
from keyadmin.b64 import decode_any

FMT = "android-safetynet"
MAX_AGE = timedelta(minutes=10)
CLOCK_SKEW = timedelta(minutes=1)
_JWS_ALGS = {"RS256": RS256, "ES256": ES256}


def verify_android_safetynet(parsed: ParsedRegistration, at: datetime) -> StatementResult:
    stmt = parsed.att_stmt
    require_keys(stmt, FMT, frozenset({"ver", "response"}))
    if not isinstance(stmt["ver"], str) or not stmt["ver"]:
        raise AttestationMalformed("android-safetynet ver is not a non-empty text string")
    response = stmt["response"]
    if not isinstance(response, bytes):
        raise AttestationMalformed("android-safetynet response is not a byte string")
    header, payload, signing_input, signature = _split_jws(response)
    chain = _header_chain(header)
    cert = chain[0]
    check_not_ca(cert, FMT)
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if len(cn) != 1 or cn[0].value != "attest.android.com":
        raise AttestationInvalid(
            "android-safetynet certificate is not issued to attest.android.com"
        )
    name = header.get("alg")
    alg = _JWS_ALGS.get(name) if isinstance(name, str) else None
    if alg is None:
        raise AttestationInvalid(
            f"android-safetynet JWS alg {header.get('alg')!r} is not RS256 or ES256"
        )
    verify_signature(
        cert.public_key(), alg, signing_input, signature, what="android-safetynet JWS signature"
    )
    check_payload(payload, parsed, at)
    return StatementResult(AttestationType.BASIC, chain, {"cts_profile_match": True})


def check_payload(payload: dict[str, Any], parsed: ParsedRegistration, at: datetime) -> None:
    nonce = payload.get("nonce")
    if not isinstance(nonce, str):
        raise AttestationMalformed("android-safetynet payload has no nonce")
    expected = hashlib.sha256(signed_data(parsed)).digest()
    if not hmac.compare_digest(_b64decode(nonce, "nonce"), expected):
        raise AttestationInvalid(
            "android-safetynet nonce is not SHA-256(authData || clientDataHash)"
        )
    if payload.get("ctsProfileMatch") is not True:
        raise AttestationInvalid("android-safetynet ctsProfileMatch is not true")
    ts = payload.get("timestampMs")
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise AttestationMalformed("android-safetynet payload has no integer timestampMs")
    try:
        issued = datetime.fromtimestamp(0, tz=at.tzinfo) + timedelta(milliseconds=ts)
    except (OverflowError, ValueError):
        raise AttestationMalformed(
            f"android-safetynet timestampMs {ts} is not a representable time"
        ) from None
    if issued > at + CLOCK_SKEW:
        raise AttestationInvalid(
            f"android-safetynet response was issued at {issued.isoformat()},"
            f" after the verification time {at.isoformat()}"
        )
    if at - issued > MAX_AGE:
        raise AttestationInvalid(
            f"android-safetynet response issued at {issued.isoformat()} is "
            f"older than {MAX_AGE} at {at.isoformat()}"
        )


def _split_jws(response: bytes) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    parts = response.split(b".")
    if len(parts) != 3:
        raise AttestationMalformed("android-safetynet response is not a compact JWS")
    header = _json(_b64decode(parts[0].decode("ascii", "replace"), "JWS header"), "header")
    payload = _json(_b64decode(parts[1].decode("ascii", "replace"), "JWS payload"), "payload")
    signature = _b64decode(parts[2].decode("ascii", "replace"), "JWS signature")
    return header, payload, parts[0] + b"." + parts[1], signature


def _header_chain(header: dict[str, Any]) -> tuple[x509.Certificate, ...]:
    x5c = header.get("x5c")
    if not isinstance(x5c, list) or not x5c or not all(isinstance(c, str) for c in x5c):
        raise AttestationMalformed("android-safetynet JWS header has no x5c array")
    return tuple(
        load_certificate(_b64decode(c, f"x5c[{i}]"), f"JWS x5c[{i}]") for i, c in enumerate(x5c)
    )


def _json(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise AttestationMalformed(f"android-safetynet JWS {what} is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise AttestationMalformed(f"android-safetynet JWS {what} is not a JSON object")
    return value


def _b64decode(text: str, what: str) -> bytes:
    """Decode base64 in either alphabet (SafetyNet mixes them), strictly and canonically:
    two texts must not decode to the same signed bytes."""
    try:
        return decode_any(text)
    except ValueError as e:
        raise AttestationMalformed(f"android-safetynet {what} is not base64 ({e})") from None
