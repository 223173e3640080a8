"""The key's serial in an enterprise attestation certificate: id-fido-gen-ce-sernum.

The extension (1.3.6.1.4.1.45724.1.1.2; WebAuthn L3 §8.2.2) holds an OCTET STRING with the
serial, the way id-fido-gen-ce-aaguid holds the AAGUID. keyadmin writes a serial of up to 8
bytes as its decimal number (YubiKeys print theirs that way), a longer one as lower-case hex.
Callers read it only from the leaf of a chain that was validated to a trust anchor.
"""

from __future__ import annotations

from cryptography import x509

from keyadmin.attestation.aaguid import fido_extension_octets
from keyadmin.attestation.errors import AttestationMalformed

OID_FIDO_GEN_CE_SERNUM = x509.ObjectIdentifier("1.3.6.1.4.1.45724.1.1.2")
MAX_SERIAL_BYTES = 64


def serial_text(raw: bytes) -> str:
    return str(int.from_bytes(raw, "big")) if len(raw) <= 8 else raw.hex()


def read_certificate_serial(cert: x509.Certificate) -> str | None:
    """The serial in the certificate's sernum extension, or None when it has none."""
    raw = fido_extension_octets(cert, OID_FIDO_GEN_CE_SERNUM, "id-fido-gen-ce-sernum")
    if raw is None:
        return None
    if not 0 < len(raw) <= MAX_SERIAL_BYTES:
        raise AttestationMalformed(
            f"the id-fido-gen-ce-sernum extension holds {len(raw)} bytes "
            f"(1..{MAX_SERIAL_BYTES} accepted)"
        )
    return serial_text(raw)
