"""keyadmin attestation verify, as an auditor runs it, on real captures and the software key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from keyadmin.sim.authenticator import SoftKey
from tests.unit.test_policy_evaluate import EXPECTED
from tests.unit.test_policy_support import POLICIES, b64u, capture, registry_url


def cli_app() -> typer.Typer:
    """keyadmin's own app once it carries the group; until then the group as main.py adds it."""
    from keyadmin.cli import attestation, policy
    from keyadmin.cli.main import app

    names = {g.name for g in app.registered_groups}
    if {"attestation", "policy"} <= names:
        return app
    composed = typer.Typer()
    composed.add_typer(attestation.app, name="attestation")
    composed.add_typer(policy.app, name="policy")
    return composed


class Out:
    def __init__(self, result: Any) -> None:
        self.code = result.exit_code
        self.stdout = result.stdout
        self.stderr = result.stderr
        self.exception = result.exception


def invoke(*args: str, env: dict[str, str] | None = None) -> Out:
    return Out(CliRunner().invoke(cli_app(), list(args), env=env, catch_exceptions=True))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {"KEYADMIN_DATABASE_URL": registry_url(tmp_path_factory)}


def verify_args(name: str, policy: Path, *extra: str) -> list[str]:
    cap = capture(name)
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
        cap.at.isoformat(),
        *extra,
    ]


@pytest.mark.parametrize("name", sorted(EXPECTED), ids=lambda n: n[:50])
def test_every_real_capture_json(name: str, env: dict[str, str]) -> None:
    allowed, rule, trusted, words = EXPECTED[name]
    out = invoke(*verify_args(name, POLICIES / "fido-certified-hardware.toml", "--json"), env=env)
    assert out.exception is None or isinstance(out.exception, SystemExit)
    assert "Traceback" not in out.stderr
    assert out.code == (0 if allowed else 3)
    data = json.loads(out.stdout)
    assert data["decision"] == ("allowed" if allowed else "refused")
    failed = [r for r in data["reasons"] if r["outcome"] == "fail"]
    assert (failed[0]["rule"] if failed else None) == rule
    if failed:
        assert words in failed[0]["detail"]
    by_rule = {r["rule"]: r for r in data["reasons"]}
    assert by_rule["attestation.trusted"]["outcome"] == trusted
    for required in (
        "attestation.format",
        "attestation.trusted",
        "attestation.aaguid_match",
        "metadata.entry",
        "metadata.status",
        "authenticator.allowed",
        "authenticator.device_bound",
        "user_verification",
        "rp_id",
    ):
        assert by_rule[required]["outcome"] in ("pass", "fail", "skip")
    assert all(set(r) == {"rule", "outcome", "detail"} for r in data["reasons"])
    if rule == "attestation.parse":
        assert data["evidence"] is None
    if name == "jws-realexamples-YubikeyFips5Nfc":
        assert data["evidence"]["aaguid"] == "c1f9a0bc-1dd2-404a-b27f-8e29047a43fd"
        assert data["evidence"]["chain"][-1]["subject"] == "CN=Yubico U2F Root CA Serial 457200631"
        assert data["metadata"]["signed"] is False


def test_human_output_names_the_failing_rule(env: dict[str, str]) -> None:
    out = invoke(
        *verify_args("fidomds-microsoft_surface_1796", POLICIES / "fido-certified-hardware.toml"),
        env=env,
    )
    assert out.code == 3
    assert "FAIL  attestation.format" in out.stdout
    assert "decision: REFUSED (first failing rule: attestation.format)" in out.stdout


def test_malformed_capture_has_no_traceback(env: dict[str, str]) -> None:
    out = invoke(
        *verify_args(
            "kanidm-core-test_solokey_v2_a_sealed_ed25519_invalid_cbor",
            POLICIES / "fido-certified-hardware.toml",
        ),
        env=env,
    )
    assert out.code == 3
    assert "FAIL  attestation.parse" in out.stdout
    assert "malformed registration" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_policy_rp_id_applies_without_override(env: dict[str, str]) -> None:
    args = verify_args(
        "jws-realexamples-YubikeyFips5Nfc", POLICIES / "fido-certified-hardware.toml"
    )
    cut = args.index("--rp-id")
    out = invoke(*(args[:cut] + args[cut + 4 :]), "--json", env=env)
    assert out.code == 3
    data = json.loads(out.stdout)
    assert [r["rule"] for r in data["reasons"] if r["outcome"] == "fail"][:2] == ["rp_id", "origin"]


def test_bad_base64_is_a_usage_error(env: dict[str, str]) -> None:
    out = invoke(
        "attestation",
        "verify",
        "--attestation-object",
        "not base64!",
        "--client-data",
        "e30",
        "--policy",
        str(POLICIES / "fido-certified-hardware.toml"),
        env=env,
    )
    _assert_error(out, 2, "--attestation-object is not base64url")


def _assert_error(out: Out, code: int, message: str) -> None:
    """Reported once, by keyadmin's root command group (or raised, before it is wired)."""
    from keyadmin.errors import KeyadminError

    if isinstance(out.exception, KeyadminError):
        assert out.exception.exit_code == code
        assert message in out.exception.message
        return
    assert out.code == code
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_file_arguments_and_at_date(env: dict[str, str], tmp_path: Path) -> None:
    cap = capture("jws-realexamples-YubikeyFips5Nfc")
    (tmp_path / "att.b64").write_text(b64u(cap.attestation_object) + "\n")
    (tmp_path / "cd.b64").write_text(b64u(cap.client_data_json))
    out = invoke(
        "attestation",
        "verify",
        "--attestation-object",
        f"@{tmp_path / 'att.b64'}",
        "--client-data",
        f"@{tmp_path / 'cd.b64'}",
        "--policy",
        str(POLICIES / "fido-certified-hardware.toml"),
        "--rp-id",
        cap.rp_id,
        "--origin",
        cap.origin,
        "--at",
        "2026-10-15",
        env=env,
    )
    assert out.code == 0, out.stdout + out.stderr
    assert "decision: ALLOWED" in out.stdout


# -- the software key and the lab policy --------------------------------------------------------


def _softkey_registration(key_path: Path) -> tuple[SoftKey, bytes, bytes]:
    from fido2.ctap2 import ClientPin, Ctap2

    from keyadmin.sim.hid import open_hid
    from tests.conftest import PIN
    from tests.webauthn_helpers import register

    key = SoftKey.create(key_path)
    dev = open_hid(key)
    try:
        ClientPin(Ctap2(dev)).set_pin(PIN)
        reg = register(dev, PIN)
    finally:
        dev.close()
    resp = reg.response.response
    return key, bytes(resp.attestation_object), bytes(resp.client_data)


def _lab_policy(directory: Path, key: SoftKey) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "lab-root.pem").write_text(key.root_certificate_pem())
    policy = directory / "lab-softkey.toml"
    policy.write_text((POLICIES / "lab-softkey.toml").read_text())
    return policy


def test_softkey_is_admitted_only_through_its_own_lab_root(
    env: dict[str, str], tmp_path: Path
) -> None:
    key, att, cdj = _softkey_registration(tmp_path / "lab.key")
    base = [
        "attestation",
        "verify",
        "--attestation-object",
        b64u(att),
        "--client-data",
        b64u(cdj),
        "--json",
        "--policy",
    ]
    # its own root: allowed
    out = invoke(*base, str(_lab_policy(tmp_path / "lab", key)), env=env)
    assert out.code == 0, out.stdout
    data = json.loads(out.stdout)
    assert data["decision"] == "allowed"
    by_rule = {r["rule"]: r for r in data["reasons"]}
    assert "SOFTWARE" in by_rule["attestation.trusted"]["detail"]
    assert by_rule["authenticator.allowed"]["detail"].startswith(
        "AAGUID 6b657961-646d-4e00-8000-736f66746b79"
    )
    # another software key's root: untrusted
    other = SoftKey.create(tmp_path / "other.key")
    out = invoke(*base, str(_lab_policy(tmp_path / "other", other)), env=env)
    assert out.code == 3
    data = json.loads(out.stdout)
    assert [r["rule"] for r in data["reasons"] if r["outcome"] == "fail"][0] == (
        "attestation.trusted"
    )
    # a production policy never admits it (and today its metadata is stale as well: the
    # freshness gate's exit code, 7, comes first, as in enrolment)
    out = invoke(*base, str(POLICIES / "fido-certified-hardware.toml"), env=env)
    assert out.code == 7
    data = json.loads(out.stdout)
    fails = [r["rule"] for r in data["reasons"] if r["outcome"] == "fail"]
    assert fails[0] == "metadata.entry" and "metadata.fresh" in fails
    assert "attestation.trusted" in fails and "authenticator.allowed" in fails
