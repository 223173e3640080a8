"""Shared fixtures: a fresh SOFTWARE key per test, opened through python-fido2's own HID code."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
SHARED_DATA = SHARED / "data"
IN_CI = bool(os.environ.get("CI"))
PIN = "4821-lab"


def require(condition: bool, why: str) -> None:
    """A test that needs a real component: skip locally, fail in CI (where it must be present)."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required component missing in CI: {why}")
    pytest.skip(why)


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    return tmp_path / "softkey.json"


@pytest.fixture
def softkey(key_path: Path):
    from keyadmin.sim.authenticator import SoftKey

    return SoftKey.create(key_path)


@pytest.fixture
def hid_device(softkey) -> Iterator[object]:
    from keyadmin.sim.hid import open_hid

    dev = open_hid(softkey)
    yield dev
    dev.close()


@pytest.fixture
def shared_data() -> Path:
    require(SHARED_DATA.is_dir(), f"../shared/data beside the checkout ({SHARED_DATA})")
    return SHARED_DATA


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One private PostgreSQL server for the whole run (fails in CI when it cannot start)."""
    from tests.support.postgres import PostgresUnavailable, PrivatePostgres

    try:
        import psycopg  # noqa: F401
    except ImportError:
        require(False, "psycopg is not installed (pip install 'keyadmin[postgres]')")
    # not under pytest's 0700 tmp tree: the server runs as the postgres user when we are root
    workdir = Path(tempfile.mkdtemp(prefix="keyadmin-pg-"))
    try:
        server = PrivatePostgres(workdir)
        server.start()
    except PostgresUnavailable as e:
        shutil.rmtree(workdir, ignore_errors=True)
        require(False, f"PostgreSQL cannot run here: {e}")
        raise
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def pg_url(postgres_server) -> str:
    """A fresh, empty database on the private server."""
    return postgres_server.create_database()  # type: ignore[attr-defined]
