"""keyadmin audit on a PostgreSQL registry: a model dropped from the allowlist, a raised
firmware floor, the minimum number of keys, and enforcement."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyadmin.flows.audit import audit
from keyadmin.policy.loader import load_policy
from keyadmin.policy.metadata import IndexMetadata
from keyadmin.store import registry
from keyadmin.store.db import transaction
from keyadmin.store.mds_index import MdsIndex
from tests.support.bulk import generate, lab_model, write_policy

pytestmark = pytest.mark.postgres

A = "6b657961-646d-4e00-8000-0000000000a1"
B = "6b657961-646d-4e00-8000-0000000000b2"


def test_policy_changes_flag_exactly_the_affected_credentials(pg_url, tmp_path: Path) -> None:
    a, b = lab_model(A), lab_model(B)
    ids = generate(pg_url, 30, [a, b], users=30, firmware={A: "5.4.3", B: "5.7.1"})
    by_model = {A: set(ids[0::2]), B: set(ids[1::2])}
    meta = IndexMetadata(MdsIndex(pg_url))

    def run(policy_path: Path, enforce: bool = False):
        return audit(
            registry_url=pg_url,
            policy=load_policy(policy_path),
            metadata=meta,
            actor="auditor",
            enforce=enforce,
        )

    same = run(write_policy(tmp_path, [a, b], name="both"))
    assert same.ok and same.credentials_checked == 30 and same.evidence_groups == 2

    # model B dropped from the allowlist (its root still trusted)
    dropped = run(write_policy(tmp_path, [a], extra_roots=(b.root_file(tmp_path),), name="only-a"))
    fails = [f for f in dropped.findings if f.severity == "fail"]
    assert {bytes.fromhex(f.subject) for f in fails} == by_model[B]
    assert {f.rule for f in fails} == {"authenticator.allowed"}

    # a firmware floor of 5.7.0 for model A: A's keys were enrolled at 5.4.3
    floor = run(
        write_policy(tmp_path, [a, b], firmware_minimum={A: "5.7.0", B: "5.7.0"}, name="floor")
    )
    fails = [f for f in floor.findings if f.severity == "fail"]
    assert {bytes.fromhex(f.subject) for f in fails} == by_model[A]
    assert {f.rule for f in fails} == {"device.firmware"}
    assert "5.4.3" in fails[0].detail and "5.7.0" in fails[0].detail

    # two keys per user: every user (one key each) falls short; no credential fails
    two = run(write_policy(tmp_path, [a, b], min_keys=2, name="two"))
    assert two.failed_credentials == 0
    assert {f.kind for f in two.findings if f.severity == "fail"} == {"user"}
    assert len([f for f in two.findings if f.kind == "user"]) == 30

    enforced = run(
        write_policy(tmp_path, [a], extra_roots=(b.root_file(tmp_path),), name="only-a-again"),
        enforce=True,
    )
    assert {bytes.fromhex(c) for c in enforced.quarantined} == by_model[B]
    with transaction(pg_url) as s:
        status = {bytes.fromhex(c.credential_id): c.status for c in registry.list_credentials(s)}
    assert {c for c, st in status.items() if st == "quarantined"} == by_model[B]
    assert {c for c, st in status.items() if st == "active"} == by_model[A]
