"""Malformed registrations are refused with a parse reason, never a traceback.

Each case starts from a real registration and changes one thing about its encoding.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fido2 import cbor

from keyadmin.attestation import (
    AttestationInvalid,
    AttestationMalformed,
    AttestationUnsupported,
    parse_registration,
    verify_attestation,
)
from tests.unit.test_attestation_support import capture, utc, yubico_u2f_root

AT = utc(2030, 1, 1)


def _yk5() -> tuple[dict[str, Any], bytes]:
    cap = capture("fidomds-yubikey_5_nfc")
    obj = cbor.decode(cap.attestation_object)
    assert isinstance(obj, dict)
    return obj, cap.client_data_json


def _verify(att_obj: bytes, client_data_json: bytes) -> None:
    parsed = parse_registration(att_obj, client_data_json)
    verify_attestation(parsed, trust_anchors=[yubico_u2f_root()], at=AT)


def _edit(change: Callable[[dict[str, Any]], None]) -> bytes:
    obj, _ = _yk5()
    change(obj)
    return cbor.encode(obj)


def _auth_data(change: Callable[[bytearray], bytes]) -> bytes:
    obj, _ = _yk5()
    obj["authData"] = change(bytearray(obj["authData"]))
    return cbor.encode(obj)


ATT_OBJ_CASES: list[tuple[str, Callable[[], bytes], str]] = [
    ("empty", lambda: b"", "not valid CBOR"),
    ("not cbor", lambda: b"\xff\x00", "not valid CBOR"),
    ("array", lambda: cbor.encode([1, 2, 3]), "not a CBOR map"),
    (
        "trailing byte",
        lambda: capture("fidomds-yubikey_5_nfc").attestation_object + b"\x00",
        "not valid CBOR",
    ),
    ("missing fmt", lambda: _edit(lambda o: o.pop("fmt")), "exactly fmt, attStmt and authData"),
    ("extra key", lambda: _edit(lambda o: o.update(extra=1)), "exactly fmt, attStmt and authData"),
    ("fmt bytes", lambda: _edit(lambda o: o.update(fmt=b"packed")), "fmt is not a text string"),
    ("attStmt list", lambda: _edit(lambda o: o.update(attStmt=[])), "attStmt is not a map"),
    ("authData text", lambda: _edit(lambda o: o.update(authData="x")), "authData is not a byte"),
    ("authData short", lambda: _auth_data(lambda a: bytes(a[:36])), "shorter than 37"),
    (
        "AT clear",
        lambda: _auth_data(lambda a: bytes(a[:32] + bytes([a[32] & ~0x40]) + a[33:])),
        "AT flag clear",
    ),
    ("truncated key", lambda: _auth_data(lambda a: bytes(a[:-5])), "not valid CBOR"),
    (
        "authData trailing",
        lambda: _auth_data(lambda a: bytes(a + b"\x00")),
        "unexpected bytes after the credential public key",
    ),
    (
        "ED set, no extensions",
        lambda: _auth_data(lambda a: bytes(a[:32] + bytes([a[32] | 0x80]) + a[33:])),
        "extensions are not valid",
    ),
    (
        "x5c garbage",
        lambda: _edit(lambda o: o["attStmt"].update(x5c=[b"\x30\x03\x02\x01\x01"])),
        "x5c[0] is not a usable X.509 certificate",
    ),
    ("x5c empty", lambda: _edit(lambda o: o["attStmt"].update(x5c=[])), "x5c is not a non-empty"),
    ("sig missing", lambda: _edit(lambda o: o["attStmt"].pop("sig")), "packed attStmt lacks sig"),
    (
        "alg text",
        lambda: _edit(lambda o: o["attStmt"].update(alg="ES256")),
        "alg is not an integer",
    ),
    (
        "unknown stmt key",
        lambda: _edit(lambda o: o["attStmt"].update(foo=1)),
        "unexpected keys foo",
    ),
    ("none with statement", lambda: _edit(lambda o: o.update(fmt="none")), "must be an empty map"),
]


@pytest.mark.parametrize("name,make,reason", ATT_OBJ_CASES, ids=[c[0] for c in ATT_OBJ_CASES])
def test_malformed_attestation_object(name: str, make: Callable[[], bytes], reason: str) -> None:
    _, client_data_json = _yk5()
    with pytest.raises(AttestationMalformed) as info:
        _verify(make(), client_data_json)
    assert reason in info.value.reason
    assert info.value.to_dict()["error"] == "AttestationMalformed"


CLIENT_DATA_CASES: list[tuple[str, bytes, str]] = [
    ("not json", b"{", "not JSON"),
    ("not utf-8", b"\xff\xfe", "not JSON"),
    ("array", b"[]", "not a JSON object"),
    (
        "get ceremony",
        json.dumps({"type": "webauthn.get", "challenge": "AA", "origin": "o"}).encode(),
        "not 'webauthn.create'",
    ),
    (
        "no challenge",
        json.dumps({"type": "webauthn.create", "origin": "o"}).encode(),
        "lacks a string challenge",
    ),
    (
        "bad challenge",
        json.dumps({"type": "webauthn.create", "challenge": "a b", "origin": "o"}).encode(),
        "not base64url",
    ),
]


@pytest.mark.parametrize(
    "name,client_data,reason", CLIENT_DATA_CASES, ids=[c[0] for c in CLIENT_DATA_CASES]
)
def test_malformed_client_data(name: str, client_data: bytes, reason: str) -> None:
    cap = capture("fidomds-yubikey_5_nfc")
    with pytest.raises(AttestationMalformed) as info:
        parse_registration(cap.attestation_object, client_data)
    assert reason in info.value.reason


def test_other_client_data_breaks_the_signature() -> None:
    cap = capture("fidomds-yubikey_5_nfc")
    other = capture("jws-realexamples-YubiKey5Nfc").client_data_json
    with pytest.raises(AttestationInvalid, match="signature does not verify"):
        _verify(cap.attestation_object, other)


def test_unknown_format_is_unsupported() -> None:
    _, client_data_json = _yk5()
    with pytest.raises(AttestationUnsupported, match="'fido-next'"):
        _verify(_edit(lambda o: o.update(fmt="fido-next")), client_data_json)


def test_ecdaa_is_unsupported() -> None:
    _, client_data_json = _yk5()
    with pytest.raises(AttestationUnsupported, match="ECDAA"):
        _verify(_edit(lambda o: o["attStmt"].update(ecdaaKeyId=b"k")), client_data_json)


def test_packed_self_attestation_with_a_foreign_signature_is_invalid() -> None:
    # Dropping x5c turns the statement into self attestation: the YubiKey's attestation
    # signature does not verify under the credential key.
    _, client_data_json = _yk5()
    with pytest.raises(AttestationInvalid, match="self-attestation signature"):
        _verify(_edit(lambda o: o["attStmt"].pop("x5c")), client_data_json)
