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


def test_counters_above_two_to_the_31_fit_the_created_table(dbs) -> None:
    """Found by review: --create-table made sign_count int4; WebAuthn counters are unsigned
    32-bit, and one above 2^31-1 made every PostgreSQL sync fail (with a raw driver error)."""
    reg, app, ids = dbs
    eng = create_engine(reg)
    try:
        with eng.begin() as c:
            c.execute(
                text("UPDATE ka_credential SET sign_count = 3000000000 WHERE credential_id = :c"),
                {"c": ids[0]},
            )
    finally:
        eng.dispose()
    r = _sync(reg, app, create_table=True)
    assert r.inserted == 40
    assert _rows(app)[ids[0]]["sign_count"] == 3_000_000_000


def test_a_sign_in_committed_during_a_sync_keeps_its_last_used_at(
    dbs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by review: only sign_count was guarded, so sync wrote the registry's older
    last_used_at over a sign-in the application committed meanwhile; the row then fell below
    the next run's mark and the counter it advanced was never pulled back."""
    from datetime import timedelta

    from sqlalchemy import update

    from keyadmin.store import appstore
    from keyadmin.store.models import CredentialRow

    reg, app, ids = dbs
    _sync(reg, app, create_table=True)
    now = datetime.now(UTC)
    _exec(
        app,
        "UPDATE webauthn_credentials SET last_used_at = :t WHERE credential_id = :c",
        t=now - timedelta(minutes=1),
        c=ids[2],
    )
    _sync(reg, app)
    with transaction(reg) as s:  # a step-up in keyadmin half an hour ago (counter 3)
        entry = audit.append(s, actor="t", action="stepup.ok", subject="u", details={})
        table = CredentialRow.__table__  # type: ignore[attr-defined]
        s.execute(
            update(table)
            .where(table.c.credential_id == ids[0])
            .values(sign_count=3, last_used_at=now - timedelta(minutes=30), change_seq=entry.seq)
        )
    real = appstore.AppStore.update

    def signed_in_meanwhile(self, conn, changes):  # type: ignore[no-untyped-def]
        _exec(
            app,
            "UPDATE webauthn_credentials SET sign_count = 10, last_used_at = :t "
            "WHERE credential_id = :c",
            t=now,
            c=ids[0],
        )
        monkeypatch.setattr(appstore.AppStore, "update", real)
        return real(self, conn, changes)

    monkeypatch.setattr(appstore.AppStore, "update", signed_in_meanwhile)
    _sync(reg, app)
    row = _rows(app)[ids[0]]
    assert row["sign_count"] == 10 and row["last_used_at"] == now
    pulled = _sync(reg, app)
    assert pulled.counters_pulled == 1
    with transaction(reg) as s:
        assert registry.get_credential(s, ids[0].hex()).sign_count == 10


@pytest.mark.parametrize("zone", ["Asia/Tokyo", "America/New_York"])
def test_naive_timestamp_columns_in_a_non_utc_session(postgres_server, model, zone) -> None:
    """Found by review: naive `timestamp` columns (UTC wall time) were compared with marks
    bound as timestamptz, which PostgreSQL shifts by the session time zone: east of UTC a
    sign-in after the mark was missed, west of it every quiet run became a full one."""
    from datetime import timedelta

    import psycopg

    reg = postgres_server.create_database()
    app = postgres_server.create_database()
    ids = generate(reg, 3, [model], users=2)
    name = app.rsplit("/", 1)[1]
    dsn = f"host=127.0.0.1 port={postgres_server.port} user=postgres dbname={name}"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"ALTER DATABASE {name} SET timezone = '{zone}'")
        c.execute(
            "CREATE TABLE webauthn_credentials (credential_id bytea PRIMARY KEY, user_id bytea "
            "NOT NULL, public_key bytea NOT NULL, sign_count bigint NOT NULL, transports text, "
            "device_type varchar(32), backed_up boolean, created_at timestamp, "
            "last_used_at timestamp)"
        )

    def sign_in(cid: bytes, count: int, at: datetime) -> None:  # naive UTC wall time
        _exec(
            app,
            "UPDATE webauthn_credentials SET sign_count = :n, last_used_at = :t "
            "WHERE credential_id = :c",
            n=count,
            t=at.replace(tzinfo=None),
            c=cid,
        )

    assert _sync(reg, app).inserted == 3
    now = datetime.now(UTC)
    sign_in(ids[0], 5, now - timedelta(minutes=2))
    assert _sync(reg, app).counters_pulled == 1
    quiet = _sync(reg, app)
    assert (quiet.full, quiet.app_writes) == (False, 0)
    sign_in(ids[1], 9, now)  # two minutes after the mark
    later = _sync(reg, app)
    assert (later.full, later.counters_pulled) == (False, 1)
    with transaction(reg) as s:
        assert registry.get_credential(s, ids[1].hex()).sign_count == 9


def test_a_row_deleted_while_a_sync_runs_is_found_by_the_next(
    dbs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by review: the saved count was taken at the end of the run, so a row the
    application deleted during the run was in neither the count nor the marks."""
    from keyadmin.store import appstore

    reg, app, ids = dbs
    _sync(reg, app, create_table=True)
    with transaction(reg) as s:  # something for the next run to write
        registry.change_status(s, ids[5].hex(), "suspend", reason="t", actor="t")
    real = appstore.AppStore.update

    def deleted_meanwhile(self, conn, changes):  # type: ignore[no-untyped-def]
        _exec(app, "DELETE FROM webauthn_credentials WHERE credential_id = :c", c=ids[3])
        monkeypatch.setattr(appstore.AppStore, "update", real)
        return real(self, conn, changes)

    monkeypatch.setattr(appstore.AppStore, "update", deleted_meanwhile)
    _sync(reg, app)
    assert ids[3] not in _rows(app)
    healed = _sync(reg, app)
    assert healed.full is True and healed.inserted == 1 and ids[3] in _rows(app)
    assert _sync(reg, app).full is False
