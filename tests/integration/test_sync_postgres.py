"""keyadmin sync against a real PostgreSQL server: registry and application in two databases."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from keyadmin.flows.sync import sync
from keyadmin.store import audit, registry
from keyadmin.store.appstore import load_mapping
from keyadmin.store.db import transaction
from tests.support.bulk import generate, lab_model

pytestmark = pytest.mark.postgres

AAGUID = "6b657961-646d-4e00-8000-736f66746b79"


@pytest.fixture(scope="module")
def model():
    return lab_model(AAGUID)


@pytest.fixture
def dbs(postgres_server, model):
    reg = postgres_server.create_database()
    app = postgres_server.create_database()
    ids = generate(reg, 40, [model], users=15)
    return reg, app, ids


def _rows(app: str, table: str = "webauthn_credentials") -> dict[bytes, dict]:
    eng = create_engine(app)
    try:
        with eng.connect() as c:
            return {
                bytes(r["credential_id"]): dict(r)
                for r in c.execute(text(f"SELECT *, xmin::text AS xmin FROM {table}")).mappings()
            }
    finally:
        eng.dispose()


def _exec(app: str, sql: str, **params) -> None:
    eng = create_engine(app)
    try:
        with eng.begin() as c:
            c.execute(text(sql), params)
    finally:
        eng.dispose()


def _insert_rogue(app: str, cred: bytes, created_at: datetime, *, sign_count: int) -> None:
    """A row the application added itself (keyadmin never approved it)."""
    _exec(
        app,
        "INSERT INTO webauthn_credentials (credential_id, user_id, public_key, sign_count, "
        "created_at) VALUES (:c, :u, :k, :n, :at)",
        c=cred,
        u=b"mallory",
        k=b"\xa1\x01\x02",
        n=sign_count,
        at=created_at,
    )


def _sync(reg: str, app: str, **kw):
    return sync(
        registry_url=reg,
        target_url=app,
        mapping=kw.pop("mapping", load_mapping(None)),
        actor="tester",
        **kw,
    )


def test_first_sync_writes_every_active_credential(dbs) -> None:
    reg, app, ids = dbs
    with pytest.raises(Exception, match="no table"):
        _sync(reg, app)
    r = _sync(reg, app, create_table=True)
    assert (r.full, r.examined, r.inserted, r.updated, r.removed) == (True, 40, 40, 0, 0)
    rows = _rows(app)
    assert set(rows) == set(ids)
    with transaction(reg) as s:
        creds = registry.list_credentials(s)
    for c in creds:
        row = rows[bytes.fromhex(c.credential_id)]
        assert bytes(row["public_key"]).hex() == c.public_key_cose
        assert bytes(row["user_id"]).hex() == c.user_handle
        assert row["sign_count"] == c.sign_count
        assert row["device_type"] == "singleDevice"
        assert row["backed_up"] is False
        assert row["transports"] == '["nfc","usb"]'


def test_resync_without_changes_writes_nothing(dbs) -> None:
    reg, app, _ = dbs
    _sync(reg, app, create_table=True)
    before = _rows(app)
    r = _sync(reg, app)
    assert (r.full, r.examined, r.app_writes) == (False, 0, 0)
    after = _rows(app)
    assert after == before  # same xmin on every row: PostgreSQL wrote no row version
    r = _sync(reg, app)
    assert r.app_writes == 0


def test_revocation_propagates_delete_and_disable(dbs, tmp_path: Path) -> None:
    reg, app, ids = dbs
    _sync(reg, app, create_table=True)
    with transaction(reg) as s:
        registry.change_status(s, ids[3].hex(), "revoke", reason="lost", actor="t")
        registry.change_status(s, ids[4].hex(), "suspend", reason="travel", actor="t")
    r = _sync(reg, app)
    assert (r.examined, r.removed, r.inserted, r.updated) == (2, 2, 0, 0)
    assert set(_rows(app)) == set(ids) - {ids[3], ids[4]}

    # the same registry into another table whose mapping disables instead of deleting
    mapping = tmp_path / "m.toml"
    mapping.write_text(
        '[table]\nname = "creds_disabling"\n'
        '[inactive]\naction = "disable"\ndisabled_column = "is_disabled"\n'
    )
    m = load_mapping(mapping)
    r = _sync(reg, app, mapping=m, create_table=True)
    assert (r.inserted, r.disabled) == (38, 0)
    with transaction(reg) as s:
        registry.change_status(s, ids[5].hex(), "quarantine", reason="audit", actor="t")
        registry.change_status(s, ids[4].hex(), "reinstate", reason="back", actor="t")
    r = _sync(reg, app, mapping=m)
    assert (r.inserted, r.disabled, r.removed) == (1, 1, 0)
    rows = _rows(app, "creds_disabling")
    assert rows[ids[5]]["is_disabled"] is True
    assert rows[ids[4]]["is_disabled"] is False
    assert ids[3] not in rows


def test_counter_advanced_by_the_application_is_pulled_back(dbs) -> None:
    reg, app, ids = dbs
    _sync(reg, app, create_table=True)
    used = datetime.now(UTC)
    _exec(
        app,
        "UPDATE webauthn_credentials SET sign_count = 42, last_used_at = :at "
        "WHERE credential_id = :cid",
        at=used,
        cid=ids[7],
    )
    r = _sync(reg, app)
    assert r.counters_pulled == 1 and r.app_writes == 0
    with transaction(reg) as s:
        c = registry.get_credential(s, ids[7].hex())
        entries = audit.entries(s, action="sync.counter-pulled")
        from keyadmin.store.models import CredentialRow

        row = s.get(CredentialRow, c.id)
        assert row.change_seq == entries[-1].seq
        assert audit.verify(s).ok
    assert c.sign_count == 42
    assert entries[-1].details["credentials"] == [{"credential": ids[7].hex(), "from": 0, "to": 42}]
    assert _rows(app)[ids[7]]["sign_count"] == 42
    # the pulled row is re-examined once, finds nothing to write, then the watermark settles
    r = _sync(reg, app)
    assert (r.app_writes, r.counters_pulled) == (0, 0)
    # the registry never lowers the application's counter either
    _exec(app, "UPDATE webauthn_credentials SET sign_count = 50 WHERE credential_id = :c", c=ids[7])
    with transaction(reg) as s:
        registry.change_status(s, ids[7].hex(), "suspend", reason="x", actor="t")
        registry.change_status(s, ids[7].hex(), "reinstate", reason="x", actor="t")
    r = _sync(reg, app, full=True)
    assert _rows(app)[ids[7]]["sign_count"] == 50
    assert r.counters_pulled == 1


def test_drift_is_reported_and_removed_only_with_prune(dbs) -> None:
    reg, app, ids = dbs
    _sync(reg, app, create_table=True)
    rogue = b"\x99" * 32
    _insert_rogue(app, rogue, datetime.now(UTC), sign_count=3)
    r = _sync(reg, app)
    assert r.drift_count == 1 and r.drift[0].credential_id == rogue.hex()
    assert rogue in _rows(app)
    again = _sync(reg, app)  # incremental: remembered drift is re-checked and still reported
    assert (again.full, again.drift_count, again.app_writes) == (False, 1, 0)
    dry = _sync(reg, app, prune=True, dry_run=True)
    assert dry.pruned == 1 and rogue in _rows(app)
    r = _sync(reg, app, prune=True)
    assert r.pruned == 1
    assert rogue not in _rows(app) and len(_rows(app)) == 40
    with transaction(reg) as s:
        run = audit.entries(s, action="sync.run")[-1]
    assert run.details["pruned_credentials"] == [rogue.hex()]


def test_concurrent_runs_are_serialised(dbs) -> None:
    import threading

    reg, app, ids = dbs
    results: list[object] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(_sync(reg, app, create_table=True))
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(r.inserted for r in results) == [0, 0, 40]  # type: ignore[attr-defined]
    assert set(_rows(app)) == set(ids)


def test_row_deleted_behind_keyadmins_back_is_restored_by_an_incremental_run(dbs) -> None:
    reg, app, ids = dbs
    _sync(reg, app, create_table=True)
    _exec(app, "DELETE FROM webauthn_credentials WHERE credential_id = :c", c=ids[3])
    r = _sync(reg, app)  # incremental: nothing changed in the registry
    assert r.full is True and r.inserted == 1 and r.app_writes == 1
    assert any("were expected" in n for n in r.notes)
    assert ids[3] in _rows(app) and len(_rows(app)) == 40
    again = _sync(reg, app)
    assert (again.full, again.app_writes) == (False, 0)


def test_row_added_with_an_old_created_at_is_found_as_drift(dbs) -> None:
    """A row whose created_at lies before the last run's mark (back-dated, or committed late
    by a transaction that began before the mark was read) is still found."""
    reg, app, _ = dbs
    _sync(reg, app, create_table=True)
    rogue = b"\x77" * 32
    _insert_rogue(app, rogue, datetime(2001, 1, 1, tzinfo=UTC), sign_count=1)
    r = _sync(reg, app)
    assert r.full is True and r.drift_count == 1 and r.drift[0].credential_id == rogue.hex()
    again = _sync(reg, app)  # remembered, re-checked, the census agrees again
    assert (again.full, again.drift_count, again.app_writes) == (False, 1, 0)
