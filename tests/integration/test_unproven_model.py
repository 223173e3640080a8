"""A key that claims a clean model's AAGUID while its attestation certificate names none.

Two metadata models share one vendor root; one is marked ATTESTATION_KEY_COMPROMISE. A key
whose leaf certificate has no AAGUID extension writes the CLEAN model's AAGUID into authData.
The AAGUID in authData is self-asserted: the model is not proved, so enrolment is refused at
metadata.entry (and the credential is deleted from the key). The same key with the extension
is approved: the test shows both sides.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from keyadmin.mds.ingest import import_blob
from keyadmin.sim.authenticator import SoftKey
from keyadmin.store.mds_index import MdsIndex
from tests.e2e.cli import invoke
from tests.integration.test_audit_compromise import _payload
from tests.support.lab import PIN
from tests.unit.test_mds_support import TestPki

COMPROMISED = "6b657961-646d-4e00-8000-00000000000a"
CLEAN = "6b657961-646d-4e00-8000-00000000000c"

POLICY = """
[policy]
name = "unproven-model"
version = 1
description = "metadata-backed allowlist of two lab models"

[relying_party]
rp_id = "example.com"
origins = ["https://example.com"]

[attestation]
formats = ["packed"]
types = ["basic"]

[metadata]
required = true
freshness_grace_days = 7

[authenticators]
allow_aaguids = ["{a}", "{c}"]
attachment = "any"

[credential]
device_bound = true
user_verification = "required"
algorithms = ["ES256"]

[device]
pin_required = true
"""


def _setup(tmp_path: Path, faults: list[str]) -> tuple[str, Path, Path]:
    from fido2.ctap2 import ClientPin, Ctap2

    from keyadmin.sim.hid import open_hid

    db = f"sqlite:///{tmp_path / 'registry.db'}"
    state = tmp_path / "key.json"
    key = SoftKey.create(state, aaguid=CLEAN, faults=faults)
    ClientPin(Ctap2(open_hid(key))).set_pin(PIN)
    root = key.root_certificate_pem().encode()
    pki = TestPki.create()
    import_blob(
        pki.jws(_payload(1, {COMPROMISED: root, CLEAN: root}, {COMPROMISED})),
        index=MdsIndex(db),
        source="test-blob-1",
        source_kind="file",
        now=datetime.now(UTC),
        trust_roots=[pki.ca_pem(tmp_path)],
        allow_missing_crl=True,
    )
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY.format(a=COMPROMISED, c=CLEAN))
    return db, state, policy


def test_claimed_aaguid_without_certificate_extension_is_refused(tmp_path: Path) -> None:
    db, state, policy = _setup(tmp_path, ["no-cert-aaguid"])
    out = invoke(
        "enrol",
        "mallory",
        "--policy",
        str(policy),
        "-d",
        f"sim:{state}",
        "--db",
        db,
        input=f"{PIN}\n",
    )
    assert out.code == 3, out.stderr
    assert "metadata.entry" in out.stderr and "not proved" in out.stderr
    assert SoftKey.open(state).state.credentials == []


def test_the_same_key_naming_its_aaguid_is_approved(tmp_path: Path) -> None:
    db, state, policy = _setup(tmp_path, [])
    out = invoke(
        "enrol",
        "alice",
        "--policy",
        str(policy),
        "-d",
        f"sim:{state}",
        "--db",
        db,
        "--json",
        input=f"{PIN}\n",
    )
    assert out.code == 0, out.stderr
    result = json.loads(out.stdout)
    rules = {r["rule"]: r["outcome"] for r in result["reasons"]}
    assert rules["metadata.entry"] == "pass" and rules["metadata.status"] == "pass"
