"""Every real registration gets the right verdict, and the right failing rule, under the
shipped policies; plus the rules that real captures alone do not reach."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from keyadmin.policy import (
    RULE_IDS,
    Decision,
    DeviceFacts,
    evaluate_device,
    evaluate_registration,
    load_policy,
)
from keyadmin.policy.evaluate import run_rules
from tests.unit.test_policy_support import (
    POLICIES,
    all_capture_names,
    capture,
    metadata_for,
    policy_variant,
    registry_url,
)

REQUIRED_RULES = {
    "attestation.format",
    "attestation.trusted",
    "attestation.aaguid_match",
    "metadata.entry",
    "metadata.status",
    "authenticator.allowed",
    "authenticator.device_bound",
    "user_verification",
    "rp_id",
}

# capture -> (allowed, first failing rule, outcome of attestation.trusted, words in the detail)
EXPECTED: dict[str, tuple[bool, str | None, str, str]] = {
    "jws-realexamples-YubikeyFips5Nfc": (True, None, "pass", ""),
    "fidomds-yubikey_5_nfc": (False, "user_verification", "pass", "UV=0"),
    "jws-realexamples-YubiKey5Nfc": (False, "user_verification", "pass", "UV=0"),
    "jws-realexamples-YubiKey4": (False, "user_verification", "pass", "UV=0"),
    "fidomds-yubikey_4": (False, "user_verification", "pass", "UV=0"),
    "fidomds-test_verify_registration_response": (False, "user_verification", "pass", "UV=0"),
    "pywebauthn-verify_registration_response_fido_u2f-verify_attestation_from_yubikey_firefox": (
        False,
        "user_verification",
        "pass",
        "UV=0",
    ),
    "fidomds-microsoft_surface_1796": (False, "attestation.format", "pass", "not a roaming"),
    "pywebauthn-verify_registration_response_tpm-verify_attestation_surface_pro_4": (
        False,
        "attestation.format",
        "pass",
        "not a roaming",
    ),
    "fidomds-iphone_12": (False, "attestation.format", "fail", "not a roaming"),
    "tweag-attestation-apple-01": (False, "attestation.format", "fail", "not a roaming"),
    "fidomds-pixel_8a": (False, "attestation.format", "pass", "not a roaming"),
    "fidomds-nexus_5": (False, "attestation.format", "pass", "not a roaming"),
    "tweag-attestation-android-key-01": (False, "attestation.format", "fail", "not a roaming"),
    "fidomds-none_attestation": (False, "attestation.format", "fail", "no attestation"),
    "kanidm-core-test_firefox_98_hello_incorrectly_truncates_aaguid": (
        False,
        "attestation.parse",
        "skip",
        "malformed registration: credential ID length",
    ),
    "kanidm-core-test_solokey_v2_a_sealed_ed25519_invalid_cbor": (
        False,
        "attestation.parse",
        "skip",
        "malformed registration: 65 unexpected bytes",
    ),
    "kanidm-core-test_registration_packed_attestaion_fails_with_invalid_fido_aaguid_extension": (
        False,
        "attestation.aaguid_match",
        "skip",
        "5d75d75d-75d7-5d75-d75d-75d75d75d75e",
    ),
    "simplewebauthn-verifyAttestationPacked.test-L50": (
        False,
        "metadata.entry",
        "fail",
        "no metadata entry for AAGUID ffd9f494",
    ),
}
YUBIKEYS = [name for name, exp in EXPECTED.items() if exp[3] in ("", "UV=0")]


@pytest.fixture(scope="module")
def metadata(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return metadata_for(registry_url(tmp_path_factory))


@pytest.fixture(scope="module")
def hardware() -> Any:
    return load_policy(POLICIES / "fido-certified-hardware.toml")


def judge(policy: Any, name: str, metadata: Any, **kw: Any) -> Decision:
    cap = capture(name)
    return evaluate_registration(
        policy,
        cap.attestation_object,
        cap.client_data_json,
        at=kw.pop("at", cap.at),
        metadata=metadata,
        rp_id=kw.pop("rp_id", cap.rp_id),
        origins=kw.pop("origins", [cap.origin]),
    )


def test_every_capture_has_an_expectation() -> None:
    assert set(all_capture_names()) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED), ids=lambda n: n[:50])
def test_real_capture_verdict_under_fido_certified_hardware(
    name: str, hardware: Any, metadata: Any
) -> None:
    allowed, rule, trusted, words = EXPECTED[name]
    decision = judge(hardware, name, metadata)
    assert decision.allowed is allowed
    first = decision.first_failure
    assert (first.rule if first else None) == rule
    if first is not None:
        assert words in first.detail
    assert decision.reason("attestation.trusted").outcome == trusted
    # every rule is reported, in the documented order
    assert tuple(r.rule for r in decision.reasons) == RULE_IDS
    assert REQUIRED_RULES <= set(RULE_IDS)


@pytest.mark.parametrize("name", YUBIKEYS, ids=lambda n: n[:50])
def test_yubikeys_pass_everything_but_uv_and_are_admitted_when_uv_is_optional(
    name: str, metadata: Any, tmp_path: Path
) -> None:
    relaxed = load_policy(
        policy_variant(
            tmp_path,
            "fido-certified-hardware.toml",
            {'user_verification = "required"': 'user_verification = "preferred"'},
        )
    )
    decision = judge(relaxed, name, metadata)
    assert decision.allowed, decision.first_failure
    for rule in ("attestation.trusted", "metadata.entry", "metadata.status"):
        assert decision.reason(rule).outcome == "pass"
    assert "Yubico" in decision.reason("attestation.trusted").detail


def test_u2f_model_is_found_by_attestation_key_identifier(hardware: Any, metadata: Any) -> None:
    decision = judge(hardware, "jws-realexamples-YubiKey4", metadata)
    entry = decision.reason("metadata.entry")
    assert entry.outcome == "pass"
    assert "YK4 Series Key by Yubico" in entry.detail
    assert "attestation key identifier" in entry.detail


def test_the_captures_own_rp_is_needed_without_override(hardware: Any, metadata: Any) -> None:
    cap = capture("jws-realexamples-YubikeyFips5Nfc")
    decision = evaluate_registration(
        hardware, cap.attestation_object, cap.client_data_json, at=cap.at, metadata=metadata
    )
    assert not decision.allowed
    assert decision.first_failure is not None
    assert decision.first_failure.rule == "rp_id"
    assert decision.reason("origin").outcome == "fail"


def test_stale_metadata_refuses(hardware: Any, metadata: Any) -> None:
    decision = judge(
        hardware,
        "jws-realexamples-YubikeyFips5Nfc",
        metadata,
        at=datetime(2026, 11, 22, tzinfo=UTC),
    )
    assert not decision.allowed
    fresh = decision.reason("metadata.fresh")
    assert fresh.outcome == "fail"
    assert "went stale at 2026-11-08" in fresh.detail


def test_stale_metadata_override_is_honoured_and_said(hardware: Any, metadata: Any) -> None:
    """Found by review: enrolment's --allow-stale-metadata passed the gate, was logged, and
    then the metadata.fresh rule refused anyway: the override could never work."""
    cap = capture("jws-realexamples-YubikeyFips5Nfc")
    decision = evaluate_registration(
        hardware,
        cap.attestation_object,
        cap.client_data_json,
        at=datetime(2026, 11, 22, tzinfo=UTC),
        metadata=metadata,
        rp_id=cap.rp_id,
        origins=[cap.origin],
        stale_metadata_override=True,
    )
    assert decision.allowed, [r for r in decision.reasons if r.outcome == "fail"]
    fresh = decision.reason("metadata.fresh")
    assert fresh.outcome == "skip" and "OVERRIDDEN" in fresh.detail


def test_expired_chain_is_untrusted(hardware: Any, metadata: Any) -> None:
    decision = judge(
        hardware,
        "pywebauthn-verify_registration_response_tpm-verify_attestation_surface_pro_4",
        metadata,
        at=datetime(2026, 10, 15, tzinfo=UTC),
    )
    assert decision.reason("attestation.trusted").outcome == "fail"


def test_yubikey_fips_policy_demands_signed_metadata(metadata: Any, tmp_path: Path) -> None:
    fips = load_policy(POLICIES / "yubikey-fips.toml")
    decision = judge(fips, "jws-realexamples-YubikeyFips5Nfc", metadata)
    assert not decision.allowed
    assert decision.first_failure is not None
    assert decision.first_failure.rule == "metadata.signed"
    assert "unsigned" in decision.first_failure.detail
    unsigned_ok = load_policy(
        policy_variant(tmp_path, "yubikey-fips.toml", {"signed = true ": "signed = false "})
    )
    decision = judge(unsigned_ok, "jws-realexamples-YubikeyFips5Nfc", metadata)
    assert decision.allowed, decision.first_failure
    assert decision.reason("cred_protect").detail == "credProtect 2 (needs >= 2)"
    assert decision.reason("authenticator.allowed").detail.startswith("AAGUID c1f9a0bc")
    # a YubiKey 5 NFC (not FIPS) is not on the FIPS allowlist, whatever else it passes
    other = judge(unsigned_ok, "jws-realexamples-YubiKey5Nfc", metadata)
    assert other.reason("authenticator.allowed").outcome == "fail"
    assert "not on the allowlist" in other.reason("authenticator.allowed").detail


def test_deny_list_wins_over_any_metadata_model(metadata: Any, tmp_path: Path) -> None:
    denied = load_policy(
        policy_variant(
            tmp_path,
            "fido-certified-hardware.toml",
            {"deny_aaguids = []": 'deny_aaguids = ["c1f9a0bc-1dd2-404a-b27f-8e29047a43fd"]'},
        )
    )
    decision = judge(denied, "jws-realexamples-YubikeyFips5Nfc", metadata)
    assert not decision.allowed
    assert decision.first_failure is not None
    assert decision.first_failure.rule == "authenticator.allowed"
    assert "deny list" in decision.first_failure.detail


def test_algorithm_rule(metadata: Any, tmp_path: Path) -> None:
    es256_only = load_policy(
        policy_variant(
            tmp_path,
            "fido-certified-hardware.toml",
            {'algorithms = ["ES256", "EdDSA", "ES384", "RS256"]': 'algorithms = ["ES256"]'},
        )
    )
    decision = judge(es256_only, "jws-realexamples-YubikeyFips5Nfc", metadata)
    assert decision.first_failure is not None
    assert decision.first_failure.rule == "algorithm"
    assert "EdDSA is not allowed" in decision.first_failure.detail


def test_synced_passkey_fails_device_bound(metadata: Any, tmp_path: Path) -> None:
    # The none-attestation passkey (BE=1, BS=1) under a policy that accepts 'none' format
    # for this check would still be refused: device_bound reports the flags.
    decision = judge(
        load_policy(POLICIES / "fido-certified-hardware.toml"), "fidomds-none_attestation", metadata
    )
    bound = decision.reason("authenticator.device_bound")
    assert bound.outcome == "fail"
    assert "BE=1 BS=1" in bound.detail


def test_an_exception_inside_a_rule_is_a_fail() -> None:
    def broken(ctx: object) -> Any:
        raise RuntimeError("boom")

    reasons = run_rules([("broken", broken)], object())
    assert reasons[0].outcome == "fail"
    assert "RuntimeError: boom" in reasons[0].detail


def test_metadata_source_errors_fail_closed(hardware: Any) -> None:
    """A registry that is unreadable (not a database) refuses; it never lets a key through."""
    from keyadmin.policy import IndexMetadata
    from keyadmin.store.mds_index import MdsIndex

    cap = capture("jws-realexamples-YubikeyFips5Nfc")
    broken = IndexMetadata(MdsIndex("sqlite:///" + str(POLICIES / "fido-certified-hardware.toml")))
    decision = evaluate_registration(
        hardware,
        cap.attestation_object,
        cap.client_data_json,
        at=cap.at,
        metadata=broken,
        rp_id=cap.rp_id,
        origins=[cap.origin],
    )
    assert not decision.allowed
    assert decision.reason("metadata.entry").outcome == "fail"


# -- device readiness ------------------------------------------------------------------------------

YK5_NFC = "2fc0579f-8113-47ea-b116-bb5a8db9202a"


@pytest.mark.parametrize(
    "facts,allowed,failing",
    [
        (DeviceFacts(YK5_NFC, "5.4.3", True, 6, True), False, "device.firmware"),
        (DeviceFacts(YK5_NFC, "5.7.0", True, 6, True), True, None),
        (DeviceFacts(YK5_NFC, "5.7.1", False, 6, True), False, "device.pin_set"),
        (DeviceFacts(YK5_NFC, "5.7.1", True, 4, True), False, "device.min_pin_length"),
        (DeviceFacts(YK5_NFC, "5.7.1", True, 8, False), False, "device.always_uv"),
        (DeviceFacts(YK5_NFC, None, True, 8, True), False, "device.firmware"),
        # no floor for other models
        (DeviceFacts("ee882879-721c-4913-9775-3dfcce97072b", None, True, 8, True), True, None),
    ],
)
def test_evaluate_device(
    facts: DeviceFacts, allowed: bool, failing: str | None, hardware: Any
) -> None:
    decision = evaluate_device(hardware, facts)
    assert decision.allowed is allowed
    assert (decision.first_failure.rule if decision.first_failure else None) == failing
    if failing == "device.firmware" and facts.firmware:
        assert "EUCLEAK" in decision.first_failure.detail  # type: ignore[union-attr]


def test_evaluate_device_allowlist_hint() -> None:
    fips = load_policy(POLICIES / "yubikey-fips.toml")
    decision = evaluate_device(fips, DeviceFacts(YK5_NFC, "5.7.1", True, 8, True))
    assert decision.reason("device.allowed").outcome == "fail"


def test_a_u2f_model_is_named_by_its_attestation_key_identifier(
    hardware: Any, metadata: Any
) -> None:
    """fido-u2f credentials carry the all-zero AAGUID: the model is found by key identifier
    (as FIDO metadata lists U2F models), e.g. for the step-up re-check."""
    from keyadmin.policy.catalog import explain_model

    at = datetime(2026, 10, 15, tzinfo=UTC)
    zero = "00000000-0000-0000-0000-000000000000"
    by_kid = explain_model(
        hardware, metadata, zero, at=at, key_id="a6b1ae0823a7e6a7b0e0a53f2b6a7db98848a61f"
    )
    entry = by_kid.reason("metadata.entry")
    assert entry.outcome == "pass" and "YubiKey 5 Series" in entry.detail
    without = explain_model(hardware, metadata, zero, at=at)
    assert without.reason("metadata.entry").outcome == "fail" and not without.allowed
