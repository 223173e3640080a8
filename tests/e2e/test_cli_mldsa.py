"""keyadmin attestation verify on the real ML-DSA registrations, as an auditor runs it: a
policy refusal with its reasons and exit code 3, never an internal error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_cli_attestation import env, invoke  # noqa: F401 - env is a fixture
from tests.unit.test_mldsa import AT, CASES, pqc
from tests.unit.test_policy_support import POLICIES, b64u, policy_variant


def _args(name: str, policy: Path, *extra: str) -> list[str]:
    cap = pqc(name)
    return [
        "attestation",
        "verify",
        "--attestation-object",
        b64u(cap.attestation_object),
        "--client-data",
        b64u(cap.client_data_json),
        "--policy",
        str(policy),
        "--rp-id",
        cap.rp_id,
        "--origin",
        cap.origin,
        "--at",
        AT.isoformat(),
        *extra,
    ]


@pytest.mark.parametrize("name", sorted(CASES))
def test_mldsa_capture_is_refused_with_its_reasons(name: str, env: dict[str, str]) -> None:  # noqa: F811
    alg, alg_name, _, _, _ = CASES[name]
    out = invoke(*_args(name, POLICIES / "fido-certified-hardware.toml", "--json"), env=env)
    assert "Traceback" not in out.stderr
    assert out.code == 3
    data = json.loads(out.stdout)
    assert "internal error" not in out.stdout
    by_rule = {r["rule"]: r for r in data["reasons"]}
    assert by_rule["attestation.parse"]["outcome"] == "pass"
    assert by_rule["algorithm"]["outcome"] == "fail"
    assert by_rule["algorithm"]["detail"].startswith(f"{alg_name} is not allowed")
    assert data["evidence"] is None  # the chain reached no trust anchor


def test_mldsa_capture_human_output(env: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    policy = policy_variant(
        tmp_path,
        "fido-certified-hardware.toml",
        {
            'algorithms = ["ES256", "EdDSA", "ES384", "RS256"]': 'algorithms = ["ML-DSA-44"]',
        },
    )
    out = invoke(*_args("jws-realexamples-Mldsa44", policy), env=env)
    assert out.code == 3
    assert "pass  algorithm                     ML-DSA-44 is allowed" in out.stdout
    assert "decision: REFUSED (first failing rule: attestation.trusted)" in out.stdout
