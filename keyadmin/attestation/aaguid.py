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


def read_certificate_aaguid(cert: x509.Certificate) -> UUID | None:
    """The AAGUID in the certificate's FIDO extension, or None when it has none."""
    try:
        ext = cert.extensions.get_extension_for_oid(OID_FIDO_GEN_CE_AAGUID)
    except x509.ExtensionNotFound:
        return None
    except ValueError as e:
        raise AttestationMalformed(
            f"attestation certificate extensions do not parse: {e}"
        ) from None
    if ext.critical:
        raise AttestationMalformed("the id-fido-gen-ce-aaguid extension must not be critical")
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise AttestationMalformed("the id-fido-gen-ce-aaguid extension has an unexpected type")
    try:
        raw = as_octets(parse_one(value.value), "id-fido-gen-ce-aaguid")
    except DerError as e:
        raise AttestationMalformed(f"the id-fido-gen-ce-aaguid extension is not DER: {e}") from None
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
