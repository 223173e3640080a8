"""The strictness of keyadmin's own CBOR and DER readers, pinned.

Each refusal has a twin that differs only in the property under test and is accepted, so a test
fails both when the check goes (the refused bytes decode) and when it grows too wide (the twin is
refused). The same refusals are checked through ``parse_registration`` on a real registration
(YubiKey 5 NFC, ../shared/data), re-encoded with one strictness violation each.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fido2 import cbor as fido2_cbor

from keyadmin.attestation import AttestationMalformed, parse_registration
from keyadmin.attestation.aaguid import OID_FIDO_GEN_CE_AAGUID, read_certificate_aaguid
from keyadmin.attestation.cbor import CborError, decode
from keyadmin.attestation.der import DerError, as_int, parse_one
from tests.unit.test_attestation_support import capture, utc

H = bytes.fromhex

# (refused bytes, the reason's words, an accepted twin, the twin's value)
CBOR_CASES: dict[str, tuple[bytes, str, bytes, Any]] = {
    # duplicate map keys
    "dup-int-key": (H("a2 01 01 01 02"), "duplicate", H("a2 01 01 02 02"), {1: 1, 2: 2}),
    "dup-text-key": (
        H("a2 6161 01 6161 02"),
        "duplicate",
        H("a2 6161 01 6162 02"),
        {"a": 1, "b": 2},
    ),
    "dup-nested": (
        H("a1 01 a2 03 26 03 27"),
        "duplicate",
        H("a1 01 a2 03 26 04 27"),
        {1: {3: -7, 4: -8}},
    ),
    # non-minimal integers (each width, both signs)
    "int-23-in-1": (H("18 17"), "minimal", H("17"), 23),
    "int-24-in-2": (H("19 0018"), "minimal", H("18 18"), 24),
    "int-255-in-2": (H("19 00ff"), "minimal", H("18 ff"), 255),
    "int-65535-in-4": (H("1a 0000ffff"), "minimal", H("19 ffff"), 65535),
    "int-2^32-1-in-8": (H("1b 00000000ffffffff"), "minimal", H("1a ffffffff"), 2**32 - 1),
    "neg-1-in-1": (H("38 00"), "minimal", H("20"), -1),
    "neg-7-in-2": (H("39 0006"), "minimal", H("26"), -7),
    # non-minimal lengths of strings, arrays and maps
    "bytes-len-1-in-1": (H("58 01 aa"), "minimal", H("41 aa"), b"\xaa"),
    "text-len-3-in-2": (H("79 0003") + b"abc", "minimal", H("63") + b"abc", "abc"),
    "array-len-1-in-1": (H("98 01 01"), "minimal", H("81 01"), [1]),
    "map-len-1-in-4": (H("ba 00000001 01 01"), "minimal", H("a1 01 01"), {1: 1}),
    # floats and simple values other than false/true/null
    "half-float": (H("f9 3c00"), "float", H("f5"), True),
    "single-float": (H("fa 3f800000"), "float", H("f4"), False),
    "double-float": (H("fb 3ff0000000000000"), "float", H("f6"), None),
    "undefined": (H("f7"), "simple", H("f6"), None),
    "simple-32": (H("f8 20"), "simple", H("f5"), True),
    # tags
    "tag-0": (H("c0 60"), "tag", H("60"), ""),
    "tag-24-bytes": (H("d8 18 41 00"), "tag", H("41 00"), b"\x00"),
    "tag-bignum": (H("c2 41 01"), "tag", H("01"), 1),
    # indefinite lengths (and the reserved additional-information values)
    "indef-bytes": (H("5f 41 00 ff"), "indefinite", H("41 00"), b"\x00"),
    "indef-text": (H("7f 61 61 ff"), "indefinite", H("61 61"), "a"),
    "indef-array": (H("9f 01 ff"), "indefinite", H("81 01"), [1]),
    "indef-map": (H("bf 01 01 ff"), "indefinite", H("a1 01 01"), {1: 1}),
    "reserved-28": (H("1c"), "reserved", H("17"), 23),
}


@pytest.mark.parametrize("name", list(CBOR_CASES))
def test_cbor_refuses_what_webauthn_never_sends(name: str) -> None:
    refused, words, twin, value = CBOR_CASES[name]
    with pytest.raises(CborError) as info:
        decode(refused)
    assert words in str(info.value)
    assert decode(twin) == value


def test_cbor_refuses_trailing_and_truncated_data() -> None:
    with pytest.raises(CborError, match="trailing"):
        decode(H("01 01"))
    with pytest.raises(CborError, match="end"):
        decode(H("42 00"))
    with pytest.raises(CborError, match="end"):
        decode(H("19 01"))


# -- the same refusals through parse_registration on a real registration ------------------------


def _real() -> tuple[dict[str, Any], bytes]:
    cap = capture("fidomds-yubikey_5_nfc")
    obj = fido2_cbor.decode(cap.attestation_object)
    assert isinstance(obj, dict)
    return obj, cap.client_data_json


def _with_auth_data(obj: dict[str, Any], auth_data: bytes) -> bytes:
    return bytes(fido2_cbor.encode({**obj, "authData": auth_data}))


def _cose_key_swap(obj: dict[str, Any], old: bytes, new: bytes) -> bytes:
    """authData with ``old`` replaced by ``new`` inside the credential public key (once)."""
    auth_data = obj["authData"]
    key_start = 37 + 16 + 2 + int.from_bytes(auth_data[53:55], "big")
    head, key = auth_data[:key_start], auth_data[key_start:]
    assert key.count(old) >= 1
    return _with_auth_data(obj, head + key.replace(old, new, 1))


def _mutations() -> dict[str, tuple[bytes, str]]:
    obj, _ = _real()
    original = bytes(fido2_cbor.encode(obj))
    fmt_key = H("63") + b"fmt"
    dup = (
        original.replace(H("a3"), H("a4"), 1) + fido2_cbor.encode("fmt") + fido2_cbor.encode("none")
    )
    return {
        "duplicate fmt key": (dup, "duplicate"),
        "fmt key length in 1 byte": (original.replace(fmt_key, H("78 03") + b"fmt", 1), "minimal"),
        "indefinite outer map": (H("bf") + original[1:] + H("ff"), "indefinite"),
        "authData as tag 24": (
            original.replace(H("68") + b"authData", H("68") + b"authData" + H("d8 18"), 1),
            "tag",
        ),
        # in the credential public key: the COSE alg (3: -7) non-minimal, then a float
        "COSE alg -7 in 1 byte": (_cose_key_swap(obj, H("03 26"), H("03 38 06")), "minimal"),
        "COSE alg as a float": (_cose_key_swap(obj, H("03 26"), H("03 f9 c700")), "float"),
        "COSE kty twice": (_cose_key_swap(obj, H("a5 01 02"), H("a6 01 02 01 02")), "duplicate"),
    }


def test_the_real_registration_parses_as_it_is() -> None:
    obj, cdj = _real()
    parsed = parse_registration(bytes(fido2_cbor.encode(obj)), cdj)
    assert parsed.fmt == "packed"


@pytest.mark.parametrize("name", list(_mutations()))
def test_a_real_registration_with_one_violation_is_malformed(name: str) -> None:
    _, cdj = _real()
    mutated, words = _mutations()[name]
    with pytest.raises(AttestationMalformed) as info:
        parse_registration(mutated, cdj)
    assert words in info.value.reason


# -- DER -------------------------------------------------------------------------------------------

DER_CASES: dict[str, tuple[bytes, str, bytes]] = {
    "short length in long form": (H("04 81 05") + bytes(5), "non-minimal", H("04 05") + bytes(5)),
    "long length with a leading zero": (
        H("04 82 0080") + bytes(128),
        "non-minimal",
        H("04 81 80") + bytes(128),
    ),
    "256 in three length bytes": (
        H("04 83 000100") + bytes(256),
        "non-minimal",
        H("04 82 0100") + bytes(256),
    ),
    "indefinite length": (H("30 80 05 00 00 00"), "indefinite", H("30 02 05 00")),
    "high tag form for tag 5": (H("1f 05 00"), "high tag", H("05 00")),
    "high tag number with a leading 0x80": (H("9f 80 20 00"), "non-minimal", H("9f 20 00")),
    "trailing byte": (H("05 00 00"), "trailing", H("05 00")),
}


@pytest.mark.parametrize("name", list(DER_CASES))
def test_der_refuses_non_minimal_and_indefinite_forms(name: str) -> None:
    refused, words, twin = DER_CASES[name]
    with pytest.raises(DerError) as info:
        parse_one(refused)
    assert words in str(info.value)
    accepted = parse_one(twin)
    assert twin.endswith(accepted.value)


@pytest.mark.parametrize(
    "refused,twin,value",
    [
        (H("02 02 0001"), H("02 01 01"), 1),
        (H("02 02 007f"), H("02 01 7f"), 127),
        (H("02 02 ff80"), H("02 01 80"), -128),
        (H("02 03 ffff7f"), H("02 02 ff7f"), -129),
    ],
    ids=["1", "127", "-128", "-129"],
)
def test_der_integers_are_minimal(refused: bytes, twin: bytes, value: int) -> None:
    with pytest.raises(DerError, match="non-minimal INTEGER"):
        as_int(parse_one(refused), "n")
    assert as_int(parse_one(twin), "n") == value
    # the two's-complement sign byte that IS needed stays accepted
    assert as_int(parse_one(H("02 02 0080")), "n") == 128


def _cert_with_aaguid_extension(value: bytes) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "strict DER test")])
    now = utc(2026, 1, 1)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.UnrecognizedExtension(OID_FIDO_GEN_CE_AAGUID, value), critical=False)
        .sign(key, hashes.SHA256())
    )


def test_a_certificate_aaguid_in_non_minimal_der_is_malformed() -> None:
    aaguid = hashlib.sha256(b"aaguid").digest()[:16]
    good = _cert_with_aaguid_extension(H("04 10") + aaguid)
    assert read_certificate_aaguid(good) is not None
    assert read_certificate_aaguid(good).bytes == aaguid  # type: ignore[union-attr]
    for bad in (H("04 81 10") + aaguid, H("04 82 0010") + aaguid):
        with pytest.raises(AttestationMalformed, match="non-minimal"):
            read_certificate_aaguid(_cert_with_aaguid_extension(bad))
