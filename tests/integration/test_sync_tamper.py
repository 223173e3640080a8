"""The application's database is less trusted than the registry: what a write there can and
cannot do through keyadmin sync and keyadmin audit --target. SQLite and real PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from keyadmin.cli.main import app
from keyadmin.flows.sync import sync
from keyadmin.store import audit, registry
from keyadmin.store.appstore import load_mapping
from keyadmin.store.db import transaction
from tests.support.bulk import generate, lab_model, write_policy

AAGUID = "6b657961-646d-4e00-8000-736f66746b79"
MAX_U32 = 2**32 - 1


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def urls(request, tmp_path: Path) -> tuple[str, str]:
    """(registry URL, application URL) on one kind of database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}", f"sqlite:///{tmp_path / 'app.db'}"
    server = request.getfixturevalue("postgres_server")
    return server.create_database(), server.create_database()


def _exec(url: str, sql: str, **params: object) -> None:
    eng = create_engine(url)
    try:
        with eng.begin() as c:
            c.execute(text(sql), params)
    finally:
        eng.dispose()


def _app_row(url: str, cid: bytes) -> dict:
    eng = create_engine(url)
    try:
        with eng.connect() as c:
            r = c.execute(
                text("SELECT * FROM webauthn_credentials WHERE credential_id = :c"), {"c": cid}
            )
            return dict(r.mappings().one())
    finally:
        eng.dispose()


def _sync(reg: str, app_url: str, **kw):  # type: ignore[no-untyped-def]
    return sync(registry_url=reg, target_url=app_url, mapping=load_mapping(None), actor="t", **kw)


def _cli(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args))


def _registry_count(reg: str, cid: bytes) -> int:
    with transaction(reg) as s:
        return registry.get_credential(s, cid.hex()).sign_count


def _log(reg: str, action: str) -> list:
    with transaction(reg) as s:
        assert audit.verify(s).ok
        return audit.entries(s, action=action)


# -- 1. a counter far above the registry's is tampering, never adopted --------------------------


def test_a_huge_counter_in_the_app_never_turns_a_genuine_step_up_into_a_clone(
    urls, tmp_path: Path
) -> None:
    from keyadmin.stepup import begin, finish
    from tests.integration.test_stepup_support import ACTION, assertion_for, make_lab, stored

    reg, app_url = urls
    lab = make_lab(tmp_path, reg)
    assert _sync(reg, app_url, create_table=True).inserted == 1
    cid = bytes.fromhex(stored(reg).credential_id)
    before = stored(reg).sign_count
    # one UPDATE in the application's database, made to look like a sign-in
    _exec(
        app_url,
        "UPDATE webauthn_credentials SET sign_count = :n, last_used_at = :t",
        n=MAX_U32,
        t=datetime.now(UTC),
    )
    r = _sync(reg, app_url)
    assert r.counters_pulled == 0
    assert [(t.credential_id, t.kind) for t in r.tampering] == [(cid.hex(), "counter-jump")]
    assert _registry_count(reg, cid) == before
    logged = _log(reg, "sync.tamper")
    assert logged[-1].details["tampering"][0]["credential"] == cid.hex()
    assert logged[-1].details["tampering"][0]["kind"] == "counter-jump"
    again = _sync(reg, app_url)  # incremental, the row untouched since: still reported
    assert (again.full, [t.kind for t in again.tampering]) == (False, ["counter-jump"])

    # a full run with 2^63-1: out of a WebAuthn counter's range, not adopted either
    _exec(app_url, "UPDATE webauthn_credentials SET sign_count = :n", n=2**63 - 1)
    full = _sync(reg, app_url, full=True)
    assert full.counters_pulled == 0
    assert [t.kind for t in full.tampering] == ["counter-invalid"]
    assert _registry_count(reg, cid) == before

    # the admin's next genuine step-up goes through; nothing was quarantined
    ch = begin(lab.db_url, lab.policy, user="alice", action=ACTION)
    done = finish(
        lab.db_url,
        lab.policy,
        challenge_id=ch.challenge_id,
        action=ACTION,
        response=assertion_for(lab.keys["alice"], ch),
    )
    assert done.counter > before
    assert stored(reg).status == "active"


def test_a_counter_adopted_within_the_threshold_never_quarantines_a_genuine_key(
    urls, tmp_path: Path
) -> None:
    """Attack: raise the application's counter by less than the jump threshold (+1000, and
    touch last_used_at) so sync adopts it; the genuine key's next step-up is below it. It is
    refused (the counter is below the adopted value) but not quarantined: the key counted
    past everything keyadmin verified itself. A real clone, below that, is still quarantined."""
    from keyadmin.stepup import CounterRegression, begin, finish
    from tests.integration.test_stepup_support import (
        ACTION,
        assertion_for,
        clone,
        make_lab,
        stored,
    )

    reg, app_url = urls
    lab = make_lab(tmp_path, reg)
    copy = clone(lab.keys["alice"], tmp_path / "copy.key")  # a clone, made before any use

    def step(key: Path):  # type: ignore[no-untyped-def]
        ch = begin(lab.db_url, lab.policy, user="alice", action=ACTION)
        return finish(
            lab.db_url, lab.policy, challenge_id=ch.challenge_id, action=ACTION,
            response=assertion_for(key, ch),
        )  # fmt: skip

    first = step(lab.keys["alice"])  # keyadmin verifies counter `first.counter` itself
    assert _sync(reg, app_url, create_table=True).inserted == 1
    _exec(
        app_url,
        "UPDATE webauthn_credentials SET sign_count = :n, last_used_at = :t",
        n=first.counter + 900,
        t=datetime.now(UTC),
    )
    assert _sync(reg, app_url).counters_pulled == 1  # within the threshold: adopted
    with pytest.raises(CounterRegression, match="not quarantined") as refused:
        step(lab.keys["alice"])
    assert refused.value.exit_code == 6 and refused.value.data["quarantined"] is False
    assert stored(reg).status == "active"
    with transaction(reg) as s:
        registry.set_counter(s, stored(reg).id, first.counter, reason="undo", actor="sec")
    assert step(lab.keys["alice"]).counter > first.counter  # repaired: the key works again
    with pytest.raises(CounterRegression, match="quarantined"):
        step(copy)  # the clone's counter is below what keyadmin verified: a clone
    assert stored(reg).status == "quarantined"


def test_counter_jump_threshold_comes_from_the_policy_and_cli_exits_3(urls, tmp_path: Path) -> None:
    reg, app_url = urls
    model = lab_model(AAGUID)
    ids = generate(reg, 3, [model], users=3)
    policy = write_policy(tmp_path, [model])
    policy.write_text(
        policy.read_text().replace(
            "max_attempts = 5\n", "max_attempts = 5\ncounter_jump_threshold = 10\n"
        )
    )
    _sync(reg, app_url, create_table=True)
    now = datetime.now(UTC)
    _exec(
        app_url,
        "UPDATE webauthn_credentials SET sign_count = 8, last_used_at = :t "
        "WHERE credential_id = :c",
        t=now,
        c=ids[0],
    )
    _exec(
        app_url,
        "UPDATE webauthn_credentials SET sign_count = 50, last_used_at = :t "
        "WHERE credential_id = :c",
        t=now,
        c=ids[1],
    )
    out = _cli("sync", "--target", app_url, "--db", reg, "--policy", str(policy), "--json")
    assert out.exit_code == 3, out.output
    result = json.loads(out.stdout)
    assert result["counters_pulled"] == 1
    assert [(t["credential_id"], t["kind"]) for t in result["tampering"]] == [
        (ids[1].hex(), "counter-jump")
    ]
    assert "tamper" in out.stderr
    assert (_registry_count(reg, ids[0]), _registry_count(reg, ids[1])) == (8, 0)


# -- 2. keyadmin creds set-counter ---------------------------------------------------------------


def test_set_counter_repairs_on_purpose_and_is_logged(tmp_path: Path) -> None:
    reg = f"sqlite:///{tmp_path / 'registry.db'}"
    ids = generate(reg, 2, [lab_model(AAGUID)], users=2)
    ref = ids[0].hex()[:16]
    for bad in ("-1", str(MAX_U32 + 1), "ten"):
        out = _cli("creds", "set-counter", ref, bad, "--reason", "x", "--force", "--db", reg)
        assert out.exit_code == 2, (bad, out.output)
    no = CliRunner().invoke(
        app, ["creds", "set-counter", ref, "7", "--reason", "x", "--db", reg], input="n\n"
    )
    assert no.exit_code != 0 and _registry_count(reg, ids[0]) == 0
    out = _cli(
        "creds",
        "set-counter",
        ref,
        "41",
        "--reason",
        "app db restored",
        "--force",
        "--db",
        reg,
        "--json",
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["sign_count"] == 41
    assert _registry_count(reg, ids[0]) == 41
    entry = _log(reg, "credential.set-counter")[-1]
    assert {k: entry.details[k] for k in ("credential", "from", "to", "reason")} == {
        "credential": ids[0].hex(),
        "from": 0,
        "to": 41,
        "reason": "app db restored",
    }
    assert entry.actor
    yes = CliRunner().invoke(
        app, ["creds", "set-counter", ref, "5", "--reason", "back", "--db", reg], input="y\n"
    )
    assert yes.exit_code == 0, yes.output
    assert _registry_count(reg, ids[0]) == 5 and _registry_count(reg, ids[1]) == 0


# -- 3. substituted rows -------------------------------------------------------------------------


def test_substituted_key_or_user_is_tampering_for_full_sync_and_audit(urls, tmp_path: Path) -> None:
    reg, app_url = urls
    model = lab_model(AAGUID)
    ids = generate(reg, 4, [model], users=4)
    policy = write_policy(tmp_path, [model])
    _sync(reg, app_url, create_table=True)
    original = _app_row(app_url, ids[0])
    _exec(
        app_url,
        "UPDATE webauthn_credentials SET public_key = :k WHERE credential_id = :c",
        k=b"\xa5attacker's key",
        c=ids[0],
    )
    _exec(
        app_url,
        "UPDATE webauthn_credentials SET user_id = :u WHERE credential_id = :c",
        u=b"mallory",
        c=ids[1],
    )

    out = _cli("audit", "--policy", str(policy), "--db", reg, "--target", app_url, "--json")
    assert out.exit_code == 3, out.output
    tampered = {
        (f["subject"], f["rule"])
        for f in json.loads(out.stdout)["findings"]
        if f["kind"] == "tamper"
    }
    assert tampered == {
        (ids[0].hex(), "sync.tampered.public-key"),
        (ids[1].hex(), "sync.tampered.user"),
    }

    enforced = _cli(
        "audit", "--policy", str(policy), "--db", reg, "--target", app_url, "--enforce", "--json"
    )
    assert enforced.exit_code == 3 and json.loads(enforced.stdout)["quarantined"] == []
    with transaction(reg) as s:  # tampering in the application never quarantines
        assert {c.status for c in registry.list_credentials(s)} == {"active"}

    out = _cli("sync", "--target", app_url, "--db", reg, "--full", "--json")
    assert out.exit_code == 3, out.output
    r = json.loads(out.stdout)
    assert r["updated"] == 0 and r["repaired"] == 2
    assert {(t["credential_id"], t["kind"]) for t in r["tampering"]} == {
        (ids[0].hex(), "public-key"),
        (ids[1].hex(), "user"),
    }
    assert bytes(_app_row(app_url, ids[0])["public_key"]) == bytes(original["public_key"])
    assert bytes(_app_row(app_url, ids[1])["user_id"]) != b"mallory"
    assert len(_log(reg, "sync.tamper")[-1].details["tampering"]) == 2
    again = _cli("audit", "--policy", str(policy), "--db", reg, "--target", app_url, "--json")
    assert again.exit_code == 0, again.output


def test_incremental_sync_sees_a_substitution_in_a_row_the_app_used(urls) -> None:
    reg, app_url = urls
    ids = generate(reg, 3, [lab_model(AAGUID)], users=3)
    _sync(reg, app_url, create_table=True)
    _exec(
        app_url,
        "UPDATE webauthn_credentials SET public_key = :k, last_used_at = :t "
        "WHERE credential_id = :c",
        k=b"\xa5other",
        t=datetime.now(UTC),
        c=ids[2],
    )
    r = _sync(reg, app_url)
    assert r.full is False
    assert [(t.credential_id, t.kind) for t in r.tampering] == [(ids[2].hex(), "public-key")]
    assert r.updated == 0 and r.repaired == 1
    assert bytes(_app_row(app_url, ids[2])["public_key"]) != b"\xa5other"


def test_a_counter_rolled_back_in_the_app_is_tampering_and_raised_again(urls) -> None:
    reg, app_url = urls
    ids = generate(reg, 2, [lab_model(AAGUID)], users=2)
    out = _cli("creds", "set-counter", ids[0].hex(), "10", "--reason", "t", "--force", "--db", reg)
    assert out.exit_code == 0, out.output
    _sync(reg, app_url, create_table=True)
    assert _app_row(app_url, ids[0])["sign_count"] == 10
    _exec(
        app_url, "UPDATE webauthn_credentials SET sign_count = 3 WHERE credential_id = :c", c=ids[0]
    )
    r = _sync(reg, app_url, full=True)
    assert [(t.credential_id, t.kind) for t in r.tampering] == [(ids[0].hex(), "counter-rollback")]
    assert _app_row(app_url, ids[0])["sign_count"] == 10


# -- 4. a row whose counter is not a counter (issue 19, item 4) -----------------------------------


def test_a_row_with_a_non_numeric_counter_is_drift_and_revocations_still_go_out(
    tmp_path: Path,
) -> None:
    import sqlite3

    reg = f"sqlite:///{tmp_path / 'registry.db'}"
    ids = generate(reg, 3, [lab_model(AAGUID)], users=3)
    app_url = f"sqlite:///{tmp_path / 'app.db'}"
    _sync(reg, app_url, create_table=True)
    con = sqlite3.connect(tmp_path / "app.db")
    for cid, count in ((b"\x01" * 32, "lots"), (b"\x02" * 32, 2.0**64), (b"\x03" * 32, -4)):
        con.execute(
            "INSERT INTO webauthn_credentials (credential_id, user_id, public_key, sign_count, "
            "created_at) VALUES (?, ?, ?, ?, ?)",
            (cid, b"mallory", b"\xa1", count, datetime.now(UTC).isoformat(" ")),
        )
    con.commit()
    con.close()
    with transaction(reg) as s:
        registry.change_status(s, ids[1].hex(), "revoke", reason="lost", actor="t")
    out = _cli("sync", "--target", app_url, "--db", reg, "--json")
    assert out.exit_code == 0, out.output
    r = json.loads(out.stdout)
    assert r["removed"] == 1 and r["drift_count"] == 3
    assert {d["credential_id"] for d in r["drift"]} == {"01" * 32, "02" * 32, "03" * 32}
    con = sqlite3.connect(tmp_path / "app.db")
    left = {bytes(c) for (c,) in con.execute("SELECT credential_id FROM webauthn_credentials")}
    con.close()
    assert ids[1] not in left and ids[0] in left
    audit_out = _cli(
        "audit",
        "--policy",
        str(write_policy(tmp_path, [lab_model(AAGUID)])),
        "--db",
        reg,
        "--target",
        app_url,
        "--json",
    )
    assert audit_out.exit_code == 3, audit_out.output  # drift fails the audit, no traceback


@pytest.mark.postgres
def test_a_text_counter_column_with_garbage_is_drift_on_postgres(postgres_server) -> None:
    reg, app_url = postgres_server.create_database(), postgres_server.create_database()
    ids = generate(reg, 3, [lab_model(AAGUID)], users=3)
    _exec(
        app_url,
        "CREATE TABLE webauthn_credentials (credential_id bytea PRIMARY KEY, user_id bytea "
        "NOT NULL, public_key bytea NOT NULL, sign_count text NOT NULL, transports text, "
        "device_type varchar(32), backed_up boolean, created_at timestamptz, "
        "last_used_at timestamptz)",
    )
    assert _sync(reg, app_url).inserted == 3
    _exec(
        app_url,
        "INSERT INTO webauthn_credentials (credential_id, user_id, public_key, "
        "sign_count, created_at) VALUES (:c, 'm', 'k', 'NaN', now())",
        c=b"\x04" * 32,
    )
    with transaction(reg) as s:
        registry.change_status(s, ids[2].hex(), "revoke", reason="lost", actor="t")
    r = _sync(reg, app_url)
    assert r.removed == 1 and r.drift_count == 1 and r.drift[0].credential_id == "04" * 32
