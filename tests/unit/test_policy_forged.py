"""Registration rules on packed registrations signed in the test under a test vendor root, for
what no real capture shows (found by review): a key that clears UP, a key reporting a denied
AAGUID its certificate does not name, a key claiming an AAGUID that has no metadata entry while
its attestation key identifier is listed for another model. Each with the control case that
is allowed, so the refusal is the rule's doing."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from keyadmin.mds.model import Entry, entry_from_dict
from keyadmin.policy.evaluate import evaluate_registration, key_identifier
from keyadmin.policy.loader import load_policy
from tests.support.forge import NOW, Vendor, lab_policy_trusting, packed_registration

MODEL = uuid.UUID("11111111-2222-4333-8444-555555555555")
DENIED = uuid.UUID("2fc0579f-8113-47ea-b116-bb5a8db9202a")


def _failed(decision: Any) -> dict[str, str]:
    return {r.rule: r.detail for r in decision.reasons if r.outcome == "fail"}


class _Snapshot:
    no, source, signed, sha256 = 300, "test", True, "00" * 32
    next_update = (NOW.date().replace(year=NOW.year + 1)).isoformat()


class _Metadata:
    """A metadata source holding the entries given (the MetadataSource the policy reads)."""

    def __init__(self, *entries: Entry) -> None:
        self.entries = entries

    def snapshot(self) -> _Snapshot:
        return _Snapshot()

    def by_aaguid(self, aaguid: str) -> Entry | None:
        return next((e for e in self.entries if e.aaguid == aaguid), None)

    def by_key_id(self, kid: str) -> Entry | None:
        return next(
            (e for e in self.entries if kid in e.attestation_certificate_key_identifiers), None
        )

    def models(self) -> Iterator[Entry]:
        return iter(self.entries)


def _entry(vendor: Vendor, aaguid: str | None, kids: list[str], description: str) -> Entry:
    return entry_from_dict(
        {
            "aaguid": aaguid,
            "description": description,
            "attestation_certificate_key_identifiers": kids,
            "attestation_root_certificates": [
                {"der_b64": base64.b64encode(vendor.root_der).decode()}
            ],
            "status_reports": [{"status": "FIDO_CERTIFIED_L1", "effective_date": "2020-01-01"}],
            "status": "FIDO_CERTIFIED_L1",
            "attachment_hint": ["external"],
            "key_protection": ["hardware"],
        }
    )


def test_registration_without_user_presence_is_refused(tmp_path: Path) -> None:
    vendor = Vendor.create()
    policy = load_policy(lab_policy_trusting(tmp_path, vendor, f'allow_aaguids = ["{MODEL}"]'))
    key, cert = vendor.batch(MODEL)
    for flags, allowed in ((0x45, True), (0x44, False)):  # UP+UV+AT, then UV+AT without UP
        att, cdj = packed_registration(key, cert, MODEL, flags=flags)
        decision = evaluate_registration(policy, att, cdj, at=NOW, metadata=None)
        assert decision.allowed is allowed, _failed(decision)
        if not allowed:
            assert list(_failed(decision)) == ["user_presence"]


def test_a_denied_aaguid_the_certificate_does_not_name_is_still_denied(tmp_path: Path) -> None:
    vendor = Vendor.create()
    policy = load_policy(
        lab_policy_trusting(
            tmp_path,
            vendor,
            f'allow_vendor_roots = ["{vendor.root_sha256}"]\ndeny_aaguids = ["{DENIED}"]',
        )
    )
    key, cert = vendor.batch(None)  # no AAGUID extension: authData's AAGUID is only claimed
    att, cdj = packed_registration(key, cert, MODEL)
    assert evaluate_registration(policy, att, cdj, at=NOW, metadata=None).allowed  # control
    att, cdj = packed_registration(key, cert, DENIED)
    failed = _failed(evaluate_registration(policy, att, cdj, at=NOW, metadata=None))
    assert "as the key reports it" in failed["authenticator.allowed"]


def test_claimed_aaguid_without_entry_is_not_proved_by_another_models_key_id(
    tmp_path: Path,
) -> None:
    vendor = Vendor.create()
    text = lab_policy_trusting(tmp_path, vendor, f'allow_aaguids = ["{MODEL}"]').read_text()
    path = tmp_path / "policy.toml"
    path.write_text(text.replace("required = false", "required = true", 1))
    policy = load_policy(path)
    assert policy.metadata.required
    key, cert = vendor.batch(None)
    kid = key_identifier(cert)
    u2f = _entry(vendor, None, [kid], "Test Vendor U2F key")  # the key id names a U2F model
    att, cdj = packed_registration(key, cert, MODEL)
    decision = evaluate_registration(policy, att, cdj, at=NOW, metadata=_Metadata(u2f))
    assert not decision.allowed
    assert "is listed for Test Vendor U2F key" in _failed(decision)["metadata.entry"]
    # control: the same key, when the metadata lists its key id under the AAGUID it reports
    own = _entry(vendor, str(MODEL), [kid], "Test Vendor Model")
    decision = evaluate_registration(policy, att, cdj, at=NOW, metadata=_Metadata(own))
    assert decision.allowed, _failed(decision)
