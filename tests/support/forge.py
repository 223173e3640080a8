"""Packed registrations signed under a CA made in the test: for the policy cases no real
capture exists for (a key that lies about its AAGUID, clears UP, ...). The CA is trusted only
through the policy written beside it."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC)


def _name(cn: str, ou: str | None = None) -> x509.Name:
    attrs = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Vendor"),
    ]
    if ou:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


@dataclass
class Vendor:
    key: Any
    root: x509.Certificate

    @classmethod
    def create(cls, cn: str = "Test Vendor Root") -> Vendor:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = _name(cn)
        root = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - timedelta(days=1))
            .not_valid_after(NOW + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, root)

    @property
    def root_der(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.DER)

    @property
    def root_sha256(self) -> str:
        return hashlib.sha256(self.root_der).hexdigest()

    def batch(self, cert_aaguid: uuid.UUID | None) -> tuple[Any, x509.Certificate]:
        """An attestation key and its certificate (with the AAGUID extension, or without),
        issued as the software key's lab PKI issues its leaf."""
        from keyadmin.sim.pki import issue_leaf

        key = ec.generate_private_key(ec.SECP256R1())
        cert = issue_leaf(
            cert_aaguid.bytes if cert_aaguid is not None else None,
            self.root,
            self.key,
            key,
            not_before=NOW - timedelta(days=1),
            not_after=NOW + timedelta(days=3650),
        )
        return key, cert


def packed_registration(
    att_key: Any,
    att_cert: x509.Certificate,
    aaguid: uuid.UUID,
    *,
    flags: int = 0x45,
    rp_id: str = "example.com",
    origin: str = "https://example.com",
    cose: dict[int, Any] | None = None,
) -> tuple[bytes, bytes]:
    """(attestationObject, clientDataJSON) of a packed full-attestation registration; the
    credential key is a fresh ES256 key unless ``cose`` gives another COSE_Key."""
    from fido2 import cbor

    if cose is None:
        cred = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
        x, y = cred.x.to_bytes(32, "big"), cred.y.to_bytes(32, "big")
        cose = {1: 2, 3: -7, -1: 1, -2: x, -3: y}
    cred_id = os.urandom(16)
    auth = (
        hashlib.sha256(rp_id.encode()).digest()
        + bytes([flags])
        + (0).to_bytes(4, "big")
        + aaguid.bytes
        + len(cred_id).to_bytes(2, "big")
        + cred_id
        + cbor.encode(cose)
    )
    challenge = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    cdj = json.dumps({"type": "webauthn.create", "challenge": challenge, "origin": origin}).encode()
    sig = att_key.sign(auth + hashlib.sha256(cdj).digest(), ec.ECDSA(hashes.SHA256()))
    der = att_cert.public_bytes(serialization.Encoding.DER)
    att = cbor.encode(
        {"fmt": "packed", "attStmt": {"alg": -7, "sig": sig, "x5c": [der]}, "authData": auth}
    )
    return att, cdj


def lab_policy_trusting(directory: Path, vendor: Vendor, authenticators: str) -> Path:
    """policies/lab-softkey.toml trusting only ``vendor``'s root, with the given allow/deny
    lines in place of its allowlist."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vendor-root.pem").write_bytes(
        vendor.root.public_bytes(serialization.Encoding.PEM)
    )
    text = (REPO / "policies" / "lab-softkey.toml").read_text()
    text = text.replace('extra_roots = ["lab-root.pem"]', 'extra_roots = ["vendor-root.pem"]')
    text = re.sub(r"allow_aaguids = \[[^\]]*\]", authenticators, text, count=1)
    path = directory / "policy.toml"
    path.write_text(text)
    return path
