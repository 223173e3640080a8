"""Step 1: parse a registration into a ``ParsedRegistration``, or raise ``AttestationMalformed``.

Nothing here is trusted yet: parsing only establishes that every field has the shape the
WebAuthn spec gives it (CBOR with no trailing bytes, authenticator data with attested
credential data and nothing after the extensions, a loadable COSE key, DER certificates).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from keyadmin.attestation import authdata, cbor
from keyadmin.attestation.errors import AttestationMalformed
from keyadmin.attestation.model import ClientData, ParsedRegistration
from keyadmin.attestation.signatures import load_cose_key
from keyadmin.b64 import decode_url

_DECODE_ERRORS = (cbor.CborError,)

_ATT_OBJ_KEYS = frozenset({"fmt", "attStmt", "authData"})
_MAX_INPUT = 64 * 1024


def parse_registration(attestation_object: bytes, client_data_json: bytes) -> ParsedRegistration:
    """Parse an attestationObject and the clientDataJSON it was made over."""
    client_data = parse_client_data(client_data_json)
    return parse_attestation_object(
        attestation_object, hashlib.sha256(client_data_json).digest(), client_data=client_data
    )


def parse_client_data(client_data_json: bytes) -> ClientData:
    """Parse clientDataJSON of a create() ceremony."""
    if not isinstance(client_data_json, bytes):
        raise AttestationMalformed("clientDataJSON must be bytes")
    if len(client_data_json) > _MAX_INPUT:
        raise AttestationMalformed("clientDataJSON is larger than 64 KiB")
    try:
        data = json.loads(client_data_json.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise AttestationMalformed(f"clientDataJSON is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise AttestationMalformed("clientDataJSON is not a JSON object")
    kind = data.get("type")
    if kind != "webauthn.create":
        raise AttestationMalformed(f"clientDataJSON type is {kind!r}, not 'webauthn.create'")
    challenge = data.get("challenge")
    origin = data.get("origin")
    if not isinstance(challenge, str) or not isinstance(origin, str):
        raise AttestationMalformed("clientDataJSON lacks a string challenge or origin")
    try:
        raw_challenge = decode_url(challenge)
    except ValueError:
        raise AttestationMalformed("clientDataJSON challenge is not base64url") from None
    cross = data.get("crossOrigin", False)
    return ClientData(
        type=kind,
        challenge=raw_challenge,
        origin=origin,
        cross_origin=cross is True,
        raw=client_data_json,
    )


def parse_attestation_object(
    attestation_object: bytes, client_data_hash: bytes, *, client_data: ClientData | None = None
) -> ParsedRegistration:
    """Parse a CBOR attestationObject given the SHA-256 of its clientDataJSON."""
    if not isinstance(attestation_object, bytes):
        raise AttestationMalformed("attestationObject must be bytes")
    if len(attestation_object) > _MAX_INPUT:
        raise AttestationMalformed("attestationObject is larger than 64 KiB")
    if not isinstance(client_data_hash, bytes) or len(client_data_hash) != 32:
        raise AttestationMalformed("clientDataHash must be 32 bytes")
    try:
        obj = cbor.decode(attestation_object)
    except _DECODE_ERRORS as e:
        raise AttestationMalformed(f"attestationObject is not valid CBOR: {e}") from None
    if not isinstance(obj, dict):
        raise AttestationMalformed("attestationObject is not a CBOR map")
    keys = set(obj)
    if keys != _ATT_OBJ_KEYS:
        raise AttestationMalformed(
            f"attestationObject must have exactly fmt, attStmt and authData; it has "
            f"{sorted(map(repr, keys))}"
        )
    fmt, att_stmt, auth_data = obj["fmt"], obj["attStmt"], obj["authData"]
    if not isinstance(fmt, str) or not fmt:
        raise AttestationMalformed("attestationObject fmt is not a text string")
    if not isinstance(att_stmt, dict) or not all(isinstance(k, str) for k in att_stmt):
        raise AttestationMalformed("attStmt is not a map with text keys")
    if not isinstance(auth_data, bytes):
        raise AttestationMalformed("authData is not a byte string")
    return parse_parts(fmt, att_stmt, auth_data, client_data_hash, client_data=client_data)


def parse_parts(
    fmt: str,
    att_stmt: Mapping[str, Any],
    auth_data: bytes,
    client_data_hash: bytes,
    *,
    client_data: ClientData | None = None,
) -> ParsedRegistration:
    """Parse an already-split registration (fmt, attStmt, authData, clientDataHash)."""
    parts = authdata.parse(auth_data, attested=True)
    credential = parts.attested
    assert credential is not None  # attested=True: parse refuses authData without it
    x5c = parse_x5c(att_stmt.get("x5c"))
    key, alg = load_cose_key(credential.public_key)
    return ParsedRegistration(
        fmt=fmt,
        att_stmt=att_stmt,
        auth_data=auth_data,
        client_data_hash=client_data_hash,
        client_data=client_data,
        rp_id_hash=parts.rp_id_hash,
        flags=parts.flags,
        sign_count=parts.counter,
        aaguid=credential.aaguid,
        credential_id=credential.credential_id,
        credential_public_key=credential.public_key,
        credential_public_key_cbor=credential.public_key_cbor,
        credential_key=key,
        algorithm=alg,
        extensions=parts.extensions,
        x5c=x5c,
    )


def parse_x5c(value: Any) -> tuple[x509.Certificate, ...]:
    """Load an attStmt ``x5c`` array (absent means an empty tuple)."""
    if value is None:
        return ()
    if not isinstance(value, list) or not value:
        raise AttestationMalformed("x5c is not a non-empty array")
    certs = []
    for i, der in enumerate(value):
        if not isinstance(der, bytes):
            raise AttestationMalformed(f"x5c[{i}] is not a byte string")
        certs.append(load_certificate(der, f"x5c[{i}]"))
    return tuple(certs)


def load_certificate(der: bytes, what: str) -> x509.Certificate:
    """Load one DER certificate; refuse one ``cryptography`` cannot read.

    ``cryptography`` parses some parts lazily; they are touched here so that a bad key,
    name, extension or algorithm is a parse failure now rather than a surprise later.
    """
    try:
        cert = x509.load_der_x509_certificate(der)
        cert.version  # noqa: B018
        cert.public_key()
        cert.extensions  # noqa: B018 - forces parsing
        cert.subject  # noqa: B018
        cert.issuer  # noqa: B018
        cert.signature_hash_algorithm  # noqa: B018
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion) as e:
        raise AttestationMalformed(f"{what} is not a usable X.509 certificate: {e}") from None
    return cert


