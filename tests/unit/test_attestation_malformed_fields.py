"""Fields of the wrong type or size in an otherwise real attestation or BLOB header: a declared
error each, never a TypeError/OverflowError/RecursionError (found by review)."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from keyadmin.attestation import AttestationError, parse_registration
from keyadmin.attestation.formats import android_safetynet as sn
from keyadmin.b64 import decode_url, encode_url
from keyadmin.mds import errors as E
from keyadmin.mds.jws import parse_compact
from tests.unit.test_attestation_support import capture


def _nexus5() -> tuple[object, bytes]:
    cap = capture("fidomds-nexus_5")
    parsed = parse_registration(cap.attestation_object, cap.client_data_json)
    return parsed, parsed.att_stmt["response"]


def _with_response(parsed: object, response: bytes) -> object:
    return replace(parsed, att_stmt={**parsed.att_stmt, "response": response})  # type: ignore[type-var]


@pytest.mark.parametrize("alg", [["RS256"], {"a": 1}, 256, None])
def test_safetynet_header_alg_of_another_type_is_refused(alg: object) -> None:
    parsed, response = _nexus5()
    head, body, sig = response.split(b".")
    header = json.loads(decode_url(head.decode()))
    head = encode_url(json.dumps({**header, "alg": alg}).encode()).encode()
    forged = b".".join([head, body, sig])
    with pytest.raises(AttestationError, match="alg"):
        sn.verify_android_safetynet(_with_response(parsed, forged), datetime.now(UTC))


@pytest.mark.parametrize("ts", [10**30, -(10**30)])
def test_safetynet_timestamp_out_of_range_is_refused(ts: int) -> None:
    parsed, _ = _nexus5()
    nonce = base64.b64encode(hashlib.sha256(sn.signed_data(parsed)).digest()).decode()
    payload = {"nonce": nonce, "ctsProfileMatch": True, "timestampMs": ts}
    with pytest.raises(AttestationError, match="timestampMs"):
        sn.check_payload(payload, parsed, datetime.now(UTC))


def _compact(header: object) -> bytes:
    parts = (json.dumps(header).encode(), b"{}", b"sig")
    return ".".join(encode_url(p) for p in parts).encode()


def test_blob_header_crit_with_an_object_is_refused() -> None:
    with pytest.raises(E.BlobMalformed, match="crit"):
        parse_compact(_compact({"alg": "ES256", "crit": [{"x": 1}]}))


def test_blob_header_nested_too_deeply_is_refused() -> None:
    header = b'{"alg":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    raw = ".".join([encode_url(header), encode_url(b"{}"), encode_url(b"sig")]).encode()
    with pytest.raises(E.BlobMalformed, match="nests too deeply"):
        parse_compact(raw)
