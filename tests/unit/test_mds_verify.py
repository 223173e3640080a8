"""BLOB verification on the real BLOBs in ../shared/data/mds, and on tampered copies of them."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from keyadmin.errors import ExitCode
from keyadmin.mds import errors as E
from keyadmin.mds.chain import check_signer_name, load_x5c
from keyadmin.mds.jws import parse_compact
from keyadmin.mds.roots import R3_SHA256, R46_SHA256, load_anchor_file, pinned_anchors, trust_set
from keyadmin.mds.verify import verify_blob
from tests.unit.test_mds_support import (
    AT_NO9,
    AT_NO23,
    AT_SPEC,
    CONF42,
    FAKE_ROOT,
    PROD9,
    PROD23,
    R3_PEM,
    R46_PEM,
    SPEC,
    SPEC_ROOT,
    TODAY,
    b64u,
    blob,
    split,
)


def verify(raw: bytes, at, *extra: Path, **kw):
    anchors = trust_set([load_anchor_file(p) for p in extra])
    kw.setdefault("allow_missing_crl", True)
    return verify_blob(raw, anchors=anchors, at=at, **kw)


# -- pinned roots --------------------------------------------------------------------------------


def test_pinned_roots_match_the_shared_pem_files_and_published_fingerprints() -> None:
    pins = {a.name: a.sha256 for a in pinned_anchors()}
    assert pins == {"GlobalSign Root R46": R46_SHA256, "GlobalSign Root CA - R3": R3_SHA256}
    assert load_anchor_file(R46_PEM).sha256 == R46_SHA256
    assert load_anchor_file(R3_PEM).sha256 == R3_SHA256
    assert R46_SHA256 == "4FA3126D8D3A11D1C4855A4F807CBAD6CF919D3A5A88B03BEA2C6372D93C40C9".lower()


# -- the production BLOBs (RS256, GlobalSign Root CA - R3) ----------------------------------------


@pytest.mark.parametrize(
    ("path", "no", "expires"),
    [(PROD9, 9, "2022-05-14T19:57:24+00:00"), (PROD23, 23, "2023-06-13T21:26:44+00:00")],
)
def test_production_blob_is_refused_today_because_its_signer_expired(
    path: Path, no: int, expires: str
) -> None:
    with pytest.raises(E.CertificateNotValidAtTime) as ei:
        verify(blob(path), TODAY)
    err = ei.value
    assert err.exit_code == ExitCode.METADATA
    assert err.data["role"] == "signer" and err.data["state"] == "expired"
    assert err.data["not_after"] == expires
    assert "mds.fidoalliance.org" in err.data["subject"]
    assert "--at" in (err.hint or "")


@pytest.mark.parametrize(
    ("path", "at", "no", "entries"), [(PROD9, AT_NO9, 9, 98), (PROD23, AT_NO23, 23, 148)]
)
def test_production_blob_is_accepted_at_a_moment_inside_its_validity(
    path: Path, at, no: int, entries: int
) -> None:
    v = verify(blob(path), at)
    assert (v.no, v.alg, len(v.payload["entries"])) == (no, "RS256", entries)
    assert v.chain.anchor.name == "GlobalSign Root CA - R3" and v.chain.anchor.pinned
    assert [c["subject"].split(",")[0] for c in v.chain.describe()] == [
        "CN=mds.fidoalliance.org",
        "CN=GlobalSign Extended Validation CA - SHA256 - G3",
        "CN=GlobalSign",
    ]
    assert [c.status for c in v.crl_checks] == ["missing-allowed", "missing-allowed"]
    assert v.legal_header.startswith("Retrieval and use of this BLOB")


def test_production_blob_without_crl_is_refused_and_names_the_distribution_point() -> None:
    with pytest.raises(E.CrlMissing) as ei:
        verify(blob(PROD23), AT_NO23, allow_missing_crl=False)
    assert ei.value.data["distribution_points"] == [
        "http://crl.globalsign.com/gs/gsextendvalsha2g3r3.crl"
    ]
    assert "--allow-missing-crl" in (ei.value.hint or "")


def test_production_blob_before_its_signer_was_issued_is_not_yet_valid() -> None:
    import datetime as dt

    with pytest.raises(E.CertificateNotValidAtTime) as ei:
        verify(blob(PROD23), dt.datetime(2022, 1, 1, tzinfo=dt.UTC))
    assert ei.value.data["state"] == "not yet valid"


# -- ES256 BLOBs under their own roots ------------------------------------------------------------


def test_conformance_es256_blob_verifies_under_its_fake_root_today() -> None:
    v = verify(blob(CONF42), TODAY, FAKE_ROOT)
    assert (v.no, v.alg) == (42, "ES256")
    assert not v.chain.anchor.pinned and v.chain.anchor.origin == str(FAKE_ROOT)
    assert len(v.payload["entries"]) == 200


def test_spec_example_es256_blob_verifies_under_its_example_root() -> None:
    v = verify(blob(SPEC), AT_SPEC, SPEC_ROOT)
    assert (v.no, v.alg, v.next_update) == (15, "ES256", "2020-03-30")
    assert len(parse_compact(blob(SPEC)).signature) == 64  # raw r||s, not DER


def test_es256_blob_is_untrusted_without_its_root() -> None:
    with pytest.raises(E.ChainUntrusted) as ei:
        verify(blob(SPEC), AT_SPEC)
    assert "EXAMPLE MDS3 TEST ROOT" in ei.value.message
    assert set(ei.value.data["trusted"]) == {R46_SHA256, R3_SHA256}


def test_wrong_operator_root_is_refused() -> None:
    with pytest.raises(E.ChainUntrusted):
        verify(blob(CONF42), TODAY, SPEC_ROOT)


def test_a_non_fido_signer_under_a_pinned_root_is_refused_by_name() -> None:
    # The spec example signer has no subjectAltName: under a public root it may not sign.
    header, *_ = split(blob(SPEC))
    signer = load_x5c([base64.b64decode(header["x5c"][0])])[0]
    with pytest.raises(E.SignerNameMismatch):
        check_signer_name(signer)
    prod_header, *_ = split(blob(PROD23))
    check_signer_name(load_x5c([base64.b64decode(prod_header["x5c"][0])])[0])


# -- tampered copies: each refused with a precise reason -------------------------------------------


def _with_header(raw: bytes, **changes) -> bytes:
    header, _h, p, s = split(raw)
    header.update(changes)
    return b64u(json.dumps(header).encode()) + b"." + p + b"." + s


def test_tampered_payload_byte_breaks_the_signature() -> None:
    header, h, p, s = split(blob(PROD23))
    payload = bytearray(base64.urlsafe_b64decode(p + b"=" * (-len(p) % 4)))
    i = payload.index(b'"no":23') + 5
    payload[i : i + 2] = b"99"  # claim to be BLOB no. 99
    with pytest.raises(E.SignatureInvalid) as ei:
        verify(h + b"." + b64u(bytes(payload)) + b"." + s, AT_NO23)
    assert ei.value.data["alg"] == "RS256"


@pytest.mark.parametrize("path,at,extra", [(PROD23, AT_NO23, None), (SPEC, AT_SPEC, SPEC_ROOT)])
def test_tampered_signature_is_refused(path: Path, at, extra) -> None:
    _header, h, p, s = split(blob(path))
    sig = bytearray(base64.urlsafe_b64decode(s + b"=" * (-len(s) % 4)))
    sig[10] ^= 0x01
    with pytest.raises(E.SignatureInvalid):
        verify(h + b"." + p + b"." + b64u(bytes(sig)), at, *([extra] if extra else []))


@pytest.mark.parametrize(
    ("alg", "error"),
    [
        ("none", E.UnsupportedAlgorithm),
        ("HS256", E.UnsupportedAlgorithm),
        ("ES256", E.UnsupportedAlgorithm),  # RSA signer: the key does not fit the algorithm
        ("RS512", E.SignatureInvalid),  # a fitting algorithm, but the header was signed too
        ("PS256", E.SignatureInvalid),
    ],
)
def test_tampered_header_alg_is_refused(alg: str, error: type[Exception]) -> None:
    with pytest.raises(error) as ei:
        verify(_with_header(blob(PROD23), alg=alg), AT_NO23)
    assert alg in str(ei.value)


def test_tampered_chain_order_is_refused() -> None:
    header, *_ = split(blob(PROD23))
    with pytest.raises(E.ChainInvalid) as ei:
        verify(_with_header(blob(PROD23), x5c=list(reversed(header["x5c"]))), AT_NO23)
    assert "not in issuing order" in ei.value.message


def test_missing_x5c_is_refused() -> None:
    header, *_ = split(blob(SPEC))
    raw = _with_header(blob(SPEC), x5c=None)
    with pytest.raises(E.ChainInvalid, match="x5c"):
        verify(raw, AT_SPEC, SPEC_ROOT)


def test_chain_with_only_the_intermediate_has_no_signer_for_the_signature() -> None:
    header, *_ = split(blob(PROD23))
    with pytest.raises((E.SignatureInvalid, E.UnsupportedAlgorithm)):
        verify(_with_header(blob(PROD23), x5c=header["x5c"][1:]), AT_NO23)


@pytest.mark.parametrize(
    ("cut", "error", "text"),
    [
        (0.5, E.BlobMalformed, "expected 3 dot-separated parts, found 2"),
        # the cut leaves stray bits in the last character: refused before any crypto
        (0.999999, E.BlobMalformed, "signature is not unpadded base64url: not canonical"),
    ],
)
def test_truncated_blob_is_refused(cut: float, error: type[Exception], text: str) -> None:
    raw = blob(SPEC)
    n = int(len(raw) * cut) if cut < 0.9 else len(raw) - 4
    with pytest.raises(error, match=text):
        verify(raw[:n], AT_SPEC, SPEC_ROOT)


def test_truncated_rs256_blob_is_refused() -> None:
    raw = blob(PROD23)
    with pytest.raises(E.SignatureInvalid, match="256"):
        verify(raw[:-6], AT_NO23)


def test_time_without_zone_is_refused() -> None:
    import datetime as dt

    with pytest.raises(E.TimeInvalid):
        verify(blob(SPEC), dt.datetime(2022, 1, 1), SPEC_ROOT)
