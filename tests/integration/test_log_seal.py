"""Writing a log row and chaining it are two steps on PostgreSQL (store/audit.py): a step-up
commits its row unsealed, then seals. What that must and must not allow, on a real server:

* a step-up's commit does not wait for another writer holding the log's head (the old
  design held the head row's lock from the append to the COMMIT: this test failed on it);
* a seq whose writer is still writing is waited for, never sealed past;
* a seq whose transaction rolled back becomes a ``log.skipped`` row, and the chain holds;
* a row left unsealed (its writer stopped after its commit) verifies as "not sealed yet"
  and is sealed by the next write;
* a step-up whose own row is edited between its commit and its seal is not acknowledged;
* (both databases) a sealer never re-chains a row that is already sealed: a log row edited and
  the head moved back before it is refused, not laundered into a consistent chain.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from tests.integration.test_stepup_support import ACTION, Lab, assertion_for, make_lab

USERS = ("alice", "bob")


@pytest.fixture
def lab(tmp_path: Path, pg_url: str) -> Lab:
    return make_lab(tmp_path, pg_url, users=USERS)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_lab(request: Any, tmp_path: Path) -> Lab:
    url = (
        f"sqlite:///{tmp_path / 'registry.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    return make_lab(tmp_path, url, users=USERS)


def _prepared(lab: Lab, user: str) -> tuple[str, Any]:
    from keyadmin.stepup import begin

    ch = begin(lab.db_url, lab.policy, user=user, action=ACTION)
    return ch.challenge_id, assertion_for(lab.keys[user], ch).to_json()


def _finish_in_thread(lab: Lab, job: tuple[str, Any]) -> tuple[threading.Thread, dict[str, Any]]:
    from keyadmin.stepup import finish

    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = finish(
                lab.db_url, lab.policy, challenge_id=job[0], action=ACTION, response=job[1]
            )
        except Exception as e:  # noqa: BLE001 - the test looks at it
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def _scalar(url: str, sql: str, **params: Any) -> Any:
    from keyadmin.store.db import get_engine

    with get_engine(url).connect() as conn:
        return conn.execute(text(sql), params).scalar()


def _counter(lab: Lab, user: str) -> int:
    return int(
        _scalar(
            lab.db_url,
            "SELECT k.sign_count FROM ka_credential k JOIN ka_user u ON u.id = k.user_id "
            "WHERE u.name = :u",
            u=user,
        )
    )


def _verify(url: str) -> Any:
    from keyadmin.store import audit, state
    from keyadmin.store.db import transaction

    rows: list[Any] = []
    with transaction(url) as s:
        chain = audit.verify(s, rows=rows)
        replay = state.replay(s, rows)
    return chain, replay


def _until(predicate: Any, seconds: float = 20.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.postgres
def test_a_step_up_commits_while_another_writer_holds_the_log_head(lab: Lab) -> None:
    from keyadmin.store import audit
    from keyadmin.store.db import transaction

    job = _prepared(lab, "bob")
    before = _counter(lab, "bob")
    with transaction(lab.db_url) as s:  # another writer, mid-transaction, holding the head
        audit.append(s, actor="test", action="test.slow", subject=None, details={})
        t, out = _finish_in_thread(lab, job)
        # bob's step-up is committed (its counter moved) although this writer has not
        # committed; its seal then waits for this writer, which it must not chain past.
        assert _until(lambda: _counter(lab, "bob") > before), "the commit waited for the head"
        time.sleep(0.3)
        assert t.is_alive() and not out, f"finish returned before its row could be sealed: {out}"
    t.join(30)
    assert "result" in out, out
    chain, replay = _verify(lab.db_url)
    assert chain.ok and chain.unsealed == 0 and replay.ok, (chain, replay.problems)
    actions = [
        _scalar(lab.db_url, "SELECT action FROM ka_audit WHERE seq = :s", s=s)
        for s in (chain.head_seq - 1, chain.head_seq)
    ]
    assert actions == ["test.slow", "stepup.ok"]
    assert out["result"].audit_seq == chain.head_seq


@pytest.mark.postgres
def test_a_seq_still_being_written_is_waited_for_and_a_rolled_back_one_is_filled(
    lab: Lab,
) -> None:
    from keyadmin.store import audit
    from keyadmin.store.db import get_engine

    engine = get_engine(lab.db_url)
    conn = engine.raw_connection()
    try:
        cur = conn.cursor()
        cur.execute("SELECT nextval('ka_audit_seq_next')")
        gap = int(cur.fetchone()[0])
        cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (audit.SEAL_LOCK_CLASS, gap))
        t, out = _finish_in_thread(lab, _prepared(lab, "alice"))
        time.sleep(1.0)
        assert t.is_alive() and not out, "the seal went past a seq still being written"
        assert _scalar(lab.db_url, "SELECT seq FROM ka_audit_head") == gap - 1
        conn.rollback()  # the writer gives up: its seq is never written
    finally:
        conn.close()
    t.join(30)
    assert "result" in out, out
    assert out["result"].audit_seq == gap + 1
    skipped = _scalar(lab.db_url, "SELECT action FROM ka_audit WHERE seq = :s", s=gap)
    assert skipped == audit.SKIPPED_ACTION
    chain, replay = _verify(lab.db_url)
    assert chain.ok and chain.head_seq == gap + 1 and replay.ok, (chain, replay.problems)


@pytest.mark.postgres
def test_an_unsealed_row_verifies_as_pending_and_the_next_write_seals_it(lab: Lab) -> None:
    from keyadmin.stepup import finish
    from keyadmin.store.db import get_engine

    head = int(_scalar(lab.db_url, "SELECT seq FROM ka_audit_head"))
    with get_engine(lab.db_url).begin() as conn:  # a writer that stopped after its commit
        conn.execute(
            text(
                "INSERT INTO ka_audit (seq, at, actor, action, subject, details, prev_hash, "
                "hash) VALUES (nextval('ka_audit_seq_next'), now(), 'test', 'test.stopped', "
                "NULL, '{}', '', '')"
            )
        )
    chain, replay = _verify(lab.db_url)
    assert chain.ok and chain.unsealed == 1 and chain.head_seq == head, chain
    from tests.e2e.cli import invoke

    shown = invoke("log", "verify", "--db", lab.db_url)
    assert shown.code == 0 and "not sealed yet" in shown.stdout, shown
    as_json = invoke("log", "verify", "--db", lab.db_url, "--json")
    assert json.loads(as_json.stdout)["unsealed"] == 1, as_json
    cid, response = _prepared(lab, "alice")
    result = finish(lab.db_url, lab.policy, challenge_id=cid, action=ACTION, response=response)
    chain, replay = _verify(lab.db_url)
    assert chain.ok and chain.unsealed == 0 and replay.ok, (chain, replay.problems)
    assert result.audit_seq == head + 2 == chain.head_seq


@pytest.mark.postgres
def test_a_step_up_whose_row_is_edited_before_its_seal_is_not_acknowledged(lab: Lab) -> None:
    from keyadmin.store import audit
    from keyadmin.store.db import DatabaseError, get_engine

    engine = get_engine(lab.db_url)
    conn = engine.raw_connection()
    try:
        cur = conn.cursor()  # a writer still writing, so the step-up's seal has to wait
        cur.execute("SELECT nextval('ka_audit_seq_next')")
        gap = int(cur.fetchone()[0])
        cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (audit.SEAL_LOCK_CLASS, gap))
        t, out = _finish_in_thread(lab, _prepared(lab, "bob"))
        mine = gap + 1
        assert _until(
            lambda: _scalar(lab.db_url, "SELECT count(*) FROM ka_audit WHERE seq = :s", s=mine)
        )
        with engine.begin() as edit:  # someone rewrites the committed, unsealed row
            edit.execute(
                text("UPDATE ka_audit SET subject = 'mallory' WHERE seq = :s"), {"s": mine}
            )
        conn.rollback()
    finally:
        conn.close()
    t.join(30)
    assert isinstance(out.get("error"), DatabaseError), f"finish gave {out}"
    assert f"log row {mine}" in str(out["error"]) and "changed" in str(out["error"])


def test_a_sealed_row_is_never_sealed_again(any_lab: Lab) -> None:
    from keyadmin.errors import KeyadminError
    from keyadmin.stepup import finish
    from keyadmin.store.db import get_engine

    lab = any_lab
    head = int(_scalar(lab.db_url, "SELECT seq FROM ka_audit_head"))
    with get_engine(lab.db_url).begin() as conn:  # edit the newest row, move the head back
        conn.execute(
            text("UPDATE ka_audit SET subject = 'mallory' WHERE seq = :s"), {"s": head}
        )
        conn.execute(
            text(
                "UPDATE ka_audit_head SET seq = :p, "
                "hash = (SELECT hash FROM ka_audit WHERE seq = :p)"
            ),
            {"p": head - 1},
        )
    cid, response = _prepared(lab, "alice")
    with pytest.raises(KeyadminError) as e:
        finish(lab.db_url, lab.policy, challenge_id=cid, action=ACTION, response=response)
    if lab.db_url.startswith("postgresql"):  # SQLite: the row's seq is taken (IntegrityError)
        assert f"log row {head}" in str(e.value) and "sealed" in str(e.value), e.value
    chain, _ = _verify(lab.db_url)
    assert not chain.ok, "the edited row was chained again"
