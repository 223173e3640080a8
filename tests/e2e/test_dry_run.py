"""--dry-run on the lifecycle commands (issue 16, item 8): creds revoke/suspend/reinstate/
set-counter/lost and keys lost/return/restock/destroy resolve the credential or key as the real
command does (same errors, same exit codes), print what would change, ask nothing (no PIN, no
confirmation, no operator authorization), write nothing (the registry file and the log are
unchanged) and exit 0. Software keys over python-fido2's CTAPHID code, SQLite registries."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.e2e import test_desk_lifecycle as lifecycle
from tests.e2e.cli import invoke
from tests.e2e.test_keys_inventory import SOFTKEY_AAGUID, _csv, _enrol, _import, _lab
from tests.support.lab import PIN, make_lab

home, desk, _app_ids = lifecycle.home, lifecycle.desk, lifecycle._app_ids  # the desk's fixtures


def _snapshot(db: str) -> tuple[str, list[dict]]:
    """The registry file's bytes (sha256, with any SQLite side files) and the whole log."""
    path = Path(db.removeprefix("sqlite:///"))
    digest = hashlib.sha256()
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-journal")):
        if p.exists():
            digest.update(p.name.encode() + b"\0" + p.read_bytes())
    log = invoke("log", "show", "--json", "--db", db)
    assert log.code == 0, log.stderr
    return digest.hexdigest(), json.loads(log.stdout)


def _error(stderr: str) -> list[str]:
    """The error lines (a real command in lab mode first says so on stderr)."""
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _unchanged(db: str, before: tuple[str, list[dict]]) -> None:
    after = _snapshot(db)
    assert after[1] == before[1], "the dry run wrote to the log"
    assert after[0] == before[0], "the dry run changed the registry file"


# ------------------------------------------------------------------ creds
@pytest.mark.parametrize(
    ("args", "change"),
    [
        (["creds", "suspend", "alice/primary"], "active -> suspended"),
        (["creds", "revoke", "alice/primary"], "active -> revoked"),
        (["creds", "set-counter", "alice/primary", "77"], "{counter} -> 77"),
        (["creds", "lost", "alice/primary"], "active -> suspended"),
        (["creds", "lost", "alice/primary", "--revoke"], "active -> revoked"),
    ],
)
def test_creds_dry_run_prints_the_change_and_writes_nothing(desk, args, change) -> None:
    primary, _, app = desk
    db = primary.db
    before = _snapshot(db)
    apps_before = _app_ids(app)
    counter = {r["nickname"]: r["sign_count"] for r in primary.registry_rows()}["primary"]
    change = change.format(counter=counter)
    out = invoke(*args, "--reason", "left on a train", "--dry-run")  # no --force, no input
    assert out.code == 0, out.stderr
    assert 'alice\'s key "primary"' in out.stdout and change in out.stdout, out.stdout
    assert "dry run" in (out.stdout + out.stderr).lower()
    _unchanged(db, before)
    assert _app_ids(app) == apps_before  # creds lost pushed nothing either
    status = {r["nickname"]: r["status"] for r in primary.registry_rows()}
    assert status == {"primary": "active", "backup": "active"}


def test_creds_lost_dry_run_json_lists_the_change_and_the_sync_targets(desk) -> None:
    primary, _, _ = desk
    before = _snapshot(primary.db)
    out = invoke("creds", "lost", "alice/primary", "--reason", "train", "--dry-run", "--json")
    assert out.code == 0, out.stderr
    plan = json.loads(out.stdout)
    assert isinstance(plan, list) and len(plan) == 2, plan
    change, push = plan
    assert change["action"] == "credential.suspend"
    assert change["from"] == "active" and change["to"] == "suspended"
    assert change["name"].startswith('alice\'s key "primary"')
    assert push["action"] == "sync" and push["name"] == "portal"
    assert push["target"].startswith("sqlite:///")
    _unchanged(primary.db, before)
    no_push = invoke("creds", "lost", "alice/primary", "--reason", "train", "--dry-run",
                     "--json", "--no-push")  # fmt: skip
    assert [p["action"] for p in json.loads(no_push.stdout)] == ["credential.suspend"]


@pytest.mark.parametrize(
    "args",
    [
        ["creds", "reinstate", "alice/primary"],  # active: nothing to reinstate
        ["creds", "suspend", "alice/nosuch"],
        ["creds", "revoke", "999"],
        ["creds", "set-counter", "alice/nosuch", "5"],
        ["creds", "lost", "bob/primary"],
    ],
)
def test_creds_dry_run_fails_as_the_real_command_does(desk, args) -> None:
    primary, _, _ = desk
    before = _snapshot(primary.db)
    real = invoke(*args, "--reason", "x", "--force")
    dry = invoke(*args, "--reason", "x", "--dry-run")
    assert dry.code == real.code and dry.code != 0, (dry, real)
    assert _error(dry.stderr) == _error(real.stderr) != [], (dry.stderr, real.stderr)
    _unchanged(primary.db, before)


def test_creds_dry_run_on_a_revoked_credential_is_refused_like_the_real_one(desk) -> None:
    primary, _, _ = desk
    assert invoke("creds", "revoke", "alice/backup", "--reason", "gone", "--force").code == 0
    before = _snapshot(primary.db)
    for verb in ("suspend", "reinstate"):
        real = invoke("creds", verb, "alice/backup", "--reason", "x", "--force")
        dry = invoke("creds", verb, "alice/backup", "--reason", "x", "--dry-run", "--json")
        assert dry.code == real.code == 2, (dry, real)
        assert "revoked" in dry.stderr
    _unchanged(primary.db, before)


def test_dry_run_needs_no_operator_authorization_nor_pin(desk, tmp_path) -> None:
    primary, _, _ = desk
    olivia = make_lab(tmp_path / "olivia", primary.db)
    assert invoke("enrol", "olivia", "--policy", str(olivia.policy), "-d", olivia.device,
                  input=f"{PIN}\n").code == 0  # fmt: skip
    assert invoke("operator", "bootstrap", "olivia", "-d", olivia.device,
                  input=f"{PIN}\n").code == 0  # fmt: skip
    refused = invoke("creds", "suspend", "alice/primary", "--reason", "x", "--force")
    assert refused.code == 3  # the real command needs an authorized operator
    before = _snapshot(primary.db)
    for args in (["creds", "suspend", "alice/primary"], ["creds", "lost", "alice/primary"]):
        out = invoke(*args, "--reason", "x", "--dry-run", "--operator", "olivia",
                     "--operator-device", olivia.device)  # fmt: skip
        assert out.code == 0, out.stderr
        assert "PIN" not in out.stderr
    _unchanged(primary.db, before)


# ------------------------------------------------------------------ keys
def test_keys_lost_dry_run_lists_the_key_and_the_credentials_it_would_suspend(tmp_path) -> None:
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    assert _import(db, _csv(tmp_path, [f"40000001,softkey,{SOFTKEY_AAGUID},b,desk"])).code == 0
    lab = _lab(tmp_path, db, 40000001)
    assert _enrol(lab).code == 0
    before = _snapshot(db)
    out = invoke("keys", "lost", "40000001", "--reason", "train", "--dry-run", "--db", db,
                 "--json")  # fmt: skip
    assert out.code == 0, out.stderr
    plan = json.loads(out.stdout)
    assert [(p["action"], p["from"], p["to"]) for p in plan] == [
        ("key.lost", "issued", "lost"),
        ("credential.suspend", "active", "suspended"),
    ]
    assert plan[0]["name"] == "Key 40000001"
    assert plan[1]["name"].startswith("alice's key")
    text = invoke("keys", "lost", "40000001", "--reason", "train", "--dry-run", "--db", db)
    assert text.code == 0 and "issued -> lost" in text.stdout and "alice's key" in text.stdout
    _unchanged(db, before)
    assert [r["status"] for r in lab.registry_rows()] == ["active"]


@pytest.mark.parametrize(
    ("command", "change"),
    [("return", None), ("restock", None), ("destroy", "in-stock -> destroyed")],
)
def test_keys_dry_run_follows_the_real_transitions(tmp_path, command, change) -> None:
    """A key in stock can be destroyed but neither returned nor restocked."""
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    assert _import(db, _csv(tmp_path, [f"40000002,softkey,{SOFTKEY_AAGUID},b,desk"])).code == 0
    before = _snapshot(db)
    dry = invoke("keys", command, "40000002", "--reason", "x", "--dry-run", "--db", db)
    unknown = invoke("keys", command, "99999999", "--reason", "x", "--dry-run", "--db", db)
    _unchanged(db, before)
    real = invoke("keys", command, "40000002", "--reason", "x", "--force", "--db", db)
    if change is None:
        assert dry.code == real.code == 2, (dry, real)
        assert _error(dry.stderr) == _error(real.stderr) != []
    else:
        assert dry.code == 0 and change in dry.stdout, dry
        assert "Key 40000002" in dry.stdout
        assert real.code == 0
    real_unknown = invoke("keys", command, "99999999", "--reason", "x", "--force", "--db", db)
    assert unknown.code == real_unknown.code != 0
    assert _error(unknown.stderr) == _error(real_unknown.stderr) != []


# ------------------------------------------------------------------ help
@pytest.mark.parametrize(
    "command",
    [
        ["creds", "revoke"], ["creds", "suspend"], ["creds", "reinstate"],
        ["creds", "set-counter"], ["creds", "lost"], ["keys", "lost"], ["keys", "return"],
        ["keys", "restock"], ["keys", "destroy"],
    ],
)  # fmt: skip
def test_help_shows_a_dry_run_example(command) -> None:
    out = invoke(*command, "--help")
    assert out.code == 0
    name = f"keyadmin {' '.join(command)} "
    examples = [line for line in out.stdout.splitlines() if name in line]
    assert any("--dry-run" in line for line in examples), out.stdout


def test_creds_lost_dry_run_names_a_target_without_its_password(desk) -> None:
    primary, _, _ = desk
    url = "postgresql://app:s3cret-pw@db.example/portal"
    out = invoke("creds", "lost", "alice/primary", "--reason", "x", "--dry-run", "--json",
                 "--target", url)  # fmt: skip
    assert out.code == 0, out.stderr
    assert "s3cret-pw" not in out.stdout + out.stderr
    assert [p["target"] for p in json.loads(out.stdout) if p["action"] == "sync"] == [
        "postgresql://app:***@db.example/portal"
    ]
