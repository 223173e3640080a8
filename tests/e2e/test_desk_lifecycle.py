"""The desk's lifecycle (issue 16, items 1 and 2): which key is which (nickname, enrolment
date, last use, everywhere a credential is named), the lost key as one command (suspend or
revoke, push to the configured sync targets, coverage, what to enrol next), and the next
step printed after every lifecycle command. Software keys over python-fido2's CTAPHID code,
SQLite registry and a SQLite application database."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.e2e.cli import invoke
from tests.support.lab import PIN, Lab, make_lab

TODAY = datetime.now(UTC).date().isoformat()


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("KEYADMIN_HOME", str(path))
    for name in ("KEYADMIN_CONFIG", "KEYADMIN_OPERATOR", "KEYADMIN_OPERATOR_DEVICE",
                 "KEYADMIN_DEVICE", "KEYADMIN_DATABASE_URL", "KEYADMIN_POLICY",
                 "KEYADMIN_SYNC_TARGET"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KEYADMIN_SYSLOG_SOCKET", "off")
    return path


@pytest.fixture
def desk(tmp_path, home):
    """alice with two keys (primary, backup) under a policy that asks for 2; a config file
    naming the registry, the policy and one application database (synced once)."""
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    primary = make_lab(tmp_path / "primary", db)
    backup = make_lab(tmp_path / "backup", db)
    policy = primary.policy
    policy.write_text(policy.read_text().replace("[keys_per_user]\nminimum = 1",
                                                 "[keys_per_user]\nminimum = 2"))  # fmt: skip
    app = tmp_path / "app.db"
    home.mkdir(mode=0o700, exist_ok=True)
    (home / "config.toml").write_text(
        f'registry = "{db}"\npolicy = "{policy}"\n\n'
        f'[[sync.targets]]\nname = "portal"\nurl = "sqlite:///{app}"\n'
    )
    (home / "config.toml").chmod(0o600)
    for lab, nick in ((primary, "primary"), (backup, "backup")):
        out = invoke("enrol", "alice", "--policy", str(lab.policy), "-d", lab.device,
                     "--nickname", nick, input=f"{PIN}\n")  # fmt: skip
        assert out.code == 0, out.stderr
    assert invoke("sync", "--create-table").code == 0
    return primary, backup, app


def _app_ids(app: Path) -> set[str]:
    con = sqlite3.connect(app)
    try:
        rows = con.execute("SELECT credential_id FROM webauthn_credentials").fetchall()
        return {bytes(r[0]).hex() for r in rows}
    finally:
        con.close()


# ------------------------------------------------------------------ item 2: which key is which
def test_creds_list_shows_nickname_enrolment_date_and_last_use(desk) -> None:
    out = invoke("creds", "list", "--user", "alice")
    assert out.code == 0, out.stderr
    header, *rows = out.stdout.splitlines()
    assert "nickname" in header and "enrolled" in header and "last used" in header
    assert any("primary" in r and TODAY in r and "never" in r for r in rows), out.stdout
    assert any("backup" in r for r in rows)


def test_confirmation_names_the_key_by_nickname_and_date_never_by_number(desk) -> None:
    out = invoke("creds", "revoke", "1", "--reason", "test", input="n\n")
    assert out.code != 0  # said no: nothing done
    assert "primary" in out.stderr and f"enrolled {TODAY}" in out.stderr, out.stderr
    assert "credential #" not in out.stderr


def test_a_key_is_named_by_user_and_nickname(desk) -> None:
    out = invoke("creds", "show", "alice/backup", "--json")
    assert out.code == 0, out.stderr
    assert json.loads(out.stdout)["nickname"] == "backup"
    missing = invoke("creds", "show", "alice/nope")
    assert missing.code == 1 and "alice" in missing.stderr and "nope" in missing.stderr


# ------------------------------------------------------------------ item 1: the lost key
def test_lost_key_is_suspended_pushed_and_coverage_shown(desk) -> None:
    primary, _backup, app = desk
    lost_id = primary.key().state.credentials[0].id_bytes.hex()
    assert lost_id in _app_ids(app)
    out = invoke("creds", "lost", "alice/primary", "--reason", "left on a train", "--force",
                 "--json")  # fmt: skip
    assert out.code == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["credential"]["status"] == "suspended"
    assert [p["target"] for p in result["pushed"]] == ["portal"]
    assert result["pushed"][0]["ok"] is True
    assert lost_id not in _app_ids(app)  # the application no longer accepts it
    assert result["coverage"]["active"] == 1 and result["coverage"]["minimum"] == 2
    assert any("keyadmin enrol alice" in step for step in result["next"])
    assert "backup" in out.stderr  # what alice still holds, by nickname
    log = json.loads(invoke("log", "show", "--json").stdout)
    assert [r["action"] for r in log][-2:] == ["credential.suspend", "sync.run"]


def test_lost_key_revoke_and_without_targets_says_it_was_not_pushed(desk, home) -> None:
    primary, _backup, app = desk
    conf = (home / "config.toml").read_text().split("[[sync.targets]]")[0]
    (home / "config.toml").write_text(conf)
    out = invoke("creds", "lost", "alice/primary", "--reason", "stolen", "--revoke", "--force")
    assert out.code == 0, out.stderr
    assert "revoked" in out.stdout
    assert "NOT pushed" in out.stderr and "keyadmin sync" in out.stderr
    lost_id = primary.key().state.credentials[0].id_bytes.hex()
    assert lost_id in _app_ids(app)  # honestly not pushed


def test_lost_key_goes_through_operator_authorization(desk, tmp_path) -> None:
    """Out of lab mode the lost-key command needs the lifecycle (and sync) role, proven by
    the operator's key: the PIN is asked once for both authorizations."""
    primary, backup, app = desk
    olivia = make_lab(tmp_path / "olivia", primary.db)
    assert invoke("enrol", "olivia", "--policy", str(olivia.policy), "-d", olivia.device,
                  input=f"{PIN}\n").code == 0  # fmt: skip
    boot = invoke("operator", "bootstrap", "olivia", "-d", olivia.device, input=f"{PIN}\n")
    assert boot.code == 0, boot.stderr
    refused = invoke("creds", "lost", "alice/primary", "--reason", "x", "--force")
    assert refused.code == 3 and "authoriz" in refused.stderr
    out = invoke("creds", "lost", "alice/primary", "--reason", "lost", "--force",
                 "--operator", "olivia", "--operator-device", olivia.device,
                 input=f"{PIN}\n")  # fmt: skip
    assert out.code == 0, out.stderr
    assert primary.key().state.credentials[0].id_bytes.hex() not in _app_ids(app)
    verify = invoke("operator", "verify-log", "--json")
    assert verify.code == 0, verify.stdout
    del backup


# ------------------------------------------------------------------ next steps
@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["creds", "suspend", "alice/primary", "--reason", "travel", "--force"], "keyadmin sync"),
        (
            ["creds", "revoke", "alice/primary", "--reason", "gone", "--force"],
            "keyadmin enrol alice",
        ),
    ],
)
def test_every_lifecycle_command_prints_the_next_step(desk, args, expect) -> None:
    out = invoke(*args)
    assert out.code == 0, out.stderr
    assert "next:" in out.stderr and expect in out.stderr, out.stderr


def test_enrol_prints_the_next_step(tmp_path, home) -> None:
    lab: Lab = make_lab(tmp_path / "lab", f"sqlite:///{tmp_path / 'r.db'}")
    out = invoke(*lab.enrol_args("carol"), input=f"{PIN}\n")
    assert out.code == 0, out.stderr
    assert "next:" in out.stderr and "keyadmin sync" in out.stderr


def test_lost_key_with_an_unreachable_target_keeps_the_change_and_exits_1(desk, home) -> None:
    primary, _backup, app = desk
    conf = (home / "config.toml").read_text()
    (home / "config.toml").write_text(
        conf + '\n[[sync.targets]]\nname = "billing"\nurl = "sqlite:////nonexistent-dir/b.db"\n'
    )
    out = invoke("creds", "lost", "alice/primary", "--reason", "lost", "--force", "--json")
    assert out.code == 1, out.stderr
    result = json.loads(out.stdout)
    assert result["credential"]["status"] == "suspended"  # the registry change stands
    pushed = {p["target"]: p["ok"] for p in result["pushed"]}
    assert pushed == {"portal": True, "billing": False}
    assert (
        "NOT pushed to billing" in out.stderr
        and "keyadmin sync --target 'sqlite:////nonexistent-dir/b.db'" in out.stderr
    )
    assert primary.key().state.credentials[0].id_bytes.hex() not in _app_ids(app)


def test_an_operator_key_without_the_operators_credential_names_them(desk, tmp_path) -> None:
    primary, backup, _app = desk
    olivia = make_lab(tmp_path / "olivia", primary.db)
    enrolled = invoke("enrol", "olivia", "--policy", str(olivia.policy), "-d", olivia.device,
                      "--nickname", "olivia desk", input=f"{PIN}\n")  # fmt: skip
    assert enrolled.code == 0, enrolled.stderr
    assert invoke("operator", "bootstrap", "olivia", "-d", olivia.device,
                  input=f"{PIN}\n").code == 0  # fmt: skip
    out = invoke("creds", "suspend", "alice/backup", "--reason", "x", "--force",
                 "--operator", "olivia", "--operator-device", backup.device,
                 input=f"{PIN}\n")  # fmt: skip
    assert out.code == 3, out.stderr
    assert "holds none of olivia's active credentials" in out.stderr, out.stderr
    assert '"olivia desk"' in out.stderr


def test_lost_key_never_prints_a_target_password(desk) -> None:
    """A --target URL's password is shown nowhere (it was the target's name in the output)."""
    url = "postgresql://app:s3cret-pw@127.0.0.1:1/app"  # nothing listens on port 1
    out = invoke("creds", "lost", "alice/primary", "--reason", "lost", "--force", "--target", url)
    assert out.code == 1, out.stderr
    assert "s3cret-pw" not in out.stdout + out.stderr, out.stdout + out.stderr
    js = invoke("creds", "reinstate", "alice/primary", "--reason", "found", "--force")
    assert js.code == 0, js.stderr
    js = invoke("creds", "lost", "alice/primary", "--reason", "lost", "--force", "--target", url,
                "--json")  # fmt: skip
    assert js.code == 1 and "s3cret-pw" not in js.stdout + js.stderr
