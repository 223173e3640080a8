"""The policy layer judges every real registration and every metadata model exactly as it did
before the evaluator was split into facts computed once and pure rules.

The expectations (tests/unit/data/policy_judgments.json) were recorded from the data by
``python -m tests.support.policy_judgments record`` on the evaluator before the split; here the
same judgments are recomputed and must match in decision, in each rule's outcome and in the
digest of every detail, subject and evidence. A registration added to ../shared/data without a
recorded judgment fails too: record it on a commit before the split, never from the code under
test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.policy_judgments import RECORDED, judgments
from tests.unit.test_policy_support import registry_url


@pytest.fixture(scope="module")
def computed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return judgments(registry_url(tmp_path_factory), Path(tmp_path_factory.mktemp("judgments")))


def test_every_judgment_is_recorded_and_nothing_recorded_is_missing(
    computed: dict[str, str],
) -> None:
    recorded = json.loads(RECORDED.read_text())
    assert sorted(set(computed) - set(recorded)) == []
    assert sorted(set(recorded) - set(computed)) == []
    # the recording covers every kind of judgment, with decisions both ways
    kinds = {key.split("/")[0] for key in recorded}
    assert kinds == {"registration", "mutated", "model", "models"}
    assert {v.split("|")[0] for v in recorded.values()} == {"allowed", "refused"}


def test_every_judgment_is_the_recorded_one(computed: dict[str, str]) -> None:
    recorded = json.loads(RECORDED.read_text())
    changed = {k: (recorded[k], v) for k, v in computed.items() if recorded.get(k) not in (None, v)}
    shown = dict(sorted(changed.items())[:20])
    assert changed == {}, f"{len(changed)} judgment(s) differ (recorded, now): {shown}"
