"""Enrolment with vendor-facilitated enterprise attestation over NFC: the installed CLI, the
real pcscd + vpcd, the software key as a card; the serial stored and shown."""

from __future__ import annotations

import json

import pytest

from tests.e2e.cli import run
from tests.support.enterprise import make_ea_lab
from tests.support.lab import PIN

pytestmark = pytest.mark.pcsc


def test_vendor_facilitated_enrolment_over_nfc_stores_the_serial(pcsc_softkey, tmp_path) -> None:
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    lab = make_ea_lab(tmp_path / "nfc", db, key_rp_ids=["example.com"], serial=55501234)
    with pcsc_softkey.swapped(lab.key()) as card:
        args = lab.enrol_args("alice", "--json")
        args[args.index("-d") + 1] = f"nfc:{card.reader_name}"
        out = run(*args, input=f"{PIN}\n")
    assert out.code == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["device"].startswith("nfc:") and result["key_serial"] == "55501234"
    shown = run("creds", "show", str(result["registry_id"]), "--json", "--db", db)
    assert json.loads(shown.stdout)["key_serial"] == "55501234"


def test_vendor_facilitated_for_an_unlisted_rp_over_nfc_is_refused(pcsc_softkey, tmp_path) -> None:
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    lab = make_ea_lab(tmp_path / "nfc", db, key_rp_ids=["corp.example"])
    with pcsc_softkey.swapped(lab.key()) as card:
        args = lab.enrol_args("alice", "--json")
        args[args.index("-d") + 1] = f"nfc:{card.reader_name}"
        out = run(*args, input=f"{PIN}\n")
        on_card = len(card.softkey.state.credentials)
    assert out.code == 3 and "no epAtt" in out.stderr
    assert on_card == 0
