"""A sync killed (SIGKILL) at random moments leaves the application's table exactly as it was
before or after the run, never in between; the next run converges. Real PostgreSQL, 10,000
credentials, the real sync flow in a child process."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from keyadmin.flows.sync import sync
from keyadmin.store.appstore import load_mapping
from keyadmin.store.db import transaction
from tests.support import estate
from tests.support.bulk import generate, lab_model

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
DRIVER = (
    "import sys\n"
    "from keyadmin.flows.sync import sync\n"
    "from keyadmin.store.appstore import load_mapping\n"
    "r = sync(registry_url=sys.argv[1], target_url=sys.argv[2], mapping=load_mapping(None),\n"
    "         actor='kill-test', create_table=True)\n"
    "print('done', r.inserted, r.removed, flush=True)\n"
)


def _state(app: str) -> str:
    """A digest of the whole table (credential ids with counters), '' when it does not exist."""
    eng = create_engine(app)
    try:
        with eng.connect() as c:
            exists = c.execute(text("SELECT to_regclass('webauthn_credentials')")).scalar()
            if exists is None:
                return ""
            rows = c.execute(
                text(
                    "SELECT encode(credential_id, 'hex') || ':' || sign_count "
                    "FROM webauthn_credentials ORDER BY 1"
                )
            ).scalars()
            return hashlib.sha256("\n".join(rows).encode()).hexdigest()
    finally:
        eng.dispose()


def _expected(ids: list[bytes], gone: set[bytes]) -> str:
    rows = sorted(f"{c.hex()}:0" for c in ids if c not in gone)
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


def _kill_during_sync(reg: str, app: str, delay: float) -> bool:
    """Start the sync, SIGKILL it after ``delay`` s; True when it was killed before finishing."""
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, reg, app],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    time.sleep(delay)
    finished = proc.poll() is not None
    if not finished:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()  # type: ignore[union-attr]
    proc.stderr.close()  # type: ignore[union-attr]
    return not finished


def test_sigkill_leaves_before_or_after_and_next_run_converges(postgres_server) -> None:
    reg = postgres_server.create_database()
    app = postgres_server.create_database()
    ids = generate(reg, 10_000, [lab_model("6b657961-646d-4e00-8000-736f66746b79")], users=4000)
    rng = random.Random(int(os.environ.get("KEYADMIN_KILL_SEED", "20261122")))
    gone: set[bytes] = set()
    outcomes = []
    for round_no in range(4):
        before = _state(app)
        if round_no:
            # a change set for this round: revoke 1,500 more credentials
            batch = rng.sample([c for c in ids if c not in gone], 1500)
            with transaction(reg) as s:
                estate.bulk_change_status(s, batch, "revoke", reason="kill test", actor="t")
            gone |= set(batch)
        after = _expected(ids, gone)
        assert before != after
        for _ in range(2):
            killed = _kill_during_sync(reg, app, rng.uniform(0.3, 3.5))
            now = _state(app)
            assert now in (before, after), f"round {round_no}: the table is half-written"
            outcomes.append((round_no, killed, "after" if now == after else "before"))
            if now == after:
                break
        r = sync(
            registry_url=reg,
            target_url=app,
            mapping=load_mapping(None),
            actor="t",
            create_table=True,
        )
        assert _state(app) == after, f"round {round_no} did not converge ({r})"
        again = sync(registry_url=reg, target_url=app, mapping=load_mapping(None), actor="t")
        assert again.app_writes == 0
    # the random points must really have interrupted runs (killed before commit at least once)
    assert any(killed and state == "before" for _, killed, state in outcomes), outcomes
