"""Someone who can write the registry database, against the log's state replay, step-up's
binding check and the signed anchor: on SQLite and on the real PostgreSQL server.

Each attack here succeeded before the registry's state was bound to the log (see
docs/security-model.md): the edited row passed ``log verify`` and step-up accepted it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from keyadmin.stepup import StepUpRefused, begin, finish
from tests.integration.test_stepup_support import ACTION, Lab, assertion_for, make_lab, stored


def _lab(kind: str, tmp_path: Path, request: Any) -> Lab:
    url = (
        f"sqlite:///{tmp_path / 'registry.db'}"
        if kind == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    return make_lab(tmp_path, url, users=("alice", "mallory"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def lab(request: Any, tmp_path: Path) -> Lab:
    return _lab(request.param, tmp_path, request)


def _sql(url: str, statement: str, **params: Any) -> None:
    from keyadmin.store.db import get_engine

    with get_engine(url).begin() as conn:
        conn.execute(text(statement), params)


def _verify(url: str) -> Any:
    from keyadmin.store import audit, state
    from keyadmin.store.db import transaction

    with transaction(url) as s:
        return audit.verify(s), state.replay(s)


def _step_up(lab: Lab, user: str, key: Path) -> Any:
    ch = begin(lab.db_url, lab.policy, user=user, action=ACTION)
    return finish(
        lab.db_url,
        lab.policy,
        challenge_id=ch.challenge_id,
        action=ACTION,
        response=assertion_for(key, ch),
    )


def test_untouched_registry_replays_clean(lab: Lab) -> None:
    _step_up(lab, "alice", lab.keys["alice"])
    chain, replay = _verify(lab.db_url)
    assert chain.ok and replay.ok, replay.problems
    assert replay.credentials_checked == 2


def test_quarantined_set_back_to_active_is_found_and_refused(lab: Lab) -> None:
    from keyadmin.store import registry
    from keyadmin.store.db import transaction

    with transaction(lab.db_url) as s:
        registry.change_status(s, stored(lab.db_url).id, "quarantine", reason="t", actor="sec")
    _sql(
        lab.db_url,
        "UPDATE ka_credential SET status = 'active' WHERE id = :id",
        id=stored(lab.db_url).id,
    )
    chain, replay = _verify(lab.db_url)
    assert chain.ok  # the log itself was not touched
    assert not replay.ok
    assert any("status" in p and "quarantined" in p for p in replay.problems), replay.problems
    with pytest.raises(StepUpRefused, match="does not match the log"):
        _step_up(lab, "alice", lab.keys["alice"])


def test_substituted_public_key_is_found_and_its_step_up_refused(lab: Lab) -> None:
    alice, mallory = stored(lab.db_url, "alice"), stored(lab.db_url, "mallory")
    # mallory puts her own public key and credential id on alice's credential row
    _sql(lab.db_url, "DELETE FROM ka_credential WHERE id = :id", id=mallory.id)
    _sql(
        lab.db_url,
        "UPDATE ka_credential SET public_key = :pk, credential_id = :cid WHERE id = :a",
        pk=bytes.fromhex(mallory.public_key_cose),
        cid=bytes.fromhex(mallory.credential_id),
        a=alice.id,
    )
    chain, replay = _verify(lab.db_url)
    assert chain.ok and not replay.ok
    text_ = "\n".join(replay.problems)
    assert f"#{alice.id}" in text_ and "user" in text_, replay.problems
    assert alice.credential_id[:16] in text_ and "missing" in text_, replay.problems
    with pytest.raises(StepUpRefused, match="does not match the log"):
        _step_up(lab, "alice", lab.keys["mallory"])


def test_swapped_public_key_alone_is_named(lab: Lab) -> None:
    alice, mallory = stored(lab.db_url, "alice"), stored(lab.db_url, "mallory")
    _sql(
        lab.db_url,
        "UPDATE ka_credential SET public_key = :pk WHERE id = :a",
        pk=bytes.fromhex(mallory.public_key_cose),
        a=alice.id,
    )
    _chain, replay = _verify(lab.db_url)
    assert (
        replay.problems == [p for p in replay.problems if f"#{alice.id}" in p and "public key" in p]
        and len(replay.problems) == 1
    ), replay.problems


def test_moved_to_another_user_is_found_and_refused(lab: Lab) -> None:
    alice, mallory = stored(lab.db_url, "alice"), stored(lab.db_url, "mallory")
    # mallory's credential moved onto alice: mallory's key would then step up as alice
    _sql(
        lab.db_url,
        "UPDATE ka_credential SET user_id = (SELECT user_id FROM ka_credential WHERE id = :a) "
        "WHERE id = :m",
        a=alice.id,
        m=mallory.id,
    )
    chain, replay = _verify(lab.db_url)
    assert chain.ok and not replay.ok
    assert any("user" in p for p in replay.problems), replay.problems
    ch = begin(lab.db_url, lab.policy, user="alice", action=ACTION)
    with pytest.raises(StepUpRefused, match="does not match the log"):
        finish(
            lab.db_url,
            lab.policy,
            challenge_id=ch.challenge_id,
            action=ACTION,
            response=assertion_for(lab.keys["mallory"], ch),
        )


def test_lowered_counter_is_found(lab: Lab) -> None:
    _step_up(lab, "alice", lab.keys["alice"])
    _sql(
        lab.db_url,
        "UPDATE ka_credential SET sign_count = 0 WHERE id = :id",
        id=stored(lab.db_url).id,
    )
    _chain, replay = _verify(lab.db_url)
    assert not replay.ok and any("counter" in p for p in replay.problems), replay.problems
    with pytest.raises(StepUpRefused, match="does not match the log"):
        _step_up(lab, "alice", lab.keys["alice"])


def test_inserted_credential_row_is_found(lab: Lab) -> None:
    mallory = stored(lab.db_url, "mallory")
    _sql(lab.db_url, "UPDATE ka_credential SET change_seq = 0 WHERE id = :id", id=mallory.id)
    # a credential row that no log row ever recorded
    _sql(
        lab.db_url,
        "INSERT INTO ka_credential (credential_id, user_id, public_key, sign_count, aaguid, "
        "transports, backup_eligible, backed_up, status, created_at, updated_at, operator, "
        "change_seq) SELECT :cid, user_id, public_key, 0, aaguid, transports, backup_eligible, "
        "backed_up, 'active', created_at, updated_at, 'x', 0 FROM ka_credential WHERE id = :id",
        cid=b"\x01" * 32,
        id=mallory.id,
    )
    _chain, replay = _verify(lab.db_url)
    assert not replay.ok
    assert any("0101010101" in p and "never recorded" in p for p in replay.problems), (
        replay.problems
    )


def test_deleted_credential_row_is_found(lab: Lab) -> None:
    mallory = stored(lab.db_url, "mallory")
    _sql(lab.db_url, "DELETE FROM ka_credential WHERE id = :id", id=mallory.id)
    _chain, replay = _verify(lab.db_url)
    assert not replay.ok
    assert any(mallory.credential_id[:16] in p and "missing" in p for p in replay.problems)


# ----------------------------------------------------------------------------- the signed anchor
def _cli(*args: str, env: dict[str, str] | None = None) -> Any:
    from tests.e2e.cli import invoke

    return invoke(*args, env=env)


@pytest.fixture
def anchored(lab: Lab, tmp_path: Path) -> tuple[Lab, Path, Path]:
    """Three step-ups, then the head anchored with a log key kept outside the registry."""
    for _ in range(3):
        _step_up(lab, "alice", lab.keys["alice"])
    key = tmp_path / "offline" / "log-key.pem"
    made = _cli("log", "keygen", "--log-key", str(key), "--no-passphrase")
    assert made.code == 0, made.stderr
    anchor = tmp_path / "offline" / "head.anchor"
    out = _cli("log", "anchor", "--log-key", str(key), "--out", str(anchor), "--db", lab.db_url)
    assert out.code == 0, out.stderr
    return lab, anchor, key.with_name("log-key.pub.pem")


def _verify_anchored(lab: Lab, anchor: Path, pub: Path) -> Any:
    return _cli(
        "log", "verify", "--anchor", str(anchor), "--log-public-key", str(pub),
        "--db", lab.db_url, "--json",
    )  # fmt: skip


def test_anchored_log_verifies_and_keeps_verifying_as_it_grows(anchored: Any) -> None:
    import json

    lab, anchor, pub = anchored
    _step_up(lab, "alice", lab.keys["alice"])
    out = _verify_anchored(lab, anchor, pub)
    assert out.code == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] and report["anchor"]["seq"] < report["head_seq"]


def _head(url: str) -> tuple[int, str]:
    from keyadmin.store.db import get_engine

    with get_engine(url).begin() as conn:
        seq, digest = conn.execute(text("SELECT seq, hash FROM ka_audit_head")).one()
    return int(seq), str(digest)


def test_truncated_log_with_rewound_head_is_refused(anchored: Any) -> None:
    lab, anchor, pub = anchored
    seq, _ = _head(lab.db_url)
    # delete the last two rows and point the head at the row before them: the chain holds
    _sql(lab.db_url, "DELETE FROM ka_audit WHERE seq > :s", s=seq - 2)
    _sql(
        lab.db_url,
        "UPDATE ka_audit_head SET seq = :s, hash = (SELECT hash FROM ka_audit WHERE seq = :s)",
        s=seq - 2,
    )
    _sql(lab.db_url, "UPDATE ka_credential SET change_seq = 0")  # hide it from the replay too
    plain = _cli("log", "verify", "--db", lab.db_url, "--json")
    import json

    assert json.loads(plain.stdout)["chain_ok"] is True  # the chain alone cannot see it
    out = _verify_anchored(lab, anchor, pub)
    assert out.code == 1
    problem = json.loads(out.stdout)["problem"]
    assert "deleted from the end" in problem and f"row {seq}" in problem


def test_emptied_log_with_reset_head_is_refused(anchored: Any) -> None:
    import json

    lab, anchor, pub = anchored
    _sql(lab.db_url, "DELETE FROM ka_audit")
    _sql(lab.db_url, "UPDATE ka_audit_head SET seq = 0, hash = :g", g="0" * 64)
    out = _verify_anchored(lab, anchor, pub)
    assert out.code == 1 and "ends at row 0" in json.loads(out.stdout)["problem"]


def test_rewritten_log_is_refused(anchored: Any) -> None:
    """The whole log recomputed from an edited row on: a consistent chain, not the anchored one."""
    import json

    from keyadmin.store import audit
    from keyadmin.store.db import get_engine

    lab, anchor, pub = anchored
    with get_engine(lab.db_url).begin() as conn:
        rows = conn.execute(
            text("SELECT seq, at, actor, action, subject, details FROM ka_audit ORDER BY seq")
        ).all()
        prev = audit.GENESIS
        for seq, at, actor, action, subject, details in rows:
            if seq == 2:
                actor = "someone-else"
            digest = audit.recompute(prev, seq, at, actor, action, subject, details)
            conn.execute(
                text("UPDATE ka_audit SET actor = :a, prev_hash = :p, hash = :h WHERE seq = :s"),
                {"a": actor, "p": prev, "h": digest, "s": seq},
            )
            prev = digest
        conn.execute(text("UPDATE ka_audit_head SET hash = :h"), {"h": prev})
    plain = _cli("log", "verify", "--db", lab.db_url, "--json")
    assert json.loads(plain.stdout)["chain_ok"] is True
    out = _verify_anchored(lab, anchor, pub)
    assert out.code == 1
    assert "not the row that was anchored" in json.loads(out.stdout)["problem"]


def test_forged_or_foreign_anchor_is_refused(anchored: Any, tmp_path: Path) -> None:
    lab, anchor, pub = anchored
    other = tmp_path / "other" / "log-key.pem"
    assert _cli("log", "keygen", "--log-key", str(other), "--no-passphrase").code == 0
    out = _verify_anchored(lab, anchor, other.with_name("log-key.pub.pem"))
    assert out.code != 0 and "another key" in out.stderr
    head, claims, sig = anchor.read_text().strip().split(".")
    from keyadmin.b64 import decode_url, encode_url

    forged = claims.replace(claims, encode_url(decode_url(claims).replace(b'"seq":', b'"seq":1')))
    anchor.write_text(f"{head}.{forged}.{sig}\n")
    out = _verify_anchored(lab, anchor, pub)
    assert out.code != 0 and "does not verify" in out.stderr


def test_registry_from_before_the_binding_is_bound_once_then_steps_up(lab: Lab) -> None:
    """change_seq 0 is how migration 0002 left credentials enrolled before it: step-up refuses
    them (no logged state) until `log bind-state` records what the registry holds."""
    import json

    _sql(lab.db_url, "UPDATE ka_credential SET change_seq = 0")
    with pytest.raises(StepUpRefused, match="no record of this credential's state"):
        _step_up(lab, "alice", lab.keys["alice"])
    out = _cli("log", "bind-state", "--db", lab.db_url, "--json")
    assert out.code == 0 and json.loads(out.stdout)["bound"] == 2
    again = _cli("log", "bind-state", "--db", lab.db_url, "--json")
    assert json.loads(again.stdout)["bound"] == 0
    _step_up(lab, "alice", lab.keys["alice"])
    chain, replay = _verify(lab.db_url)
    assert chain.ok and replay.ok, replay.problems


def test_logged_changes_keep_the_registry_bound(lab: Lab) -> None:
    """Every way keyadmin itself changes a credential records its new state: a counter set on
    purpose, a suspension and reinstatement, step-ups; the replay stays clean throughout."""
    from keyadmin.store import registry
    from keyadmin.store.db import transaction

    _step_up(lab, "alice", lab.keys["alice"])
    ref, counter = stored(lab.db_url).id, stored(lab.db_url).sign_count
    assert counter >= 1
    with transaction(lab.db_url) as s:
        registry.set_counter(s, ref, counter - 1, reason="repair after review", actor="sec")
    with transaction(lab.db_url) as s:
        registry.change_status(s, ref, "suspend", reason="t", actor="sec")
    with transaction(lab.db_url) as s:
        registry.change_status(s, ref, "reinstate", reason="t", actor="sec")
    _chain, replay = _verify(lab.db_url)
    assert replay.ok, replay.problems
    assert _step_up(lab, "alice", lab.keys["alice"]).previous_counter == counter - 1
    assert _verify(lab.db_url)[1].ok
