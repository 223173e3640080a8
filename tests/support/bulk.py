"""TEST/BENCH DATA GENERATOR: many approved credentials with real, verifiable evidence.

Each generated credential has its own P-256 key and a real ``packed`` attestation signed by a
lab model's attestation key (``keyadmin.sim.pki.generate_lab_pki``), so ``keyadmin audit``
re-verifies it for real. Rows go into the registry through
``tests.support.estate.bulk_add_credentials`` (one audit entry per batch), because enrolling
100,000 keys through the CTAP ceremony would take minutes. Nothing here is used by keyadmin.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fido2 import cbor

RP_ID = "example.com"
ORIGIN = "https://example.com"
FLAGS_UP_UV_AT = 0x45


@dataclass(frozen=True)
class LabModel:
    """A lab authenticator model: AAGUID, attestation key, chain, root."""

    aaguid: str
    leaf_key: ec.EllipticCurvePrivateKey
    x5c: tuple[bytes, ...]  # leaf, intermediate (DER)
    root_pem: bytes

    def root_file(self, directory: Path, name: str | None = None) -> Path:
        path = directory / (name or f"lab-root-{self.aaguid}.pem")
        path.write_bytes(self.root_pem)
        return path

    @property
    def root_der(self) -> bytes:
        return x509.load_pem_x509_certificate(self.root_pem).public_bytes(
            serialization.Encoding.DER
        )


def lab_model(aaguid: str) -> LabModel:
    from keyadmin.sim.pki import generate_lab_pki

    pki = generate_lab_pki(aaguid)
    leaf = x509.load_pem_x509_certificate(pki.leaf_cert_pem.encode())
    inter = x509.load_pem_x509_certificate(pki.intermediate_cert_pem.encode())
    key = serialization.load_pem_private_key(pki.leaf_key_pem.encode(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    der = serialization.Encoding.DER
    return LabModel(
        aaguid, key, (leaf.public_bytes(der), inter.public_bytes(der)), pki.root_cert_pem.encode()
    )


def registration(
    model: LabModel,
    sign_count: int = 0,
    *,
    flags: int = FLAGS_UP_UV_AT,
    rp_id: str = RP_ID,
    client_fields: dict[str, Any] | None = None,
) -> tuple[bytes, bytes, bytes, bytes]:
    """(attestation_object, client_data_json, credential_id, COSE public key) - all real.

    ``client_fields`` replace or add fields of the default client data (the challenge stays
    random); ``flags`` and ``rp_id`` set authenticator data as given, signed all the same.
    """
    import uuid

    key = ec.generate_private_key(ec.SECP256R1())
    nums = key.public_key().public_numbers()
    cose = cbor.encode(
        {1: 2, 3: -7, -1: 1, -2: nums.x.to_bytes(32, "big"), -3: nums.y.to_bytes(32, "big")}
    )
    cred_id = os.urandom(32)
    auth_data = (
        hashlib.sha256(rp_id.encode()).digest()
        + bytes([flags])
        + sign_count.to_bytes(4, "big")
        + uuid.UUID(model.aaguid).bytes
        + len(cred_id).to_bytes(2, "big")
        + cred_id
        + cose
    )
    import base64

    challenge = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    fields = {
        "type": "webauthn.create",
        "challenge": challenge,
        "origin": ORIGIN,
        "crossOrigin": False,
    }
    client_data = json.dumps({**fields, **(client_fields or {})}, separators=(",", ":")).encode()
    sig = model.leaf_key.sign(
        auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
    )
    att_obj = cbor.encode(
        {
            "fmt": "packed",
            "attStmt": {"alg": -7, "sig": sig, "x5c": list(model.x5c)},
            "authData": auth_data,
        }
    )
    return att_obj, client_data, cred_id, cose


def new_credential(
    user: str,
    model: LabModel,
    made: tuple[bytes, bytes, bytes, bytes],
    decision: dict[str, Any] | None = None,
) -> Any:
    """A ``NewCredential`` for ``bulk_add_credentials`` from a :func:`registration` result."""
    from tests.support.estate import NewCredential

    att, cd, cid, cose = made
    return NewCredential(
        user=user,
        user_handle=hashlib.sha256(user.encode()).digest(),
        credential_id=cid,
        public_key_cose=cose,
        sign_count=0,
        aaguid=model.aaguid,
        transports=("nfc", "usb"),
        attestation_object=att,
        client_data_json=cd,
        evidence={"generated": True},
        decision=decision or {"allowed": True, "generated": True},
    )


def generate(
    db_url: str,
    count: int,
    models: list[LabModel],
    *,
    users: int | None = None,
    start: int = 0,
    batch: int = 5000,
    firmware: dict[str, str] | None = None,
) -> list[bytes]:
    """Insert ``count`` active credentials, spread over ``models`` and ``users`` users.

    Returns the credential ids in insertion order. ``firmware`` (AAGUID -> version) is recorded
    in each decision the way an enrolment records the device's firmware.
    """
    from keyadmin.store.db import transaction
    from tests.support.estate import NewCredential, bulk_add_credentials

    users = users or max(1, count // 2)
    ids: list[bytes] = []
    pending: list[NewCredential] = []

    def flush() -> None:
        with transaction(db_url) as s:
            bulk_add_credentials(
                s,
                pending,
                operator="bulk-generator",
                policy_version_id=None,
                reason="test/bench data generator (tests/support/bulk.py)",
            )
        pending.clear()

    for i in range(start, start + count):
        model = models[i % len(models)]
        att, cd, cid, cose = registration(model)
        user = f"user{i % users:06d}"
        decision: dict[str, Any] = {"allowed": True, "generated": True}
        if firmware and model.aaguid in firmware:
            decision["device"] = {"firmware": firmware[model.aaguid]}
        pending.append(new_credential(user, model, (att, cd, cid, cose), decision))
        ids.append(cid)
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    return ids


def write_policy(
    directory: Path,
    models: list[LabModel],
    *,
    extra_roots: tuple[Path, ...] = (),
    aaguids: tuple[str, ...] = (),
    firmware_minimum: dict[str, str] | None = None,
    min_keys: int = 1,
    name: str = "lab-bulk",
) -> Path:
    """A lab policy (lab-softkey.toml's rules) trusting these models' roots and AAGUIDs."""
    roots = [m.root_file(directory) for m in models] + list(extra_roots)
    allowed = sorted({m.aaguid for m in models} | set(aaguids))
    fw = ""
    if firmware_minimum:
        fw = "\n[device.firmware_minimum]\n" + "".join(
            f'"{k}" = "{v}"\n' for k, v in firmware_minimum.items()
        )
    text = f"""# generated by tests/support/bulk.py: LAB ONLY
[policy]
name = "{name}"
version = 1
description = "LAB ONLY: generated lab models"

[relying_party]
rp_id = "{RP_ID}"
origins = ["{ORIGIN}"]

[attestation]
formats = ["packed"]
types = ["basic"]

[trust]
extra_roots = {json.dumps([p.name for p in roots])}

[metadata]
required = false

[authenticators]
allow_aaguids = {json.dumps(allowed)}
attachment = "any"

[credential]
device_bound = true
user_verification = "required"
algorithms = ["ES256", "EdDSA"]
counter = "strict"

[device]
pin_required = true
min_pin_length = 4
always_uv = false
{fw}
[step_up]
challenge_lifetime_seconds = 120
max_attempts = 5

[keys_per_user]
minimum = {min_keys}
maximum = 10
"""
    path = directory / f"{name}.toml"
    path.write_text(text)
    return path
