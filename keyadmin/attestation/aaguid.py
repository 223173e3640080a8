"""Step 3: the AAGUID the attestation certificate vouches for, compared with authData.

The AAGUID in authenticator data is self-asserted; the one in the certificate extension
id-fido-gen-ce-aaguid (1.3.6.1.4.1.45724.1.1.4) is signed by the vendor's CA. When the
extension is present it must be a non-critical OCTET STRING of exactly 16 bytes that equals
the authData AAGUID, otherwise the registration is refused (fido-u2f, whose authData AAGUID
is zeros by construction, is the documented exception).
"""

from __future__ import annotations

from uuid import UUID

from cryptography import x509

from keyadmin.attestation.der import DerError, as_octets, parse_one
from keyadmin.attestation.errors import AaguidMismatch, AttestationMalformed

OID_FIDO_GEN_CE_AAGUID = x509.ObjectIdentifier("1.3.6.1.4.1.45724.1.1.4")


def fido_extension_octets(
    cert: x509.Certificate, oid: x509.ObjectIdentifier, name: str
) -> bytes | None:
    """The bytes of a FIDO certificate extension holding an OCTET STRING (id-fido-gen-ce-aaguid,
    id-fido-gen-ce-sernum), or None when the certificate has none. It must not be critical."""
    try:
        ext = cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None
    except ValueError as e:
        raise AttestationMalformed(
            f"attestation certificate extensions do not parse: {e}"
        ) from None
    if ext.critical:
        raise AttestationMalformed(f"the {name} extension must not be critical")
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise AttestationMalformed(f"the {name} extension has an unexpected type")
    try:
        return as_octets(parse_one(value.value), name)
    except DerError as e:
        raise AttestationMalformed(f"the {name} extension is not DER: {e}") from None


def read_certificate_aaguid(cert: x509.Certificate) -> UUID | None:
    """The AAGUID in the certificate's FIDO extension, or None when it has none."""
    raw = fido_extension_octets(cert, OID_FIDO_GEN_CE_AAGUID, "id-fido-gen-ce-aaguid")
    if raw is None:
        return None
    if len(raw) != 16:
        raise AttestationMalformed(
            f"the id-fido-gen-ce-aaguid extension holds {len(raw)} bytes, not 16"
        )
    return UUID(bytes=raw)


def check_aaguid(fmt: str, authenticator_aaguid: UUID, certificate_aaguid: UUID | None) -> None:
    """Refuse a certificate AAGUID that differs from the one in authenticator data.

    fido-u2f is the one exception: the client, not the authenticator, builds its
    authenticator data with an all-zero AAGUID (WebAuthn 8.6), so there the certificate's
    AAGUID is recorded but not compared with the zeros.
    """
    if fmt == "fido-u2f" and authenticator_aaguid.int == 0:
        return
    if certificate_aaguid is not None and certificate_aaguid != authenticator_aaguid:
        raise AaguidMismatch(str(authenticator_aaguid), str(certificate_aaguid))
