"""keyadmin policy check / explain / models, as a security team runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_cli_attestation import _assert_error, invoke
from tests.unit.test_policy_support import POLICIES, policy_variant, registry_url

HW = str(POLICIES / "fido-certified-hardware.toml")
FIPS = str(POLICIES / "yubikey-fips.toml")
YK5_NFC = "2fc0579f-8113-47ea-b116-bb5a8db9202a"
YK5_FIPS = "c1f9a0bc-1dd2-404a-b27f-8e29047a43fd"
WINDOWS_HELLO = "08987058-cadc-4b81-b6e1-30de50dcbe96"
AT = "2026-10-15T00:00:00Z"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {"KEYADMIN_DATABASE_URL": registry_url(tmp_path_factory)}


def test_check_valid_policy_json() -> None:
    out = invoke("policy", "check", FIPS, "--json")
    assert out.code == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["valid"] is True
    assert data["name"] == "yubikey-fips"
    assert len(data["sha256"]) == 64
    assert data["metadata"]["min_certification"] == "FIDO_CERTIFIED_L2"
    assert data["device"]["firmware_minimum"][YK5_FIPS] == "5.7.0"


def test_check_human_output() -> None:
    out = invoke("policy", "check", HW)
    assert out.code == 0
    assert out.stdout.startswith("policy fido-certified-hardware v1: valid")
    assert "sha256" in out.stdout


def test_check_invalid_policy_names_file_line_key(tmp_path: Path) -> None:
    bad = policy_variant(
        tmp_path, "fido-certified-hardware.toml", {"attachment = ": "attachmnet = "}
    )
    out = invoke("policy", "check", str(bad), "--json")
    assert out.code == 1
    data = json.loads(out.stdout)
    assert data["valid"] is False
    assert data["file"] == str(bad)
    assert data["key"] == "authenticators.attachmnet"
    lines = bad.read_text().splitlines()
    assert lines[data["line"] - 1].startswith("attachmnet")
    out = invoke("policy", "check", str(bad))
    assert out.code == 1
    assert f"{bad}:{data['line']} [authenticators.attachmnet]: unknown key" in out.stderr


def test_check_lab_policy_without_root_explains_the_flow(tmp_path: Path) -> None:
    lab = tmp_path / "lab-softkey.toml"
    lab.write_text((POLICIES / "lab-softkey.toml").read_text())
    out = invoke("policy", "check", str(lab))
    assert out.code == 1
    assert "keyadmin sim root --state lab.key >" in out.stderr


def test_explain_admitted_model(env: dict[str, str]) -> None:
    out = invoke("policy", "explain", HW, YK5_NFC, "--at", AT, "--json", env=env)
    assert out.code == 0, out.stdout
    data = json.loads(out.stdout)
    assert data["decision"] == "allowed"
    assert data["description"] == "YubiKey 5 Series with NFC"
    by_rule = {r["rule"]: r for r in data["reasons"]}
    assert by_rule["device.firmware"]["outcome"] == "skip"
    assert "5.7.0" in by_rule["device.firmware"]["detail"]


def test_explain_refused_platform_model(env: dict[str, str]) -> None:
    out = invoke("policy", "explain", HW, WINDOWS_HELLO, "--at", AT, env=env)
    assert out.code == 3
    assert "FAIL  authenticator.roaming" in out.stdout
    assert "lacks 'external'" in out.stdout


def test_explain_model_outside_the_fips_allowlist(env: dict[str, str]) -> None:
    out = invoke("policy", "explain", FIPS, YK5_NFC, "--at", AT, "--json", env=env)
    assert out.code == 3
    data = json.loads(out.stdout)
    fails = {r["rule"]: r["detail"] for r in data["reasons"] if r["outcome"] == "fail"}
    assert "not on the allowlist" in fails["authenticator.allowed"]
    assert "FIDO_CERTIFIED_L2" in fails["metadata.certification"]
    assert "unsigned" in fails["metadata.signed"]


def test_explain_unknown_model(env: dict[str, str]) -> None:
    out = invoke(
        "policy", "explain", HW, "ffd9f494-eb73-4844-bd68-669381557ff7", "--at", AT, env=env
    )
    assert out.code == 3
    assert "FAIL  metadata.entry" in out.stdout


def test_models_list_hash_and_diff(env: dict[str, str], tmp_path: Path) -> None:
    out = invoke("policy", "models", FIPS, "--json", env=env)
    assert out.code == 0, out.stderr
    data = json.loads(out.stdout)
    aaguids = {m["aaguid"] for m in data["models"]}
    assert YK5_FIPS in aaguids
    assert len(aaguids) == 9
    assert all("FIPS" in m["description"] for m in data["models"])
    assert data["metadata"]["no"] == 291
    again = json.loads(invoke("policy", "models", FIPS, "--json", env=env).stdout)
    assert again["sha256"] == data["sha256"]
    saved = tmp_path / "fips-models.json"
    saved.write_text(out.stdout)

    narrower = policy_variant(
        tmp_path,
        "yubikey-fips.toml",
        {f'  "{YK5_FIPS}",  # YubiKey 5 FIPS Series with NFC (5.4)\n': ""},
    )
    out = invoke("policy", "models", str(narrower), "--diff", str(saved), "--json", env=env)
    assert out.code == 0, out.stderr
    diff = json.loads(out.stdout)["diff"]
    assert [m["aaguid"] for m in diff["removed"]] == [YK5_FIPS]
    assert diff["added"] == [] and diff["changed"] == []
    assert diff["previous_sha256"] == data["sha256"] != diff["current_sha256"]
    human = invoke("policy", "models", str(narrower), "--diff", str(saved), env=env)
    assert f"  - {YK5_FIPS}  YubiKey 5 FIPS Series with NFC" in human.stdout


def test_models_of_the_certified_hardware_policy(env: dict[str, str]) -> None:
    out = invoke("policy", "models", HW, "--json", env=env)
    data = json.loads(out.stdout)
    aaguids = {m["aaguid"] for m in data["models"]}
    assert YK5_NFC in aaguids and YK5_FIPS in aaguids
    assert WINDOWS_HELLO not in aaguids
    assert all(m["certification"] for m in data["models"])


def test_models_without_metadata_is_exit_7(tmp_path: Path) -> None:
    out = invoke(
        "policy",
        "models",
        HW,
        env={"KEYADMIN_HOME": str(tmp_path / "home")},  # the data directory's own, empty
    )
    _assert_error(out, 7, "no FIDO metadata in the registry")


def test_help_is_light_and_has_examples() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from keyadmin.cli import attestation, policy; "
        "heavy = [m for m in ('fido2', 'cryptography', 'sqlalchemy') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == ""
    for group, cmd in (("attestation", "verify"), ("policy", "check"), ("policy", "models")):
        out = invoke(group, cmd, "--help")
        assert out.code == 0
        assert "Example" in out.stdout


ALLTHENTICATOR_ANDROID = "5ca1ab1e-fa57-1337-f1d0-a117371ca702"
RSA_AUTH_IOS = "8681a073-5f50-4d52-bce4-e21658d207b3"


def test_models_show_why_each_model_qualifies(env: dict[str, str]) -> None:
    human = invoke("policy", "models", HW, "--at", AT, env=env)
    assert human.code == 0, human.stderr
    lines = human.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(f"  {YK5_NFC}  "))
    end = next(i for i in range(at + 1, len(lines)) if not lines[i].startswith("      "))
    why = lines[at + 1 : end]
    assert "      hardware.key_protection: keyProtection hardware, secure_element" in why
    assert "      hardware.matcher_protection: matcherProtection on_chip" in why
    assert any(line.startswith("      hardware.connection: attachmentHint ") for line in why)
    assert ALLTHENTICATOR_ANDROID not in human.stdout
    data = json.loads(invoke("policy", "models", HW, "--at", AT, "--json", env=env).stdout)
    assert all(
        set(m["why"]) >= {"hardware.attachment", "hardware.description"} for m in data["models"]
    )


def test_explain_refuses_a_phone_app_that_claims_hardware(env: dict[str, str]) -> None:
    out = invoke("policy", "explain", HW, ALLTHENTICATOR_ANDROID, "--at", AT, "--json", env=env)
    assert out.code == 3
    fails = {
        r["rule"]: r["detail"] for r in json.loads(out.stdout)["reasons"] if r["outcome"] == "fail"
    }
    assert list(fails) == ["authenticator.hardware"]
    assert "hardware.description" in fails["authenticator.hardware"]
    assert "names android, app" in fails["authenticator.hardware"]
    out = invoke("policy", "explain", HW, RSA_AUTH_IOS, "--at", AT, env=env)
    assert out.code == 3
    assert "FAIL  authenticator.hardware" in out.stdout
    assert "hardware.connection" in out.stdout
