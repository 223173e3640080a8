"""keyadmin step-up and keyadmin receipt, as an operator runs them, with the software key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tests.integration.test_stepup_support import ACTION, PIN, Lab, clone, make_lab, stored

PASS = "receipt-pass-1"


def _app() -> typer.Typer:
    """keyadmin's app, as the console script runs it."""
    from keyadmin.cli import main

    return main.app


def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None):
    return CliRunner().invoke(_app(), list(args), input=input, env=env, catch_exceptions=False)


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return make_lab(tmp_path, f"sqlite:///{tmp_path / 'registry.db'}")


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "receipt-key.pem"
    out = invoke("receipt", "keygen", "--receipt-key", str(path), "--json", input=f"{PASS}\n")
    assert out.exit_code == 0, out.stderr
    made = json.loads(out.stdout)
    assert made["encrypted"] is True and (path.stat().st_mode & 0o777) == 0o600
    return path


def _step_up(lab: Lab, key: Path, state: Path, *extra: str, action: str = ACTION, pin: str = PIN):
    return invoke(
        "step-up", "alice", "--action", action, "--policy", str(lab.policy_path),
        "-d", f"sim:{state}", "--receipt-key", str(key), "--db", lab.db_url, *extra,
        input=f"{PASS}\n{pin}\n",
    )  # fmt: skip


def test_step_up_prints_a_receipt_that_verifies(lab: Lab, key: Path) -> None:
    out = _step_up(lab, key, lab.keys["alice"], "--json")
    assert out.exit_code == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["user"] == "alice" and result["counter"] > result["previous_counter"]
    assert PIN not in out.stdout + out.stderr and PASS not in out.stdout + out.stderr
    token = result["receipt"]
    ok = invoke("receipt", "verify", token, "--action", ACTION, "--receipt-key", str(key))
    assert ok.exit_code == 0 and "Receipt valid" in ok.stdout
    js = invoke(
        "receipt", "verify", token, "--no-action-check", "--receipt-key", str(key), "--json"
    )
    checked = json.loads(js.stdout)
    assert checked["action_checked"] is False
    # the receipt names the log row its step-up wrote: evidence, held by the application,
    # that the log had that row (a later truncation or rewrite of the log contradicts it)
    log = json.loads(invoke("log", "show", "--json", "--db", lab.db_url).stdout)
    row = next(r for r in log if r["seq"] == checked["log_seq"])
    assert row["action"] == "stepup.ok" and row["hash"] == checked["log_hash"]
    wrong = invoke("receipt", "verify", token, "--action", "other", "--receipt-key", str(key))
    assert wrong.exit_code == 3 and "another action" in wrong.stderr
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    bad = invoke("receipt", "verify", tampered, "--action", ACTION, "--receipt-key", str(key))
    assert bad.exit_code == 3


def test_human_output_is_the_receipt_alone(lab: Lab, key: Path) -> None:
    """TOKEN=$(keyadmin step-up …) must work (issue 16, item 7): the token alone on stdout,
    the summary for people on stderr."""
    out = _step_up(lab, key, lab.keys["alice"])
    assert out.exit_code == 0, out.stderr
    assert "Step-up accepted: alice" in out.stderr and "log seq" in out.stderr
    assert out.stdout.count("\n") == 1 and out.stdout.strip().count(".") == 2
    token = out.stdout.strip()
    ok = invoke("receipt", "verify", token, "--action", ACTION, "--receipt-key", str(key))
    assert ok.exit_code == 0, ok.stderr


def test_cloned_key_exits_6_and_is_quarantined(lab: Lab, key: Path, tmp_path: Path) -> None:
    copy = clone(lab.keys["alice"], tmp_path / "copy.key")
    assert _step_up(lab, key, lab.keys["alice"]).exit_code == 0
    out = _step_up(lab, key, copy)
    assert out.exit_code == 6, out.stderr
    assert "counter did not advance" in out.stderr and "quarantined" in out.stderr
    assert stored(lab.db_url).status == "quarantined"


def test_wrong_pin_exits_5(lab: Lab, key: Path) -> None:
    out = _step_up(lab, key, lab.keys["alice"], pin="wrong-pin")
    assert out.exit_code == 5, out.stderr
    assert "wrong PIN" in out.stderr


def test_a_key_without_pin_exits_5(lab: Lab, key: Path, tmp_path: Path) -> None:
    """Found by review: python-fido2's "User verification not configured" came out as exit 4."""
    from keyadmin.sim.authenticator import SoftKey

    bare = tmp_path / "no-pin.key"
    SoftKey.create(bare)
    out = _step_up(lab, key, bare)
    assert out.exit_code == 5, out.stderr
    assert "no PIN" in out.stderr and "Traceback" not in out.stderr


def test_wrong_receipt_passphrase_is_refused_before_the_key_is_touched(lab: Lab, key: Path) -> None:
    before = stored(lab.db_url).sign_count
    out = invoke(
        "step-up", "alice", "--action", ACTION, "--policy", str(lab.policy_path),
        "-d", f"sim:{lab.keys['alice']}", "--receipt-key", str(key), "--db", lab.db_url,
        input=f"not-the-pass\n{PIN}\n",
    )  # fmt: skip
    assert out.exit_code == 1 and "wrong passphrase" in out.stderr
    assert stored(lab.db_url).sign_count == before


def test_help_has_an_example() -> None:
    out = invoke("step-up", "--help")
    assert out.exit_code == 0 and "Example:\n    keyadmin step-up alice" in out.stdout


def test_receipt_verify_checks_the_action_unless_told_not_to(key: Path) -> None:
    """Found by review: without --action, verify said "valid" (exit 0) for any action."""
    from datetime import UTC, datetime

    from keyadmin.stepup import ReceiptSigner, action_hash

    token = ReceiptSigner.load(key, PASS.encode()).issue(
        user="alice", action_hash=action_hash(ACTION), credential_id="ab" * 16, counter=1,
        challenge_id="cd" * 16, rp_id="example.com", issued_at=datetime.now(UTC),
    )  # fmt: skip
    bare = invoke("receipt", "verify", token, "--receipt-key", str(key))
    assert bare.exit_code == 2 and "--action" in bare.stderr and "Receipt valid" not in bare.stdout
    both = invoke(
        "receipt", "verify", token, "--action", ACTION, "--no-action-check",
        "--receipt-key", str(key),
    )  # fmt: skip
    assert both.exit_code == 2
    unchecked = invoke("receipt", "verify", token, "--no-action-check", "--receipt-key", str(key))
    assert unchecked.exit_code == 0 and "action NOT checked" in unchecked.stdout
    assert "action was not checked" in unchecked.stderr
    js = invoke(
        "receipt", "verify", token, "--no-action-check", "--receipt-key", str(key), "--json"
    )
    assert js.exit_code == 0 and json.loads(js.stdout)["action_checked"] is False
    ok = invoke("receipt", "verify", token, "--action", ACTION, "--receipt-key", str(key), "--json")
    assert ok.exit_code == 0 and json.loads(ok.stdout)["action_checked"] is True
