"""Concurrent appends to the log: step-ups for distinct credentials finished by 8 processes at
once (SQLite and a real PostgreSQL server) leave one unbroken chain whose state replays
clean; and the log verification still finds an edited, deleted, inserted, reordered or
truncated row in a log written that way."""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from tests.integration.test_stepup_support import ACTION, Lab, assertion_for, make_lab

WORKERS = 8
PER_WORKER = 4


def _run_jobs(job: tuple[str, str, list[tuple[str, dict[str, Any]]], float]) -> list[str]:
    """One worker (a spawned process): its user's step-ups, in order, from a common start."""
    db_url, policy_path, steps, start_at = job
    from keyadmin.errors import KeyadminError
    from keyadmin.policy.loader import load_policy
    from keyadmin.stepup import finish

    policy = load_policy(policy_path)
    time.sleep(max(0.0, start_at - time.time()))
    out = []
    for challenge_id, response in steps:
        try:
            finish(db_url, policy, challenge_id=challenge_id, action=ACTION, response=response)
            out.append("ok")
        except KeyadminError as e:
            out.append(type(e).__name__)
    return out


@pytest.fixture(scope="module")
def pool() -> Iterator[Any]:
    with multiprocessing.get_context("spawn").Pool(WORKERS) as p:
        yield p


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def written(request: Any, tmp_path: Path, pool: Any) -> Lab:
    """A registry whose log was appended to by WORKERS processes at once."""
    from keyadmin.stepup import begin

    url = (
        f"sqlite:///{tmp_path / 'registry.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    users = tuple(f"admin{i}" for i in range(WORKERS))
    lab = make_lab(tmp_path, url, users=users)
    jobs = []
    start_at = time.time() + 5.0
    for user in users:
        steps = []
        for _ in range(PER_WORKER):
            ch = begin(url, lab.policy, user=user, action=ACTION)
            steps.append((ch.challenge_id, assertion_for(lab.keys[user], ch).to_json()))
        jobs.append((url, str(lab.policy_path), steps, start_at))
    outcomes = pool.map(_run_jobs, jobs, chunksize=1)
    assert outcomes == [["ok"] * PER_WORKER] * WORKERS
    return lab


def _check(url: str, tamper: str | None = None, anchor: tuple[int, str] | None = None) -> Any:
    """Verify the chain and replay the state with ``tamper`` applied inside a transaction
    that is rolled back afterwards (the registry is left as it was)."""
    from sqlmodel import Session

    from keyadmin.store import audit, state
    from keyadmin.store.db import get_engine

    with get_engine(url).connect() as conn:
        outer = conn.begin()
        try:
            if tamper:
                for statement in tamper.split(";"):
                    conn.execute(text(statement))
            session = Session(bind=conn)
            rows: list[Any] = []
            chain = audit.verify(session, anchor=anchor, rows=rows)
            return chain, state.replay(session, rows)
        finally:
            outer.rollback()


def test_concurrent_appends_leave_one_chain_and_a_clean_replay(written: Lab) -> None:
    chain, replay = _check(written.db_url)
    assert chain.ok, chain.problem
    assert replay.ok, replay.problems
    steps = WORKERS * PER_WORKER
    from keyadmin.store.db import get_engine

    with get_engine(written.db_url).connect() as conn:
        actions = Counter(conn.execute(text("SELECT action FROM ka_audit")).scalars())
    # the policy row, one enrolment per admin, one stepup.ok per finish; besides them only
    # log.skipped rows: a writer preempted between taking its seq and locking it (one
    # statement, microseconds apart) can find the seq filled, and retries with a new one
    skipped = actions.pop("log.skipped", 0)
    assert actions == Counter({"stepup.ok": steps, "enrol.approved": WORKERS,
                               "policy.new-version": 1})  # fmt: skip
    assert chain.rows_checked == 1 + WORKERS + steps + skipped
    assert replay.credentials_checked == WORKERS


@pytest.mark.parametrize(
    ("tamper", "words"),
    [
        ("UPDATE ka_audit SET subject = 'mallory' WHERE seq = 20", "row 20 was edited"),
        ("DELETE FROM ka_audit WHERE seq = 20", "row 20 is missing"),
        (
            "UPDATE ka_audit SET details = (SELECT details FROM ka_audit WHERE seq = 21) "
            "WHERE seq = 20",
            "row 20 was edited",
        ),
    ],
)
def test_tampering_in_a_concurrently_written_log_is_found(
    written: Lab, tamper: str, words: str
) -> None:
    chain, _replay = _check(written.db_url, tamper)
    assert not chain.ok and words in (chain.problem or ""), chain.problem


def test_a_row_inserted_into_a_concurrently_written_log_is_found(written: Lab) -> None:
    from keyadmin.store.db import get_engine

    with get_engine(written.db_url).connect() as conn:
        seq = int(conn.execute(text("SELECT seq FROM ka_audit_head")).scalar_one())
    insert = (
        "INSERT INTO ka_audit (seq, at, actor, action, subject, details, prev_hash, hash) "
        f"SELECT {seq + 1}, at, actor, action, subject, details, "
        "(SELECT hash FROM ka_audit_head), hash FROM ka_audit WHERE seq = 20"
    )
    chain, _ = _check(written.db_url, insert)
    assert not chain.ok and chain.first_bad_seq == seq + 1, chain.problem


def test_truncation_of_a_concurrently_written_log_is_found_against_its_anchor(
    written: Lab,
) -> None:
    from keyadmin.store.db import get_engine

    with get_engine(written.db_url).connect() as conn:
        seq, digest = conn.execute(text("SELECT seq, hash FROM ka_audit_head")).one()
    rewind = (
        f"DELETE FROM ka_audit WHERE seq > {seq - 3};"
        f"UPDATE ka_audit_head SET seq = {seq - 3}, "
        f"hash = (SELECT hash FROM ka_audit WHERE seq = {seq - 3})"
    )
    chain, _ = _check(written.db_url, rewind)
    assert chain.ok  # a consistent, shorter chain: only an anchor shows it
    chain, _ = _check(written.db_url, rewind, anchor=(int(seq), str(digest)))
    assert not chain.ok and "deleted from the end" in (chain.problem or "")
