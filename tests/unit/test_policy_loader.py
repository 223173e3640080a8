"""The loader: shipped policies load; every bad file names the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyadmin.errors import ConfigError
from keyadmin.policy import PolicyLoadError, load_policy
from keyadmin.sim.state import DEFAULT_AAGUID
from tests.unit.test_policy_support import POLICIES, policy_variant

LAB_MIN = """\
[policy]
name = "t"
version = 1

[relying_party]
rp_id = "example.com"
origins = ["https://example.com"]

[attestation]
formats = ["packed"]
types = ["basic"]

[metadata]
required = true

[authenticators]
allow_aaguids = ["2fc0579f-8113-47ea-b116-bb5a8db9202a"]
"""


def write(tmp_path: Path, text: str, name: str = "p.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_error(path: Path) -> PolicyLoadError:
    with pytest.raises(PolicyLoadError) as info:
        load_policy(path)
    assert isinstance(info.value, ConfigError)
    assert str(path) in info.value.message
    return info.value


@pytest.mark.parametrize("name", ["fido-certified-hardware.toml", "yubikey-fips.toml"])
def test_shipped_policies_load(name: str) -> None:
    policy = load_policy(POLICIES / name)
    assert policy.version == 1
    assert len(policy.sha256) == 64
    assert policy.metadata.required
    assert "REVOKED" in policy.metadata.forbidden_statuses


def test_yubikey_fips_has_eucleak_floors() -> None:
    policy = load_policy(POLICIES / "yubikey-fips.toml")
    assert str(policy.device.firmware_minimum["c1f9a0bc-1dd2-404a-b27f-8e29047a43fd"]) == "5.7.0"
    assert policy.metadata.signed
    assert policy.metadata.min_certification == "FIDO_CERTIFIED_L2"
    assert policy.authenticators.key_protection == ("hardware", "secure_element")


def test_lab_policy_needs_its_root_file(tmp_path: Path) -> None:
    lab = tmp_path / "lab-softkey.toml"
    lab.write_text((POLICIES / "lab-softkey.toml").read_text())
    err = load_error(lab)
    assert err.key == "trust.extra_roots"
    assert err.line == _line_of(lab, "extra_roots")
    assert "keyadmin sim root --state lab.key" in err.problem


def test_lab_policy_loads_with_the_softkeys_root(tmp_path: Path) -> None:
    from keyadmin.sim.authenticator import SoftKey

    key = SoftKey.create(tmp_path / "lab.key")
    (tmp_path / "lab-root.pem").write_text(key.root_certificate_pem())
    lab = tmp_path / "lab-softkey.toml"
    lab.write_text((POLICIES / "lab-softkey.toml").read_text())
    policy = load_policy(lab)
    assert policy.authenticators.allow_aaguids == {DEFAULT_AAGUID}
    assert len(policy.trust_roots) == 1
    assert "SOFTWARE" in policy.trust_roots[0].subject
    assert not policy.metadata.required


def _line_of(path: Path, needle: str) -> int:
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip().startswith(needle):
            return n
    raise AssertionError(needle)


def test_syntax_error_has_line(tmp_path: Path) -> None:
    path = write(tmp_path, LAB_MIN.replace("version = 1", "version = = 1"))
    err = load_error(path)
    assert err.line == 3
    assert "not valid TOML" in err.problem


def test_unknown_key_is_an_error_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, LAB_MIN + 'allow_aaguid = ["x"]\n')
    err = load_error(path)
    assert err.key == "authenticators.allow_aaguid"
    assert err.line == LAB_MIN.count("\n") + 1
    assert "unknown key" in err.problem


def test_unknown_table_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, LAB_MIN + "\n[allowlist]\naaguids = []\n")
    err = load_error(path)
    assert err.key == "allowlist"
    assert err.line == LAB_MIN.count("\n") + 2


def test_wrong_type_names_key_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, LAB_MIN.replace("required = true", 'required = "yes"'))
    err = load_error(path)
    assert err.key == "metadata.required"
    assert err.line == 14
    assert "true or false" in err.problem


def test_bad_aaguid_in_allowlist(tmp_path: Path) -> None:
    path = write(tmp_path, LAB_MIN.replace("2fc0579f-8113-47ea-b116-bb5a8db9202a", "yubikey"))
    err = load_error(path)
    assert err.key == "authenticators.allow_aaguids"
    assert err.line == 17
    assert "'yubikey' is not an AAGUID" in err.problem


def test_allowlist_without_verified_attestation_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, LAB_MIN.replace('types = ["basic"]', 'types = ["basic", "none"]'))
    err = load_error(path)
    assert err.key == "attestation.types"
    assert err.line == 11
    assert "needs verified attestation" in err.problem


def test_empty_allowlist_is_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        LAB_MIN.replace(
            'allow_aaguids = ["2fc0579f-8113-47ea-b116-bb5a8db9202a"]', "deny_aaguids = []"
        ),
    )
    err = load_error(path)
    assert "allowlist is empty" in err.problem


def test_empty_trust_set_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, LAB_MIN.replace("required = true", "required = false"))
    err = load_error(path)
    assert err.key == "trust.extra_roots"
    assert "trust set is empty" in err.problem


def test_compromise_statuses_cannot_be_dropped(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        LAB_MIN.replace("required = true", 'required = true\nforbidden_statuses = ["REVOKED"]'),
    )
    err = load_error(path)
    assert err.key == "metadata.forbidden_statuses"
    assert err.line == 15
    assert "USER_VERIFICATION_BYPASS" in err.problem


CB = "cb69481e-8ff7-4039-93ec-0a2729a154a8"


def test_firmware_floor_errors_point_at_the_aaguid_line(tmp_path: Path) -> None:
    path = policy_variant(
        tmp_path,
        "fido-certified-hardware.toml",
        {f'"{CB}" = "5.7.0"': f'"{CB}" = "5.seven"'},
    )
    err = load_error(path)
    assert err.key == "device.firmware_minimum.cb69481e-8ff7-4039-93ec-0a2729a154a8"
    assert err.line == _line_of(path, '"cb69481e')
    assert "5.seven" in err.problem


def test_keys_per_user_bounds(tmp_path: Path) -> None:
    path = write(tmp_path, LAB_MIN + "\n[keys_per_user]\nminimum = 4\nmaximum = 2\n")
    err = load_error(path)
    assert err.key == "keys_per_user.minimum"
    assert err.line == LAB_MIN.count("\n") + 3


def test_missing_table_and_unreadable_file(tmp_path: Path) -> None:
    err = load_error(write(tmp_path, LAB_MIN.replace("[attestation]", "[attestationx]")))
    assert err.key == "attestationx"
    err = load_error(tmp_path / "absent.toml")
    assert "cannot read" in err.problem


def test_hash_and_version_change_with_the_file(tmp_path: Path) -> None:
    a = load_policy(write(tmp_path, LAB_MIN, "a.toml"))
    b = load_policy(write(tmp_path, LAB_MIN.replace("version = 1", "version = 2"), "b.toml"))
    assert a.sha256 != b.sha256
    assert (a.version, b.version) == (1, 2)


def test_step_up_limits_left_out_are_the_one_set_of_defaults(tmp_path: Path) -> None:
    """The loader, the step-up API and sync read one set of defaults (they used to be kept
    in three places, and a StepUpRules built without the loader said 6 attempts per user
    where the loader said twice max_attempts)."""
    from dataclasses import replace

    from keyadmin.flows.tamper import jump_threshold
    from keyadmin.policy.model import STEP_UP_DEFAULTS
    from keyadmin.stepup.api import Limits

    path = policy_variant(
        tmp_path,
        "yubikey-fips.toml",
        {"challenge_lifetime_seconds = 60\nmax_attempts = 3\n": ""},
    )
    policy = load_policy(path)
    assert policy.step_up == STEP_UP_DEFAULTS
    limits = Limits.from_policy(policy)
    assert (limits.max_attempts_per_credential, limits.max_attempts_per_user) == (3, 6)
    assert limits.attempt_window_seconds == STEP_UP_DEFAULTS.attempt_window_seconds
    assert limits.max_live_challenges == STEP_UP_DEFAULTS.max_live_challenges
    assert jump_threshold(None) == jump_threshold(policy) == 1000
    five = policy_variant(tmp_path, "yubikey-fips.toml", {"max_attempts = 3": "max_attempts = 5"})
    assert load_policy(five).step_up == replace(
        STEP_UP_DEFAULTS, challenge_lifetime_seconds=60, max_attempts=5, max_attempts_per_user=10
    )
