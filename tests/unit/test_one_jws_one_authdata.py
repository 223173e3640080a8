"""One JWS module and one authenticator-data parser: the strictness each old copy had, kept by
all of their callers (issue 17).

Every case goes through the callers a user reaches (receipts, log anchors, MDS BLOBs, step-up
assertions, registrations, the audit's evidence groups) so that a caller that drifts from the
shared module is caught, and then through the shared modules themselves.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from fido2 import cbor as fido2_cbor

from keyadmin.attestation import AttestationMalformed, parse_registration
from keyadmin.b64 import decode_url, encode_url
from keyadmin.mds import errors as E
from keyadmin.mds.jws import parse_compact, verify_signature, x5c_der
from keyadmin.stepup import ReceiptInvalid, ReceiptSigner, generate_key, load_public_key
from keyadmin.stepup.errors import StepUpRefused
from keyadmin.stepup.receipts import TYP, action_hash, verify_receipt
from keyadmin.stepup.verify import parse_auth_data
from keyadmin.store import anchor as anchor_mod
from tests.unit.test_attestation_support import capture

ACTION = "delete tenant 42"
NOW = dt.datetime.now(dt.UTC)


# -------------------------------------------------------------------------------- JWS: receipts
@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[ReceiptSigner, Any, Path]:
    path = tmp_path_factory.mktemp("jws") / "receipt-key.pem"
    files = generate_key(path, None)
    return ReceiptSigner.load(path), load_public_key(Path(files.public)), path


def _receipt(signer: ReceiptSigner) -> str:
    return signer.issue(
        user="alice",
        action_hash=action_hash(ACTION),
        credential_id="ab" * 16,
        counter=7,
        challenge_id="cd" * 16,
        rp_id="example.com",
        issued_at=dt.datetime.now(dt.UTC),
    )


def _segment(obj: dict[str, Any]) -> str:
    return encode_url(json.dumps(obj, separators=(",", ":"), sort_keys=True).encode())


def _sign_raw(
    path: Path, header: dict[str, Any], claims: dict[str, Any], *, der: bool = False
) -> str:
    """A token signed by the real receipt key over a header of the test's choosing (what a
    buggy or hostile issuer holding the key could make)."""
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    key = serialization.load_pem_private_key(path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    signing_input = _segment(header) + "." + _segment(claims)
    sig = key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    if not der:
        r, s = decode_dss_signature(sig)
        n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
        s = min(s, n - s)
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return signing_input + "." + encode_url(sig)


def _claims(token: str) -> dict[str, Any]:
    claims = json.loads(decode_url(token.split(".")[1]))
    assert isinstance(claims, dict)
    return claims


def _header(token: str) -> dict[str, Any]:
    header = json.loads(decode_url(token.split(".")[0]))
    assert isinstance(header, dict)
    return header


def test_a_well_formed_receipt_signed_outside_the_issuer_verifies(keys) -> None:
    """The helper below makes tokens the verifier accepts when nothing is wrong."""
    signer, pub, path = keys
    token = _receipt(signer)
    again = _sign_raw(path, _header(token), _claims(token))
    assert again.split(".")[:2] == token.split(".")[:2]
    assert verify_receipt(again, pub, action=ACTION).user == "alice"


@pytest.mark.parametrize("alg", ["none", "HS256", "RS256", "ES384", "EdDSA", None, 7])
def test_a_receipt_with_another_alg_is_refused(keys, alg: object) -> None:
    signer, pub, path = keys
    token = _receipt(signer)
    forged = _sign_raw(path, {**_header(token), "alg": alg}, _claims(token))
    with pytest.raises(ReceiptInvalid, match="alg"):
        verify_receipt(forged, pub)


@pytest.mark.parametrize("part", [0, 1, 2])
def test_a_receipt_with_padded_base64url_is_refused(keys, part: int) -> None:
    """RFC 7515 base64url has no padding: a padded part is a second string for one receipt.
    The old receipt parser took padding (the signature part verified padded)."""
    signer, pub, _ = keys
    token = _receipt(signer)
    parts = token.split(".")
    assert verify_receipt(token, pub)  # unpadded: fine
    if len(parts[part]) % 4 == 0:
        pytest.skip("this part needs no padding")  # pragma: no cover - lengths are fixed
    parts[part] += "=" * (-len(parts[part]) % 4)
    with pytest.raises(ReceiptInvalid):
        verify_receipt(".".join(parts), pub)


def test_a_receipt_with_non_canonical_base64url_is_refused(keys) -> None:
    signer, pub, _ = keys
    token = _receipt(signer)
    head, body, sig = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # 64 bytes are 86 characters: the last one carries 2 bits and 4 spare ones; set a spare
    odd = sig[:-1] + alphabet[alphabet.index(sig[-1]) ^ 1]
    with pytest.raises(ReceiptInvalid, match="decode"):
        verify_receipt(".".join([head, body, odd]), pub)


def test_a_receipt_with_a_der_signature_is_refused(keys) -> None:
    """JWS ES256 is raw r || s (RFC 7518 3.4); the DER form the key library returns is not."""
    signer, pub, path = keys
    token = _receipt(signer)
    der = _sign_raw(path, _header(token), _claims(token), der=True)
    with pytest.raises(ReceiptInvalid, match="r \\|\\| s"):
        verify_receipt(der, pub)


@pytest.mark.parametrize("crit", [["exp2"], [], "kid", [7]])
def test_a_receipt_whose_header_marks_a_parameter_critical_is_refused(keys, crit: object) -> None:
    """RFC 7515 4.1.11: a crit naming a parameter the verifier does not understand must be
    refused. The old receipt parser ignored crit (a signed token with crit verified)."""
    signer, pub, path = keys
    token = _receipt(signer)
    forged = _sign_raw(path, {**_header(token), "crit": crit, "exp2": 1}, _claims(token))
    with pytest.raises(ReceiptInvalid, match="crit"):
        verify_receipt(forged, pub)


def test_an_anchor_is_checked_by_the_same_rules(keys) -> None:
    signer, pub, path = keys
    made = anchor_mod.make(signer, seq=3, head_hash="ab" * 32)
    assert anchor_mod.read(made.token, pub).seq == 3
    parts = made.token.split(".")
    with pytest.raises(anchor_mod.AnchorInvalid):
        anchor_mod.read(".".join([*parts[:2], parts[2] + "=="]), pub)
    header = {**_header(made.token), "crit": ["b64"], "b64": False}
    with pytest.raises(anchor_mod.AnchorInvalid, match="crit"):
        anchor_mod.read(_sign_raw(path, header, _claims(made.token)), pub)


def test_receipts_are_byte_identical_for_the_same_inputs(keys) -> None:
    """Header and claims are canonical JSON; only the ECDSA signature varies (randomised k)."""
    signer, pub, _ = keys
    at = dt.datetime(2026, 12, 3, 10, 0, tzinfo=dt.UTC)
    kw: dict[str, Any] = dict(
        user="alice", action_hash=action_hash(ACTION), credential_id="ab" * 16, counter=7,
        challenge_id="cd" * 16, rp_id="example.com", issued_at=at, log_head=(5, "ef" * 32),
    )  # fmt: skip
    one, two = signer.issue(**kw), signer.issue(**kw)
    assert one.split(".")[:2] == two.split(".")[:2]
    header = f'{{"alg":"ES256","kid":"{signer.kid}","typ":"{TYP}"}}'
    assert decode_url(one.split(".")[0]) == header.encode()
    iat = int(at.timestamp())
    expected = (
        f'{{"act":"{action_hash(ACTION)}","aud":"example.com","cred":"{"ab" * 16}","ctr":7,'
        f'"exp":{iat + 300},"iat":{iat},"iss":"keyadmin","jti":"{"cd" * 16}",'
        f'"log":{{"hash":"{"ef" * 32}","seq":5}},"sub":"alice"}}'
    )
    assert decode_url(one.split(".")[1]) == expected.encode()
    assert len(decode_url(one.split(".")[2])) == 64


# ------------------------------------------------------------------------------ JWS: MDS BLOBs
def _self_signed(key: Any) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "jws test signer")])
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )


def _blob(alg: str, key: Any, *, der: bool = False, header: dict[str, Any] | None = None) -> bytes:
    from keyadmin.b64 import encode_std

    cert = _self_signed(key)
    head = {
        "alg": alg,
        "typ": "JWT",
        "x5c": [encode_std(cert.public_bytes(serialization.Encoding.DER))],
    }
    head.update(header or {})
    signing_input = (_segment(head) + "." + encode_url(b'{"no":1}')).encode()
    if isinstance(key, rsa.RSAPrivateKey):
        sig = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    else:
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        sig = key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
        if not der:
            r, s = decode_dss_signature(sig)
            sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return signing_input + b"." + encode_url(sig).encode()


def _check_blob(raw: bytes) -> None:
    jws = parse_compact(raw)
    verify_signature(jws, x509.load_der_x509_certificate(x5c_der(jws)[0]).public_key())


def test_blob_helper_makes_blobs_that_verify() -> None:
    _check_blob(_blob("ES256", ec.generate_private_key(ec.SECP256R1())))
    _check_blob(_blob("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)))


def test_a_blob_signed_with_a_1024_bit_rsa_key_is_refused() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(E.UnsupportedAlgorithm, match="1024 bits; at least 2048"):
        _check_blob(_blob("RS256", key))


def test_a_blob_with_a_der_es256_signature_is_refused() -> None:
    with pytest.raises(E.SignatureInvalid, match="raw r\\|\\|s"):
        _check_blob(_blob("ES256", ec.generate_private_key(ec.SECP256R1()), der=True))


@pytest.mark.parametrize("alg", ["none", "HS256"])
def test_a_blob_with_a_symmetric_or_no_alg_is_refused(alg: str) -> None:
    with pytest.raises(E.UnsupportedAlgorithm, match=alg):
        _check_blob(_blob("ES256", ec.generate_private_key(ec.SECP256R1()), header={"alg": alg}))


def test_a_blob_with_padded_base64url_is_refused() -> None:
    raw = _blob("ES256", ec.generate_private_key(ec.SECP256R1()))
    head, body, sig = raw.split(b".")
    with pytest.raises(E.BlobMalformed, match="signature is not unpadded base64url"):
        _check_blob(b".".join([head, body, sig + b"=" * (-len(sig) % 4)]))


def test_a_blob_with_an_unknown_critical_header_is_refused_and_a_known_one_accepted() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(E.BlobMalformed, match="critical"):
        _check_blob(_blob("ES256", key, header={"crit": ["exp2"], "exp2": 1}))
    _check_blob(_blob("ES256", key, header={"crit": ["typ"], "unknown-but-not-crit": 1}))


# ---------------------------------------------------------------- authenticator data: assertions
RP_HASH = hashlib.sha256(b"example.com").digest()


def _assertion_data(flags: int, tail: bytes = b"") -> bytes:
    return RP_HASH + bytes([flags]) + (9).to_bytes(4, "big") + tail


@pytest.mark.parametrize(
    ("flags", "tail", "reason"),
    [
        (0x05, b"\x00", "bytes after the counter"),
        (0x45, b"", "AT is set"),
        (0x45, bytes(18), "AT is set"),
        (0x85, b"", "ED is set"),
        (0x85, bytes.fromhex("a0 00"), "1 bytes after its extensions"),
        (0x85, bytes.fromhex("80"), "not a CBOR map"),
        # the old step-up parser used python-fido2's lenient CBOR decoder: these passed it
        (0x85, bytes.fromhex("a2 6161 01 6161 02"), "duplicate"),
        (0x85, bytes.fromhex("a1 6161 1801"), "minimal"),
        (0x85, bytes.fromhex("a1 01 01"), "text keys"),
        (0x85, bytes.fromhex("a1 6161 f93c00"), "float|after its extensions"),
    ],
)
def test_malformed_assertion_authenticator_data_is_refused(
    flags: int, tail: bytes, reason: str
) -> None:
    with pytest.raises(StepUpRefused, match=reason):
        parse_auth_data(_assertion_data(flags, tail))


def test_short_assertion_authenticator_data_is_refused() -> None:
    for n in (0, 32, 36):
        with pytest.raises(StepUpRefused, match=f"{n} bytes"):
            parse_auth_data(_assertion_data(0x05)[:n])


def test_well_formed_assertion_authenticator_data_parses() -> None:
    auth = parse_auth_data(_assertion_data(0x85, bytes.fromhex("a16b6372656450726f7465637402")))
    assert (auth.rp_id_hash, auth.flags, auth.counter) == (RP_HASH, 0x85, 9)
    assert parse_auth_data(_assertion_data(0x05)).counter == 9


# ------------------------------------------------------------- authenticator data: registrations
def _yk5_with(change: Any) -> bytes:
    cap = capture("fidomds-yubikey_5_nfc")
    obj = fido2_cbor.decode(cap.attestation_object)
    obj["authData"] = change(bytes(obj["authData"]))
    return bytes(fido2_cbor.encode(obj))


def _flags(data: bytes, set_: int = 0, clear: int = 0) -> bytes:
    return data[:32] + bytes([(data[32] | set_) & ~clear]) + data[33:]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda a: a + b"\x00", "unexpected bytes after the credential public key"),
        (lambda a: _flags(a, clear=0x40), "AT flag clear"),
        (lambda a: _flags(a, clear=0x40)[:37], "AT flag clear"),
        (lambda a: a[:37], "truncated before the AAGUID"),
        (lambda a: a[:60], "credential ID length"),
        (lambda a: _flags(a, set_=0x80), "extensions are not valid"),
        (lambda a: _flags(a, set_=0x80) + bytes.fromhex("a1 01 01"), "text keys"),
        (lambda a: _flags(a, set_=0x80) + bytes.fromhex("a0 00"), "after (its|the) extensions"),
    ],
)
def test_malformed_registration_authenticator_data_is_refused(change: Any, reason: str) -> None:
    cap = capture("fidomds-yubikey_5_nfc")
    parse_registration(cap.attestation_object, cap.client_data_json)  # the original parses
    with pytest.raises(AttestationMalformed, match=reason):
        parse_registration(_yk5_with(change), cap.client_data_json)


# --------------------------------------------------------------- authenticator data: the audit
@pytest.mark.parametrize(
    "change",
    [
        lambda a: a + b"\x00",  # a trailing byte after the key, ED clear
        lambda a: a + bytes.fromhex("a0"),  # an extensions map without the ED flag
    ],
)
def test_the_audit_never_groups_malformed_authenticator_data_with_a_good_registration(
    change: Any,
) -> None:
    """A registration the strict parser refuses must not share an evidence group with one it
    accepts (the group's representative would answer for it). The old byte-offset parse in
    flows/audit.py decoded the key with a decoder that ignores trailing bytes: both got the
    same group key."""
    from keyadmin.flows.audit import _decoders, group_key

    cap = capture("fidomds-yubikey_5_nfc")
    decode, first = _decoders()
    good = group_key(cap.attestation_object, cap.client_data_json, decode, first)
    assert good is not None
    bad = group_key(_yk5_with(change), cap.client_data_json, decode, first)
    assert bad != good


def _cose_alg_non_minimal(a: bytes) -> bytes:
    """The COSE key's ``3: -7`` (alg ES256) with -7 in a two-byte, non-minimal encoding."""
    start = 55 + int.from_bytes(a[53:55], "big")
    key = a[start:]
    assert key.count(b"\x03\x26") == 1
    return a[:start] + key.replace(b"\x03\x26", b"\x03\x38\x06")


def test_the_audit_never_groups_a_non_minimal_public_key_with_a_good_registration() -> None:
    """The old grouping decoded the key with cbor2, which reads -7 in any width: the
    non-minimal key (refused by the strict parser) shared the good one's group."""
    from keyadmin.flows.audit import _decoders, group_key

    cap = capture("fidomds-yubikey_5_nfc")
    with pytest.raises(AttestationMalformed, match="minimal"):
        parse_registration(_yk5_with(_cose_alg_non_minimal), cap.client_data_json)
    decode, first = _decoders()
    good = group_key(cap.attestation_object, cap.client_data_json, decode, first)
    bad = group_key(_yk5_with(_cose_alg_non_minimal), cap.client_data_json, decode, first)
    assert good is not None and bad != good


# ------------------------------------------------- the audit's fast CBOR item = the strict one
def _strict(data: bytes) -> tuple[object, int] | str:
    from keyadmin.attestation import cbor

    try:
        return cbor.decode_from(data, 0)
    except cbor.CborError:
        return "refused"


def _fast(data: bytes) -> tuple[object, int] | str:
    from keyadmin.attestation.authdata import canonical_item

    try:
        return canonical_item(data)
    except ValueError:  # CborError, and cbor2's decode errors
        return "refused"


FAST_CASES = {
    "cose key": "a501020326200121582000000000000000000000000000000000000000000000000000000000"
    "00000000002258200000000000000000000000000000000000000000000000000000000000000000",
    "extensions": "a26b6372656450726f746563740260686d61632d736563726574f5",
    "item then trailing bytes": "a10102ff00",
    "nested": "a1616181a16162f6",
    "duplicate key": "a2616101616102",
    "non-minimal int": "a161611801",
    "non-minimal length": "a1617858016161",
    "non-minimal map length": "b8016161f5",
    "indefinite map": "bf616101ff",
    "indefinite bytes": "5f4101ff",
    "half float": "a16161f93c00",
    "double float": "fb3ff0000000000000",
    "bignum tag": "c249010000000000000000",
    "small bignum tag": "c24101",
    "tag 24": "d81841a0",
    "self-describe tag": "d9d9f7a0",
    "undefined": "f7",
    "simple 16": "f0",
    "bytes key": "a14101f5",
    "bool key": "a1f4f4",
    "bad utf-8": "61ff",
    "truncated": "a2616101",
    "empty": "",
    "too deep": "81" * 17 + "01",
    "deep but fine": "81" * 16 + "01",
    "max uint64": "1bffffffffffffffff",
    "min nint64": "3bffffffffffffffff",
}


@pytest.mark.parametrize("name", sorted(FAST_CASES))
def test_the_audits_fast_cbor_item_decoder_agrees_with_the_strict_one(name: str) -> None:
    data = bytes.fromhex(FAST_CASES[name])
    assert _fast(data) == _strict(data)


def test_the_fast_cbor_item_decoder_agrees_with_the_strict_one_on_random_bytes() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=3000, deadline=None)
    @given(st.binary(max_size=40))
    def check(data: bytes) -> None:
        assert _fast(data) == _strict(data)

    check()


def test_the_fast_cbor_item_decoder_agrees_with_the_strict_one_on_mutated_items() -> None:
    """Well-formed items (what keys send), then the same with one byte changed or one
    appended: the two decoders accept and refuse the same bytes."""
    import cbor2
    from hypothesis import given, settings
    from hypothesis import strategies as st

    scalars = st.one_of(
        st.integers(min_value=-(2**64), max_value=2**64 - 1),
        st.binary(max_size=8),
        st.text(max_size=4),
        st.booleans(),
        st.none(),
    )
    items = st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(
                st.one_of(st.integers(-30, 30), st.text(max_size=3)), inner, max_size=3
            ),
        ),
        max_leaves=8,
    )

    @settings(max_examples=2000, deadline=None)
    @given(items, st.integers(min_value=0, max_value=63), st.integers(0, 255), st.booleans())
    def check(value: object, where: int, byte: int, append: bool) -> None:
        data = bytearray(cbor2.dumps(value))
        assert _fast(bytes(data)) == _strict(bytes(data))
        if append:
            data.append(byte)
        else:
            data[where % len(data)] = byte
        assert _fast(bytes(data)) == _strict(bytes(data))

    check()


def test_the_es256_key_read_by_its_bytes_is_what_the_strict_decoder_reads() -> None:
    """The parser reads the one common encoding of an ES256 P-256 key without a CBOR
    decoder; for any x and y it must give what the strict decoder gives, and anything else
    (another order, a shorter x, a trailing item) must still go through a decoder."""
    import os

    from keyadmin.attestation import authdata, cbor

    head = RP_HASH + bytes([0x41]) + (1).to_bytes(4, "big") + bytes(16) + (4).to_bytes(2, "big")
    for _ in range(50):
        x, y = os.urandom(32), os.urandom(32)
        key = bytes.fromhex("a5 01 02 03 26 20 01 21 58 20") + x + bytes.fromhex("22 58 20") + y
        assert cbor.decode(key) == {1: 2, 3: -7, -1: 1, -2: x, -3: y}
        for decoder in (authdata.canonical_item, authdata._strict_item):
            parsed = authdata.parse(head + b"cred" + key, attested=True, decode_item=decoder)
            assert parsed.attested is not None
            assert parsed.attested.public_key == cbor.decode(key)
            assert parsed.attested.public_key_cbor == key
            with pytest.raises(AttestationMalformed, match="1 unexpected bytes after the cred"):
                authdata.parse(head + b"cred" + key + b"\x00", attested=True, decode_item=decoder)
            ed = bytes([0xC1]) + head[33:]
            with_ext = authdata.parse(
                head[:32] + ed + b"cred" + key + bytes.fromhex("a1 6161 01"),
                attested=True,
                decode_item=decoder,
            )
            assert with_ext.extensions == {"a": 1}
    # the same map in another order is not the template: decoded (and accepted) as CBOR
    other = bytes.fromhex("a5 03 26 01 02 20 01 21 58 20") + x + bytes.fromhex("22 58 20") + y
    parsed = authdata.parse(head + b"cred" + other, attested=True)
    assert parsed.attested is not None and parsed.attested.public_key == cbor.decode(other)
    # a 31-byte y: not the template, and the strict decoder finds the key cut short
    short = bytes.fromhex("a5 01 02 03 26 20 01 21 58 20") + x + bytes.fromhex("22 58 20") + y[:31]
    with pytest.raises(AttestationMalformed, match="not valid CBOR"):
        authdata.parse(head + b"cred" + short, attested=True)


def test_evidence_whose_group_key_cannot_be_hashed_is_judged_on_its_own() -> None:
    """A statement holding a map where a scalar belongs makes an unhashable group key: each
    such registration is its own group (never merged, never a crash), beside a good one."""
    import cbor2

    from keyadmin.flows.audit import _decoders, _group_rows

    cap = capture("fidomds-yubikey_5_nfc")
    obj = cbor2.loads(cap.attestation_object)
    odd = cbor2.dumps({**obj, "attStmt": {**obj["attStmt"], "ecdaaKeyId": {"a": 1}}})
    decode, first = _decoders()
    groups: dict[Any, Any] = {}
    rows = [
        (1, cap.attestation_object, cap.client_data_json),
        (2, odd, cap.client_data_json),
        (3, odd, cap.client_data_json),
        (4, cap.attestation_object, cap.client_data_json),
    ]
    _group_rows(iter(rows), False, groups, decode, first)
    members = sorted(sorted(g.members) for g in groups.values())
    assert members == [[1, 4], [2], [3]]
    assert ("single", 2) in groups and ("single", 3) in groups
