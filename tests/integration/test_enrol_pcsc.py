"""keyadmin enrol over NFC: the installed CLI, the real pcscd + vpcd, the software key as a card,
a registry on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.cli import run
from tests.support.lab import PIN, make_lab

pytestmark = pytest.mark.pcsc


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return str(request.getfixturevalue("pg_url"))


def _enrol_over_nfc(pcsc_softkey: Any, lab: Any, user: str) -> Any:
    with pcsc_softkey.swapped(lab.key()) as card:
        args = lab.enrol_args(user, "--json")
        args[args.index("-d") + 1] = f"nfc:{card.reader_name}"
        out = run(*args, input=f"{PIN}\n")
        return out, len(card.softkey.state.credentials)


def test_enrolment_over_nfc_is_approved_and_stored(pcsc_softkey, tmp_path, db) -> None:
    lab = make_lab(tmp_path / "nfc", db)
    out, on_key = _enrol_over_nfc(pcsc_softkey, lab, "alice")
    assert out.code == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["approved"] is True and result["device"].startswith("nfc:")
    assert on_key == 1
    rows = lab.registry_rows()
    assert [(r["user"], r["credential_id"]) for r in rows] == [("alice", result["credential_id"])]


def test_refusal_over_nfc_removes_the_credential_from_the_card(pcsc_softkey, tmp_path, db) -> None:
    lab = make_lab(tmp_path / "nfc-be", db, key_options={"backup_eligible": True})
    out, on_key = _enrol_over_nfc(pcsc_softkey, lab, "alice")
    assert out.code == 3
    assert "authenticator.device_bound" in out.stderr
    assert on_key == 0
    assert lab.registry_rows() == []
