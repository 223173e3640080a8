"""Mutated real registrations are never allowed, and never raise.

Each baseline is a real capture that the policy ALLOWS unmutated (asserted first); every
mutation - a flipped byte in the signature, the attestation certificate, authData or
clientDataJSON, a swapped AAGUID, changed flags, trailing bytes - must turn the decision to
"refused" with every rule reported, and no exception may escape ``evaluate_registration``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fido2 import cbor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyadmin.policy import RULE_IDS, evaluate_registration, load_policy
from tests.unit.test_policy_support import (
    POLICIES,
    Capture,
    capture,
    metadata_for,
    policy_variant,
    registry_url,
)

BASELINES = [
    "jws-realexamples-YubikeyFips5Nfc",  # packed, EdDSA, UV, credProtect
    "fidomds-yubikey_5_nfc",  # packed, ES256
    "jws-realexamples-YubiKey4",  # fido-u2f, found by key identifier
]
SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("policy-props")
    # UV is optional here so that the UV=0 YubiKey captures are allowed as baselines.
    policy = load_policy(
        policy_variant(
            Path(tmp),
            "fido-certified-hardware.toml",
            {'user_verification = "required"': 'user_verification = "preferred"'},
        )
    )
    metadata = metadata_for(registry_url(tmp_path_factory))
    caps = {name: capture(name) for name in BASELINES}
    for cap in caps.values():
        decision = _judge(policy, metadata, cap, cap.attestation_object, cap.client_data_json)
        assert decision.allowed, (cap.name, decision.first_failure)
    assert (POLICIES / "fido-certified-hardware.toml").is_file()
    return {"policy": policy, "metadata": metadata, "caps": caps}


def _judge(policy: Any, metadata: Any, cap: Capture, att: bytes, cdj: bytes) -> Any:
    return evaluate_registration(
        policy, att, cdj, at=cap.at, metadata=metadata, rp_id=cap.rp_id, origins=[cap.origin]
    )


def _refused(env: dict[str, Any], cap: Capture, att: bytes, cdj: bytes | None = None) -> None:
    decision = _judge(
        env["policy"], env["metadata"], cap, att, cap.client_data_json if cdj is None else cdj
    )
    assert not decision.allowed, decision.reasons
    assert decision.first_failure is not None
    assert tuple(r.rule for r in decision.reasons) == RULE_IDS


def _flip(data: bytes, index: int, mask: int) -> bytes:
    i = index % len(data)
    return data[:i] + bytes([data[i] ^ mask]) + data[i + 1 :]


def _parts(cap: Capture) -> dict[str, Any]:
    obj = cbor.decode(cap.attestation_object)
    assert isinstance(obj, dict)
    return obj


def _encode(fmt: str, stmt: dict[str, Any], auth_data: bytes) -> bytes:
    return cbor.encode({"fmt": fmt, "attStmt": stmt, "authData": auth_data})


baseline = st.sampled_from(BASELINES)
index = st.integers(min_value=0, max_value=10_000)
mask = st.integers(min_value=1, max_value=255)


@SETTINGS
@given(name=baseline, i=index, m=mask)
def test_flipped_signature_byte(env: dict[str, Any], name: str, i: int, m: int) -> None:
    cap = env["caps"][name]
    obj = _parts(cap)
    stmt = dict(obj["attStmt"])
    stmt["sig"] = _flip(stmt["sig"], i, m)
    _refused(env, cap, _encode(obj["fmt"], stmt, obj["authData"]))


@SETTINGS
@given(name=baseline, i=index, m=mask)
def test_flipped_certificate_byte(env: dict[str, Any], name: str, i: int, m: int) -> None:
    cap = env["caps"][name]
    obj = _parts(cap)
    stmt = dict(obj["attStmt"])
    stmt["x5c"] = [_flip(stmt["x5c"][0], i, m), *stmt["x5c"][1:]]
    _refused(env, cap, _encode(obj["fmt"], stmt, obj["authData"]))


@SETTINGS
@given(name=baseline, i=index, m=mask)
def test_flipped_auth_data_byte(env: dict[str, Any], name: str, i: int, m: int) -> None:
    cap = env["caps"][name]
    obj = _parts(cap)
    _refused(env, cap, _encode(obj["fmt"], obj["attStmt"], _flip(obj["authData"], i, m)))


@SETTINGS
@given(name=baseline, new=st.binary(min_size=16, max_size=16))
def test_swapped_aaguid(env: dict[str, Any], name: str, new: bytes) -> None:
    cap = env["caps"][name]
    obj = _parts(cap)
    ad = obj["authData"]
    if ad[37:53] == new:
        new = bytes(b ^ 0xFF for b in new)
    _refused(env, cap, _encode(obj["fmt"], obj["attStmt"], ad[:37] + new + ad[53:]))


@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.parametrize(
    "other", ["ee882879-721c-4913-9775-3dfcce97072a", "c1f9a0bc-1dd2-404a-b27f-8e29047a43fd"]
)
def test_aaguid_of_another_certified_model(env: dict[str, Any], name: str, other: str) -> None:
    import uuid

    cap = env["caps"][name]
    obj = _parts(cap)
    ad = obj["authData"]
    new = uuid.UUID(other).bytes
    if ad[37:53] == new:  # the capture is that model already: swap in the other candidate
        new = uuid.UUID(
            next(
                o
                for o in (
                    "ee882879-721c-4913-9775-3dfcce97072a",
                    "c1f9a0bc-1dd2-404a-b27f-8e29047a43fd",
                )
                if o != other
            )
        ).bytes
    _refused(env, cap, _encode(obj["fmt"], obj["attStmt"], ad[:37] + new + ad[53:]))


@SETTINGS
@given(name=baseline, flags=st.integers(min_value=0, max_value=255))
def test_changed_flags(env: dict[str, Any], name: str, flags: int) -> None:
    cap = env["caps"][name]
    obj = _parts(cap)
    ad = obj["authData"]
    if flags == ad[32]:
        flags ^= 0x04
    _refused(env, cap, _encode(obj["fmt"], obj["attStmt"], ad[:32] + bytes([flags]) + ad[33:]))


@SETTINGS
@given(name=baseline, tail=st.binary(min_size=1, max_size=40), where=st.booleans())
def test_trailing_bytes(env: dict[str, Any], name: str, tail: bytes, where: bool) -> None:
    cap = env["caps"][name]
    if where:
        _refused(env, cap, cap.attestation_object + tail)
    else:
        obj = _parts(cap)
        _refused(env, cap, _encode(obj["fmt"], obj["attStmt"], obj["authData"] + tail))


@SETTINGS
@given(name=baseline, i=index, m=mask)
def test_flipped_client_data_byte(env: dict[str, Any], name: str, i: int, m: int) -> None:
    cap = env["caps"][name]
    _refused(env, cap, cap.attestation_object, _flip(cap.client_data_json, i, m))


@SETTINGS
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(env: dict[str, Any], data: bytes) -> None:
    cap = env["caps"][BASELINES[0]]
    _refused(env, cap, data)
