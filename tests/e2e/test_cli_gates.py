"""Exit codes and gates at the desk (issue 16, item 10): `users list --check` and
`sync --check` for cron and CI, `doctor --transport usb`, `| head` exits quietly, and a typo
in a sync target never creates an empty database."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.cli import invoke, run
from tests.support.bulk import generate, lab_model, write_policy

AAGUID = "6b657961-646d-4e00-8000-736f66746b79"


@pytest.fixture(scope="module")
def estate(tmp_path_factory) -> tuple[str, Path, Path]:
    """A registry of 9 credentials over 4 users (3, 2, 2, 2 keys) and policies of minimum
    2 and 3 keys."""
    base = tmp_path_factory.mktemp("estate")
    reg = f"sqlite:///{base / 'registry.db'}"
    model = lab_model(AAGUID)
    generate(reg, 9, [model], users=4)
    two = write_policy(base, [model], min_keys=2, name="two")
    three = write_policy(base, [model], min_keys=3, name="three")
    return reg, two, three


def test_users_list_check_passes_when_everyone_is_covered(estate) -> None:
    reg, two, _ = estate
    out = invoke("users", "list", "--policy", str(two), "--check", "--db", reg)
    assert out.code == 0, out.stderr
    assert out.stdout.count(" ok") == 4


def test_users_list_check_fails_and_names_who_is_below(estate) -> None:
    reg, _, three = estate
    out = invoke("users", "list", "--policy", str(three), "--check", "--json", "--db", reg)
    assert out.code == 3, out.stderr
    rows = json.loads(out.stdout)  # one document: the list, not an error object after it
    assert sorted(r["user"] for r in rows if not r["compliant"]) == [
        "user000001", "user000002", "user000003"
    ]  # fmt: skip
    below = [line for line in out.stderr.splitlines() if line.startswith("  - ")]
    assert len(below) == 3 and all("keys_per_user.minimum" in line for line in below)
    plain = invoke("users", "list", "--policy", str(three), "--db", reg)
    assert plain.code == 0  # without --check the list alone, as before


def test_users_list_check_needs_a_policy(estate) -> None:
    reg, _, _ = estate
    assert invoke("users", "list", "--check", "--db", reg).code == 2


def _app_db(path: Path) -> str:
    return f"sqlite:///{path}"


def test_sync_check_is_a_gate_for_cron(estate, tmp_path) -> None:
    reg, _, _ = estate
    app = tmp_path / "app.db"
    first = invoke("sync", "--target", _app_db(app), "--create-table", "--check", "--db", reg)
    assert first.code == 3, first.stderr  # nine rows to insert
    assert "9 change(s) to write" in first.stderr
    tables = sqlite3.connect(app).execute("SELECT name FROM sqlite_master").fetchall()
    assert tables == []  # --check wrote nothing (the table it would create was rolled back)
    done = invoke("sync", "--target", _app_db(app), "--create-table", "--db", reg)
    assert done.code == 0, done.stderr
    clean = invoke("sync", "--target", _app_db(app), "--check", "--json", "--db", reg)
    assert clean.code == 0, clean.stderr
    assert json.loads(clean.stdout)["dry_run"] is True
    con = sqlite3.connect(app)  # a row the registry never approved: drift
    row = con.execute("SELECT * FROM webauthn_credentials LIMIT 1").fetchone()
    con.execute(
        "INSERT INTO webauthn_credentials VALUES (" + ",".join("?" * len(row)) + ")",
        (b"\x01" * 32, *row[1:]),
    )
    con.commit()
    con.close()
    drift = invoke("sync", "--target", _app_db(app), "--check", "--json", "--db", reg)
    assert drift.code == 3, drift.stderr
    assert json.loads(drift.stdout)["drift_count"] == 1  # still one JSON document
    assert "1 row(s) keyadmin never approved" in drift.stderr


@pytest.mark.parametrize("command", ["sync", "audit"])
def test_a_typo_in_a_target_path_creates_no_database(estate, tmp_path, command) -> None:
    reg, two, _ = estate
    typo = tmp_path / "ap.db"
    args = ["--policy", str(two)] if command == "audit" else []
    out = invoke(command, "--target", _app_db(typo), *args, "--db", reg)
    assert out.code != 0
    assert f"no application database at {typo}" in out.stderr, out.stderr
    assert not typo.exists()


def test_doctor_transport_usb_does_not_check_pcscd(tmp_path) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    every = json.loads(invoke("doctor", "--json", "--db", db).stdout)
    usb = json.loads(invoke("doctor", "--transport", "usb", "--json", "--db", db).stdout)
    nfc = json.loads(invoke("doctor", "--transport", "nfc", "--json", "--db", db).stdout)
    names = {key: {c["name"] for c in doc["checks"]} for key, doc in
             (("all", every), ("usb", usb), ("nfc", nfc))}  # fmt: skip
    assert "pcsc" in names["all"] and "usb-hid" in names["all"]
    assert "pcsc" not in names["usb"] and "usb-hid" in names["usb"]
    assert "usb-hid" not in names["nfc"] and "pcsc" in names["nfc"]
    assert invoke("doctor", "--transport", "bluetooth", "--db", db).code == 2


def test_head_closing_the_pipe_ends_quietly(estate) -> None:
    """`keyadmin log show | head -n 0`: the reader is gone before keyadmin writes. No
    BrokenPipeError, no message, SIGPIPE's exit code (141)."""
    reg, _, _ = estate
    exe = os.path.join(os.path.dirname(sys.executable), "keyadmin")
    for args in ("log show", "creds list --json", "users list --csv"):
        proc = subprocess.run(
            f"set -o pipefail; {exe} {args} --db {reg} | head -n 0; "
            'echo "status: ${PIPESTATUS[0]}" >&2',
            shell=True,
            executable="/bin/bash",
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=lambda: signal.signal(signal.SIGPIPE, signal.SIG_DFL),
        )
        assert proc.stdout == ""
        assert "Error" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.strip() == "status: 141", (args, proc.stderr)


def test_version_and_help_exit_0() -> None:
    assert run("--version").code == 0 and run("-h").code == 0


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["mds", "import", "{tmp}/missing.jwt"], 1),  # an unreadable file is 1, not metadata's 7
        (["mds", "diff", "{tmp}/missing.jwt", "{tmp}/missing2.jwt"], 1),
        (["log", "show", "--limit", "0"], 2),  # was exit 0 and printed nothing
        (["log", "show", "--limit", "-1"], 2),
    ],
)
def test_exit_codes_follow_the_published_table(tmp_path, args, code) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    out = invoke(*args, env={"KEYADMIN_HOME": str(tmp_path / "home")})
    assert out.code == code, (out.code, out.stderr)
