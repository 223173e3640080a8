"""The wrong key at step-up (issue 16, item 6): a key that holds none of the user's active
credentials, or only one past its failed-attempt limit, is a refusal (exit 3) that names the
user's credentials, and it is logged. Software keys over python-fido2's CTAPHID code."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tests.integration.test_stepup_support import ACTION, PIN, Lab, enrol_key, make_lab

TODAY = datetime.now(UTC).date().isoformat()


def invoke(*args: str, input: str | None = None):
    from keyadmin.cli import main

    app: typer.Typer = main.app
    return CliRunner().invoke(app, list(args), input=input, catch_exceptions=False)


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "receipt-key.pem"
    out = invoke("receipt", "keygen", "--receipt-key", str(path), "--no-passphrase")
    assert out.exit_code == 0, out.stderr
    return path


def _step_up(lab: Lab, key: Path, state: Path):
    return invoke(
        "step-up", "alice", "--action", ACTION, "--policy", str(lab.policy_path),
        "-d", f"sim:{state}", "--receipt-key", str(key), "--db", lab.db_url,
        input=f"{PIN}\n",
    )  # fmt: skip


def _log(lab: Lab) -> list[dict]:
    return json.loads(invoke("log", "show", "--json", "--db", lab.db_url).stdout)


def test_a_key_without_the_users_credentials_is_refused_naming_them(tmp_path, key) -> None:
    lab = make_lab(tmp_path, f"sqlite:///{tmp_path / 'r.db'}", users=("alice", "bob"))
    out = _step_up(lab, key, lab.keys["bob"])  # bob's key, alice's step-up
    assert out.exit_code == 3, out.stderr
    assert "holds none of alice's active credentials" in out.stderr, out.stderr
    assert f"enrolled {TODAY}" in out.stderr  # each of alice's keys, named
    assert "CTAP error" not in out.stderr
    last = _log(lab)[-1]
    assert last["action"] == "stepup.refused" and last["subject"] == "alice"
    assert "none of alice's active credentials" in json.dumps(last["details"])


def test_a_credential_past_its_attempt_limit_is_named_exit_3(tmp_path, key) -> None:
    from keyadmin.store import registry
    from keyadmin.store import stepup as store
    from keyadmin.store.db import transaction

    lab = make_lab(tmp_path, f"sqlite:///{tmp_path / 'r.db'}", users=("alice", "spare"),
                   max_attempts=2)  # fmt: skip
    enrol_key(lab.keys["spare"], "alice", lab.policy, lab.db_url)  # alice's second key
    with transaction(lab.db_url) as s:
        first = registry.list_credentials(s, user="alice")[0]
        uid = registry.find_user(s, "alice").id
    for _ in range(2):  # two failed step-ups of alice's first credential: its limit
        store.record_refusal(
            lab.db_url, user_id=uid, user="alice", challenge_id=None,
            credential_id=bytes.fromhex(first.credential_id), reason="bad signature",
            counts_as_attempt=True, counter_violation=None, at=datetime.now(UTC),
            actor="alice", details={},
        )  # fmt: skip
    out = _step_up(lab, key, lab.keys["alice"])  # the key holds only the limited credential
    assert out.exit_code == 3, out.stderr
    assert "failed-attempt limit" in out.stderr and f"[id {first.id}]" in out.stderr, out.stderr
    assert _log(lab)[-1]["action"] == "stepup.refused"
