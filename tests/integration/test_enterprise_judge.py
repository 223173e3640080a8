"""keyadmin.flows.enterprise.judge on real registrations from the software key, verified by
keyadmin's own attestation code: the serial is taken only from a chain validated to a trust
anchor, never from a self attestation or from a key that claims epAtt without the certificate."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fido2.ctap2 import Config, Ctap2

from keyadmin.attestation.parse import parse_parts
from keyadmin.attestation.verify import verify_attestation
from keyadmin.flows.enterprise import EnterpriseAsk, judge
from keyadmin.sim.authenticator import SoftKey
from keyadmin.sim.enterprise import configure
from keyadmin.sim.hid import open_hid

CDH = b"\x11" * 32


def _policy(tmp_path: Path, key: SoftKey) -> object:
    """The lab policy for RP corp.example, requiring vendor-facilitated EA."""
    from keyadmin.policy.loader import load_policy
    from tests.support.enterprise import ea_table
    from tests.support.lab import LAB_POLICY

    (tmp_path / "lab-root.pem").write_text(key.root_certificate_pem())
    text = LAB_POLICY.read_text().replace('"example.com"', '"corp.example"')
    text = text.replace("https://example.com", "https://corp.example")
    text = text.replace("[keys_per_user]", ea_table("vendor", ["corp.example"]) + "[keys_per_user]")
    (tmp_path / "policy.toml").write_text(text)
    return load_policy(tmp_path / "policy.toml")


def _registration(tmp_path: Path, attestation: str, ep: int | None) -> tuple[object, object]:
    key = SoftKey.create(tmp_path / f"{attestation}.json", attestation=attestation)
    configure(key, rp_ids=["corp.example"], serial=42424242)
    ctap = Ctap2(open_hid(key))
    Config(ctap).enable_enterprise_attestation()
    resp = ctap.make_credential(
        CDH, {"id": "corp.example"}, {"id": b"u"}, [{"type": "public-key", "alg": -7}],
        enterprise_attestation=ep,
    )  # fmt: skip
    parsed = parse_parts(resp.fmt, resp.att_stmt, bytes(resp.auth_data), CDH)
    root = key.root_certificate_pem().encode()
    from cryptography import x509

    anchor = x509.load_pem_x509_certificate(root)
    evidence = verify_attestation(parsed, trust_anchors=[anchor], at=datetime.now(UTC))
    return (resp, evidence), _policy(tmp_path, key)


def test_the_serial_comes_from_a_verified_enterprise_chain(tmp_path) -> None:
    (resp, evidence), policy = _registration(tmp_path, "packed", 1)
    assert resp.ep_att is True and evidence.trusted
    reason, serial = judge(policy, EnterpriseAsk("vendor", ep_att=True), evidence)
    assert serial == "42424242" and reason is not None and reason["outcome"] == "pass"


def test_epatt_on_a_self_attestation_gives_no_serial(tmp_path) -> None:
    (resp, evidence), policy = _registration(tmp_path, "self", None)
    assert not evidence.trusted  # self attestation: no chain
    reason, serial = judge(policy, EnterpriseAsk("vendor", ep_att=True), evidence)
    assert serial is None and reason is not None and reason["outcome"] == "fail"
    assert "not verified" in reason["detail"]


def test_epatt_with_the_batch_certificate_gives_no_serial(tmp_path) -> None:
    (resp, evidence), policy = _registration(tmp_path, "packed", None)  # the batch certificate
    assert evidence.trusted
    reason, serial = judge(policy, EnterpriseAsk("vendor", ep_att=True), evidence)
    assert serial is None and reason is not None and reason["outcome"] == "fail"
    assert "no id-fido-gen-ce-sernum" in reason["detail"]


def test_no_epatt_means_no_serial_even_with_the_enterprise_certificate(tmp_path) -> None:
    (resp, evidence), policy = _registration(tmp_path, "packed", 1)
    reason, serial = judge(policy, EnterpriseAsk("vendor", ep_att=False), evidence)
    assert serial is None and reason is not None and reason["outcome"] == "fail"
