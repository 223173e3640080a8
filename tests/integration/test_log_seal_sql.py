"""The log's seal runs in the PostgreSQL server (migration 0006): what that must keep, on a
real server.

* ``ka_audit_row_hash`` (SQL) computes exactly ``audit.row_hash`` (Python) on generated rows:
  every escape JSON has (quotes, backslashes, control characters), text beyond ASCII and
  beyond the BMP, a missing subject, times to the microsecond in any zone;
* a server whose hash function was replaced: the step-up is stored but not acknowledged, and
  ``log verify`` names the row;
* COMMIT is sent in the same round trip as the write, so the write itself must refuse: a
  write whose challenge was taken, or whose counter moved, while it waited on the row is
  refused as a whole (no counter change, no ``stepup.ok`` row, the challenge not marked
  ``ok``);
* a server whose ``ka_refuse`` was replaced (a guard that does not hold no longer raises):
  the step-up is not acknowledged.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from keyadmin.store.db import DatabaseError
from tests.integration.test_log_seal import (
    _counter,
    _finish_in_thread,
    _prepared,
    _scalar,
    _verify,
)
from tests.integration.test_stepup_support import ACTION, Lab, make_lab

pytestmark = pytest.mark.postgres

_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=40,
) | st.sampled_from(['"', "\\", "\n\r\t\b\f", "\x01\x1f\x7f", "\u2028\u2029", "é😀", "</a>"])


@pytest.fixture(scope="module")
def pg_conn(postgres_server: Any) -> Any:
    import psycopg

    from keyadmin.store.db import get_engine

    url = postgres_server.create_database()
    get_engine(url)  # migrated
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


@settings(max_examples=300, deadline=None)
@given(
    prev=st.sampled_from(["0" * 64, "f" * 64, "a1" * 32]),
    seq=st.integers(min_value=1, max_value=2**31 - 1),
    at=st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
    zone=st.integers(min_value=-12 * 60, max_value=14 * 60),
    actor=_TEXT,
    action=_TEXT,
    subject=st.none() | _TEXT,
    details=_TEXT,
)
def test_the_servers_row_hash_is_pythons(
    pg_conn: Any,
    prev: str,
    seq: int,
    at: datetime,
    zone: int,
    actor: str,
    action: str,
    subject: str | None,
    details: str,
) -> None:
    from keyadmin.store import audit

    local = at.astimezone(timezone(timedelta(minutes=zone)))  # the same instant, another zone
    (server,) = pg_conn.execute(
        "SELECT ka_audit_row_hash(%s, %s, %s, %s, %s, %s, %s)",
        (prev, seq, local, actor, action, subject, details),
    ).fetchone()
    assert server == audit.row_hash(prev, seq, at, actor, action, subject, details)


TAKE = "UPDATE ka_challenge SET used_at = now(), outcome = 'ok' WHERE id = %(id)s"


@pytest.fixture
def lab(tmp_path: Path, pg_url: str) -> Lab:
    return make_lab(tmp_path, pg_url, users=("alice", "bob"))


def _finish(lab: Lab, job: tuple[str, Any]) -> Any:
    from keyadmin.stepup import finish

    return finish(lab.db_url, lab.policy, challenge_id=job[0], action=ACTION, response=job[1])


def _execute(url: str, sql: str) -> None:
    from keyadmin.store.db import get_engine

    with get_engine(url).begin() as conn:
        conn.execute(text(sql))


def test_a_replaced_hash_function_is_caught_by_the_step_up_and_by_log_verify(lab: Lab) -> None:
    _finish(lab, _prepared(lab, "alice"))  # a good row first
    _execute(
        lab.db_url,
        "CREATE OR REPLACE FUNCTION ka_audit_row_hash(p_prev text, p_seq integer, "
        "p_at timestamptz, p_actor text, p_action text, p_subject text, p_details text) "
        "RETURNS text LANGUAGE sql STABLE AS $$ SELECT repeat('0', 64) $$",
    )
    before = _counter(lab, "bob")
    with pytest.raises(DatabaseError) as caught:
        _finish(lab, _prepared(lab, "bob"))
    assert "was changed before it was sealed" in str(caught.value), caught.value
    assert _counter(lab, "bob") > before  # stored (committed before the seal), not acknowledged
    chain, _ = _verify(lab.db_url)
    assert not chain.ok and "edited" in (chain.problem or ""), chain


def _lose_a_race(lab: Lab, job: tuple[str, Any], winner_sql: str, table: str) -> Any:
    """finish() whose write finds its guard broken: another transaction (``winner_sql``)
    changes the row the finish has read and then waits on; what finish raised."""
    import threading
    import time

    import psycopg

    dsn = lab.db_url.replace("postgresql+psycopg://", "postgresql://")
    out: list[Any] = []
    with psycopg.connect(dsn) as winner, psycopg.connect(dsn, autocommit=True) as admin:
        winner.execute(winner_sql, {"id": job[0]})

        def run() -> None:
            try:
                out.append(_finish(lab, job))
            except Exception as e:  # noqa: BLE001 - asserted on below
                out.append(e)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        deadline, waiting = time.monotonic() + 20, None
        while time.monotonic() < deadline and waiting is None:
            waiting = admin.execute(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE %s",
                (f"%{table}%",),
            ).fetchone()
            time.sleep(0.02)
        winner.commit()  # the waiting write's guard no longer holds
        assert waiting is not None, f"the finish's write never waited on {table}"
        t.join(20)
    assert len(out) == 1, out
    return out[0]


def test_a_write_whose_challenge_was_taken_meanwhile_is_refused(lab: Lab) -> None:
    from keyadmin.stepup.errors import ChallengeRefused

    before = _counter(lab, "bob")
    assert isinstance(_lose_a_race(lab, _prepared(lab, "bob"), TAKE, "ka_challenge"),
                      ChallengeRefused)  # fmt: skip
    assert _counter(lab, "bob") == before


def test_a_replaced_refusal_function_fails_closed(lab: Lab) -> None:
    _execute(
        lab.db_url,
        "CREATE OR REPLACE FUNCTION ka_refuse(p_reason text) RETURNS integer "
        "LANGUAGE sql VOLATILE AS $$ SELECT 0 $$",
    )
    before = _counter(lab, "bob")
    error = _lose_a_race(lab, _prepared(lab, "bob"), TAKE, "ka_challenge")
    assert isinstance(error, DatabaseError) and "ka_refuse was changed" in str(error), error
    assert _counter(lab, "bob") == before


def test_a_write_refused_by_its_counter_guard_leaves_no_half_step_up(lab: Lab) -> None:
    """COMMIT goes out with the write: the challenge taken in the same statement must not be
    committed as used by an accepted step-up when the counter guard refuses."""
    from keyadmin.stepup.errors import CounterRegression

    _finish(lab, _prepared(lab, "bob"))
    job = _prepared(lab, "bob")
    rows = _scalar(lab.db_url, "SELECT count(*) FROM ka_audit WHERE action = 'stepup.ok'")
    bump = "UPDATE ka_credential SET sign_count = sign_count + 1000"  # a faster rival
    error = _lose_a_race(lab, job, bump, "ka_credential")
    assert isinstance(error, CounterRegression), error
    assert _scalar(lab.db_url, "SELECT count(*) FROM ka_audit WHERE action = 'stepup.ok'") == rows
    outcome = _scalar(lab.db_url, "SELECT outcome FROM ka_challenge WHERE id = :id", id=job[0])
    assert outcome is not None and outcome != "ok", outcome


@pytest.mark.parametrize(
    "body",
    [
        "SELECT 0, '', NULL::integer, NULL::text, NULL::text",  # a seal that seals nothing
        "SELECT NULL::integer, NULL::text, NULL::integer, NULL::text, NULL::text",  # no head
    ],
)
def test_a_replaced_seal_function_fails_closed(lab: Lab, body: str) -> None:
    _execute(
        lab.db_url,
        "CREATE OR REPLACE FUNCTION ka_audit_seal(p_batch integer, p_lazy boolean, "
        "p_mine integer, p_lock_class integer, p_skipped_details text, OUT head_seq integer, "
        "OUT head_hash text, OUT waiting_on integer, OUT mine_prev text, OUT mine_hash text) "
        f"LANGUAGE sql VOLATILE AS $$ {body} $$",
    )
    before = _counter(lab, "bob")
    with pytest.raises(DatabaseError) as caught:
        _finish(lab, _prepared(lab, "bob"))
    assert "the step-up is stored" in str(caught.value), caught.value
    assert "ka_audit_seal was changed" in str(caught.value), caught.value
    assert _counter(lab, "bob") > before
    chain, _ = _verify(lab.db_url)
    assert chain.ok and chain.unsealed == 1, chain  # pending, said to be


def _waiting_on(admin: Any, event: str) -> bool:
    """Whether a session of this database waits on a lock of kind ``event``."""
    row = admin.execute(
        "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND wait_event = %s",
        (event,),
    ).fetchone()
    return row is not None


def test_a_write_waiting_on_its_credential_holds_its_seq(lab: Lab) -> None:
    """A step-up whose write waits on its credential's row (a rival transaction holds it)
    has taken its seq already: while it waits, another step-up's seal must stop before that
    seq and wait, not fill it as rolled back (a ``log.skipped`` row for a write that then
    commits under a new seq)."""
    import time

    import psycopg

    dsn = lab.db_url.replace("postgresql+psycopg://", "postgresql://")
    bob, alice = _prepared(lab, "bob"), _prepared(lab, "alice")
    with psycopg.connect(dsn) as rival, psycopg.connect(dsn, autocommit=True) as admin:
        rival.execute(  # holds bob's credential row; leaves his counter as it is
            "UPDATE ka_credential SET last_used_at = last_used_at WHERE user_id = "
            "(SELECT id FROM ka_user WHERE name = 'bob')"
        )
        bob_thread, bob_out = _finish_in_thread(lab, bob)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (
            bob_waits := _waiting_on(admin, "transactionid")
        ):
            time.sleep(0.02)
        alice_thread, alice_out = _finish_in_thread(lab, alice)
        deadline = time.monotonic() + 5  # alice: done, or waiting for bob's seq
        while (
            time.monotonic() < deadline
            and not alice_out
            and not (alice_waits := _waiting_on(admin, "advisory"))
        ):
            time.sleep(0.02)
        rival.commit()
        bob_thread.join(30)
        alice_thread.join(30)
    assert bob_waits, "bob's write never waited on his credential's row"
    assert "result" in bob_out and "result" in alice_out, (bob_out, alice_out)
    skipped = _scalar(lab.db_url, "SELECT count(*) FROM ka_audit WHERE action = 'log.skipped'")
    assert skipped == 0, "a seq still being written was filled as rolled back"
    assert alice_waits, "alice's step-up did not wait for the seq before hers"
    chain, _ = _verify(lab.db_url)
    assert chain.ok, chain.problem
