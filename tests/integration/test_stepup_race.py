"""The same valid assertion submitted at once by 16 threads and by 16 processes, against
SQLite and a real PostgreSQL server, round after round: exactly one is accepted, and the
stored counter never goes down."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_stepup_support import ACTION, assertion_for, make_lab, stored

WORKERS = 16
THREAD_ROUNDS = 10
PROCESS_ROUNDS = 5

_policies: dict[str, Any] = {}


def _submit(job: tuple[str, str, str, str, dict[str, Any], float]) -> str:
    """One submission (runs in a spawned process): wait for the common start, then finish."""
    db_url, policy_path, challenge_id, action, response, start_at = job
    from keyadmin.policy.loader import load_policy
    from keyadmin.stepup import finish

    policy = _policies.get(policy_path)
    if policy is None:
        policy = _policies[policy_path] = load_policy(policy_path)
    time.sleep(max(0.0, start_at - time.time()))
    return _outcome(
        lambda: finish(db_url, policy, challenge_id=challenge_id, action=action, response=response)
    )


def _warm(_: int) -> int:
    import keyadmin.stepup  # noqa: F401
    import keyadmin.store.stepup  # noqa: F401

    return multiprocessing.current_process().pid or 0


def _outcome(call: Any) -> str:
    from keyadmin.errors import KeyadminError

    try:
        call()
        return "ok"
    except KeyadminError as e:
        return type(e).__name__


@pytest.fixture(scope="module")
def pool() -> Iterator[Any]:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(WORKERS) as p:
        pids = set(p.map(_warm, range(WORKERS * 2), chunksize=1))
        assert len(pids) >= 2
        yield p


def _race(db_url: str, tmp_path: Path, pool: Any) -> None:
    from keyadmin.stepup import begin

    lab = make_lab(tmp_path, db_url)
    last = stored(db_url).sign_count
    seen: list[int] = [last]
    results: Counter[str] = Counter()

    def one_round(kind: str) -> None:
        nonlocal last
        ch = begin(db_url, lab.policy, user="alice", action=ACTION)
        response = assertion_for(lab.keys["alice"], ch).to_json()
        if kind == "threads":
            barrier = threading.Barrier(WORKERS)
            outcomes: list[str] = []
            lock = threading.Lock()

            def worker() -> None:
                barrier.wait()
                out = _outcome(
                    lambda: __import__("keyadmin.stepup", fromlist=["finish"]).finish(
                        db_url,
                        lab.policy,
                        challenge_id=ch.challenge_id,
                        action=ACTION,
                        response=response,
                    )
                )
                with lock:
                    outcomes.append(out)

            threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        else:
            start_at = time.time() + 0.3
            job = (db_url, str(lab.policy_path), ch.challenge_id, ACTION, response, start_at)
            outcomes = pool.map(_submit, [job] * WORKERS, chunksize=1)
        tally = Counter(outcomes)
        results.update(tally)
        assert len(outcomes) == WORKERS
        assert tally["ok"] == 1, tally
        assert set(tally) <= {"ok", "ChallengeRefused"}, tally
        cred = stored(db_url)
        assert cred.status == "active"
        assert cred.sign_count > last  # strictly up, by exactly the winner's counter
        assert cred.sign_count == int.from_bytes(
            __import__("base64").urlsafe_b64decode(
                response["response"]["authenticatorData"] + "=="
            )[33:37],
            "big",
        )
        last = cred.sign_count
        seen.append(last)

    for _ in range(THREAD_ROUNDS):
        one_round("threads")
    for _ in range(PROCESS_ROUNDS):
        one_round("processes")
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    rounds = THREAD_ROUNDS + PROCESS_ROUNDS
    assert results["ok"] == rounds
    assert results["ChallengeRefused"] == rounds * (WORKERS - 1)

    from keyadmin.store import audit
    from keyadmin.store import stepup as store
    from keyadmin.store.db import transaction

    log = store.stepup_log(db_url)
    assert sum(1 for e in log if e.action == "stepup.ok") == rounds
    assert sum(1 for e in log if e.action == "stepup.refused") == rounds * (WORKERS - 1)
    with transaction(db_url) as s:
        assert audit.verify(s).ok


def test_race_sqlite(tmp_path: Path, pool: Any) -> None:
    _race(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path, pool)


@pytest.mark.postgres
def test_race_postgres(pg_url: str, tmp_path: Path, pool: Any) -> None:
    _race(pg_url, tmp_path, pool)
