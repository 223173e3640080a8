"""The grouped audit (one evaluation per evidence group) finds exactly what the per-credential
audit (``deep=True``) finds, for random estates and random policies.

Each estate is a base registration and variants that differ from it in one thing a rule may
read: the model (AAGUID, chain), the flags byte (UP, UV, BE, BS), the rpIdHash, or the client
data (origin, crossOrigin, topOrigin, type, a challenge that is not base64url). Every
registration is real: its own P-256 key and a packed statement signed by a lab model's
attestation key (tests/support/bulk.py), stored in a real SQLite registry. A grouping key
that forgot any of these would let a representative's verdict stand for a member that the
policy judges differently, and this test would fail.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyadmin.flows.audit import audit
from keyadmin.policy.loader import load_policy
from keyadmin.store.db import transaction
from tests.support.bulk import (
    ORIGIN,
    LabModel,
    lab_model,
    new_credential,
    registration,
    write_policy,
)
from tests.support.estate import bulk_add_credentials

AAGUIDS = ("6b657961-646d-4e00-8000-0000000000a1", "6b657961-646d-4e00-8000-0000000000a2")
EVIL = "https://evil.example"

# the options of each dimension; index 0 is the ordinary value
FLAGS = (0x45, 0x41, 0x5D, 0x4D, 0x40)  # UP|UV|AT, UP|AT, +BE|BS, +BE, AT only (UP=0)
RP_IDS = ("example.com", "evil.example")
CLIENT: tuple[dict[str, Any], ...] = (
    {},
    {"origin": EVIL},
    {"crossOrigin": True},
    {"topOrigin": "https://top.example"},
    {"type": "webauthn.get"},
    {"challenge": "not base64url!"},  # malformed: refused by the parser
)
DIMENSIONS = {"model": len(AAGUIDS), "flags": len(FLAGS), "rp": len(RP_IDS), "client": len(CLIENT)}


@dataclass(frozen=True)
class Spec:
    model: int = 0
    flags: int = 0
    rp: int = 0
    client: int = 0

    def vary(self, dimension: str, option: int) -> Spec:
        values = {**self.__dict__, dimension: option % DIMENSIONS[dimension]}
        return Spec(**values)


@dataclass(frozen=True)
class PolicyChoice:
    uv: str
    device_bound: bool
    evil_origin: bool
    allowed: tuple[int, ...]
    es256: bool


@cache
def models() -> tuple[LabModel, ...]:
    return tuple(lab_model(a) for a in AAGUIDS)


def _policy(directory: Path, choice: PolicyChoice) -> Any:
    path = write_policy(directory, list(models()), name="grouping")
    text = path.read_text()
    origins = [ORIGIN, EVIL] if choice.evil_origin else [ORIGIN]
    allowed = [AAGUIDS[i] for i in choice.allowed]
    swaps = {
        r'user_verification = "required"': f'user_verification = "{choice.uv}"',
        r"device_bound = true": f"device_bound = {str(choice.device_bound).lower()}",
        r'origins = \["https://example.com"\]': "origins = "
        + "["
        + ", ".join(f'"{o}"' for o in origins)
        + "]",
        r"allow_aaguids = \[[^\]]*\]": "allow_aaguids = "
        + "["
        + ", ".join(f'"{a}"' for a in allowed)
        + "]",
        r'algorithms = \["ES256", "EdDSA"\]': "algorithms = "
        + ('["ES256", "EdDSA"]' if choice.es256 else '["EdDSA"]'),
    }
    for pattern, replacement in swaps.items():
        text, n = re.subn(pattern, replacement, text)
        assert n == 1, pattern
    path.write_text(text)
    return load_policy(path)


def _insert(db: str, specs: list[Spec]) -> None:
    creds = []
    for i, spec in enumerate(specs):
        model = models()[spec.model]
        made = registration(
            model,
            flags=FLAGS[spec.flags],
            rp_id=RP_IDS[spec.rp],
            client_fields=CLIENT[spec.client],
        )
        creds.append(new_credential(f"user{i:03d}", model, made))
    with transaction(db) as s:
        bulk_add_credentials(
            s, creds, operator="property-test", policy_version_id=None, reason="grouping test"
        )


def _both(db: str, policy: Any) -> tuple[Any, Any]:
    """(grouped, deep) audits of the registry at ``db``."""
    kw: dict[str, Any] = {
        "registry_url": db,
        "policy": policy,
        "metadata": None,
        "actor": "test",
        "now": NOW,
    }
    return audit(**kw), audit(**kw, deep=True)


def _findings(result: Any) -> list[tuple[Any, ...]]:
    return sorted(
        (f.kind, f.subject, f.rule, f.detail, f.severity, f.registry_id) for f in result.findings
    )


spec_st = st.builds(
    Spec,
    model=st.integers(0, len(AAGUIDS) - 1),
    flags=st.integers(0, len(FLAGS) - 1),
    rp=st.integers(0, len(RP_IDS) - 1),
    client=st.integers(0, len(CLIENT) - 1),
)
variants_st = st.lists(
    st.tuples(st.sampled_from(sorted(DIMENSIONS)), st.integers(0, 5)), min_size=1, max_size=6
)
policy_st = st.builds(
    PolicyChoice,
    uv=st.sampled_from(["required", "preferred", "discouraged"]),
    device_bound=st.booleans(),
    evil_origin=st.booleans(),
    allowed=st.sampled_from([(0, 1), (0,), (1,)]),
    es256=st.booleans(),
)
NOW = datetime(2026, 12, 3, 12, tzinfo=UTC)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=spec_st, variants=variants_st, choice=policy_st)
def test_grouped_and_deep_audits_find_the_same(
    base: Spec, variants: list[tuple[str, int]], choice: PolicyChoice
) -> None:
    specs = [base, base] + [base.vary(d, o) for d, o in variants]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        db = f"sqlite:///{directory / 'registry.db'}"
        policy = _policy(directory, choice)
        _insert(db, specs)
        grouped, deep = _both(db, policy)
    assert deep.evidence_groups == deep.credentials_checked == len(specs)
    assert grouped.credentials_checked == len(specs)
    assert grouped.evidence_groups < len(specs)  # the base twice: grouping really happened
    assert _findings(grouped) == _findings(deep)
    assert grouped.failed_credentials == deep.failed_credentials


def test_flags_and_client_data_split_the_verdicts(tmp_path: Path) -> None:
    """A fixed estate where the differences matter: under a UV-required policy a UV=0 twin
    fails alone, and a twin from another origin fails alone, in both audits."""
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    choice = PolicyChoice("required", True, False, (0, 1), True)
    policy = _policy(tmp_path, choice)
    base = Spec()
    _insert(db, [base, base.vary("flags", 1), base.vary("client", 1), base])
    grouped, deep = _both(db, policy)
    assert _findings(grouped) == _findings(deep)
    failing = {f.registry_id for f in grouped.findings if f.severity == "fail"}
    assert len(failing) == 2 and grouped.failed_credentials == 2
    assert grouped.evidence_groups == 3


def test_a_malformed_challenge_is_not_hidden_behind_a_good_twin(tmp_path: Path) -> None:
    """The challenge's value is left out of the grouping key (no rule reads it), but whether it
    parses is not: a registration whose challenge is not base64url fails on its own."""
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    policy = _policy(tmp_path, PolicyChoice("required", True, False, (0, 1), True))
    base = Spec()
    _insert(db, [base, base.vary("client", 5)])
    grouped, deep = _both(db, policy)
    assert _findings(grouped) == _findings(deep)
    assert grouped.failed_credentials == 1 and grouped.evidence_groups == 2
