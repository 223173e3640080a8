"""The software key's enterprise attestation (CTAP 2.1 §6.1.2 step 9 and §7.1).

- vendor-facilitated (enterpriseAttestation = 1): given only for the RP IDs the key was
  provisioned with (``KeyState.ep_rp_ids``, ``keyadmin sim init --ep-rp-id``); for any other
  RP the key answers with its ordinary batch attestation and no epAtt.
- platform-facilitated (enterpriseAttestation = 2): given for any RP; the platform decides.

An enterprise attestation is signed by a key of its own, whose certificate (issued by the key's
lab intermediate) carries the AAGUID and the key's serial in id-fido-gen-ce-sernum
(1.3.6.1.4.1.45724.1.1.2: an OCTET STRING holding the serial, here 4 bytes big-endian, the
way the AAGUID extension holds the AAGUID). The serial is per key and survives a reset.
"""

from __future__ import annotations

import secrets
import uuid
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

if TYPE_CHECKING:
    from keyadmin.sim.authenticator import SoftKey
    from keyadmin.sim.state import KeyState

OID_FIDO_SERNUM = x509.ObjectIdentifier("1.3.6.1.4.1.45724.1.1.2")
VENDOR_FACILITATED = 1
PLATFORM_FACILITATED = 2
MAX_SERIAL = 2**32 - 1


def new_serial() -> int:
    """An 8-digit serial, like the ones printed on YubiKeys."""
    return 10_000_000 + secrets.randbelow(90_000_000)


def serial_bytes(serial: int) -> bytes:
    return serial.to_bytes(4, "big")


def sernum_extension(serial: int) -> x509.UnrecognizedExtension:
    raw = serial_bytes(serial)
    return x509.UnrecognizedExtension(OID_FIDO_SERNUM, bytes([0x04, len(raw)]) + raw)


def configure(key: SoftKey, *, rp_ids: list[str] | None = None, serial: int | None = None) -> None:
    """Provision the vendor-facilitated RP ID list and (optionally) the serial; saves the key.

    A new serial drops the enterprise certificate, so the next one carries the new serial."""
    s = key.state
    if rp_ids is not None:
        bad = [r for r in rp_ids if not r or len(r) > 253 or r != r.strip()]
        if bad:
            raise ValueError(f"bad RP ID {bad[0]!r} for enterprise attestation")
        s.ep_rp_ids = list(dict.fromkeys(rp_ids))
    if serial is not None:
        if not 0 < serial <= MAX_SERIAL:
            raise ValueError(f"serial must be 1..{MAX_SERIAL}")
        s.serial = serial
        s.ep_cert_pem = s.ep_key_pem = ""
    key._save()


def grants(state: KeyState, ep: int | None, rp_id: str) -> bool:
    """Does this makeCredential (already checked: EA enabled, ep is 1 or 2) get an
    enterprise attestation? Only a key that attests with a certificate can give one."""
    if ep is None or state.attestation != "packed":
        return False
    if ep == PLATFORM_FACILITATED:
        return True
    return any(secrets.compare_digest(rp_id.encode(), r.encode()) for r in state.ep_rp_ids)


def signing_identity(state: KeyState) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """The enterprise attestation key and certificate (DER); made on first use (the caller
    saves the state with the credential)."""
    if not state.ep_cert_pem:
        _issue(state)
    from keyadmin.sim.pki import ec_key

    cert = x509.load_pem_x509_certificate(state.ep_cert_pem.encode())
    return ec_key(state.ep_key_pem), cert.public_bytes(serialization.Encoding.DER)


def _issue(state: KeyState) -> None:
    from keyadmin.sim.pki import ec_key, issue_leaf

    inter = x509.load_pem_x509_certificate(state.intermediate_cert_pem.encode())
    batch = x509.load_pem_x509_certificate(state.leaf_cert_pem.encode())
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue_leaf(
        uuid.UUID(state.aaguid).bytes,
        inter,
        ec_key(state.intermediate_key_pem),
        key,
        not_before=batch.not_valid_before_utc,
        not_after=batch.not_valid_after_utc,
        extensions=[sernum_extension(state.serial)],
        common_name=f"keyadmin softkey enterprise attestation SN {state.serial}",
    )
    state.ep_cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    state.ep_key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
