"""fmt "tpm" (WebAuthn 8.3): a TPM 2.0 key certified by an attestation identity key.

The TPM structures are read with python-fido2's parsers (``TpmPublicFormat``,
``TpmAttestationFormat``). Beyond python-fido2: ``ver`` must be "2.0", the AIK
certificate's subject must be empty with the TPM manufacturer, model and version in a
subjectAltName directoryName, the manufacturer must be a registered TPM vendor ID, and
parser failures of any type become ``AttestationMalformed``.
"""

from __future__ import annotations

import struct
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from fido2.attestation.tpm import TpmAttestationFormat, TpmPublicFormat

from keyadmin.attestation.errors import (
    AttestationInvalid,
    AttestationMalformed,
    AttestationUnsupported,
)
from keyadmin.attestation.formats._common import (
    bytes_field,
    check_v3_end_entity,
    int_field,
    leaf,
    require_keys,
    signed_data,
)
from keyadmin.attestation.model import AttestationType, ParsedRegistration, StatementResult
from keyadmin.attestation.signatures import hash_for, same_key, verify_signature

FMT = "tpm"
OID_TCG_KP_AIK_CERTIFICATE = x509.ObjectIdentifier("2.23.133.8.3")
OID_TPM_MANUFACTURER = x509.ObjectIdentifier("2.23.133.2.1")
OID_TPM_MODEL = x509.ObjectIdentifier("2.23.133.2.2")
OID_TPM_VERSION = x509.ObjectIdentifier("2.23.133.2.3")

# TCG TPM Vendor ID Registry (hex of the 4-byte vendor ID), plus the FIDO conformance ID.
TPM_VENDOR_IDS = frozenset(
    {
        "414D4400",
        "41544D4C",
        "4252434D",
        "4353434F",
        "464C5953",
        "474F4F47",
        "48504900",
        "48504500",
        "48495349",
        "49424D00",
        "49465800",
        "494E5443",
        "4C454E00",
        "4D534654",
        "4E534D20",
        "4E545A00",
        "4E544300",
        "51434F4D",
        "534D5343",
        "53544D20",
        "534D534E",
        "534E5300",
        "54584E00",
        "57454300",
        "524F4343",
        "FFFFF1D0",
    }
)

_TPM_PARSE_ERRORS = (
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    struct.error,
    NotImplementedError,
    OverflowError,
)


def verify_tpm(parsed: ParsedRegistration, at: datetime) -> StatementResult:
    stmt = parsed.att_stmt
    if "ecdaaKeyId" in stmt:
        raise AttestationUnsupported("tpm ECDAA attestation is not supported (withdrawn)")
    require_keys(stmt, FMT, frozenset({"ver", "alg", "x5c", "sig", "certInfo", "pubArea"}))
    if stmt["ver"] != "2.0":
        raise AttestationMalformed(f"tpm ver is {stmt['ver']!r}, not '2.0'")
    alg = int_field(stmt, "alg", FMT)
    sig = bytes_field(stmt, "sig", FMT)
    cert_info_bytes = bytes_field(stmt, "certInfo", FMT)
    pub_area_bytes = bytes_field(stmt, "pubArea", FMT)
    cert = leaf(parsed, FMT)

    pub_area = _parse_pub_area(pub_area_bytes)
    check_pub_area_key(pub_area, parsed)
    cert_info = _parse_cert_info(cert_info_bytes)
    check_extra_data(cert_info, alg, parsed)
    check_attested_name(cert_info, pub_area)
    details = check_aik_certificate(cert)
    verify_signature(
        cert.public_key(), alg, cert_info_bytes, sig, what="tpm certInfo signature", allow_weak=True
    )
    details["statement_alg"] = alg
    return StatementResult(AttestationType.ATTCA, parsed.x5c, details)


def _parse_pub_area(data: bytes) -> TpmPublicFormat:
    try:
        return TpmPublicFormat.parse(data)
    except _TPM_PARSE_ERRORS as e:
        raise AttestationMalformed(f"tpm pubArea does not parse: {e}") from None


def _parse_cert_info(data: bytes) -> TpmAttestationFormat:
    try:
        info = TpmAttestationFormat.parse(data)
    except _TPM_PARSE_ERRORS as e:
        raise AttestationMalformed(f"tpm certInfo does not parse: {e}") from None
    # fido2's parser stops after the attested name; anything after it is not TPMS_ATTEST.
    expected_len = 4 + 2 + 2 + len(info.name) + 2 + len(info.data) + 17 + 8
    expected_len += 2 + len(info.attested.name) + 2 + len(info.attested.qualified_name)
    if expected_len != len(data):
        raise AttestationMalformed(f"tpm certInfo has {len(data) - expected_len} trailing bytes")
    return info


def check_pub_area_key(pub_area: TpmPublicFormat, parsed: ParsedRegistration) -> None:
    """The key in pubArea must be the credential public key."""
    try:
        key = pub_area.public_key()
    except _TPM_PARSE_ERRORS as e:
        raise AttestationMalformed(f"tpm pubArea key does not load: {e}") from None
    if not same_key(key, parsed.verified_key("tpm pubArea key comparison")):
        raise AttestationInvalid("tpm pubArea key differs from the credential public key")


def check_extra_data(cert_info: TpmAttestationFormat, alg: int, parsed: ParsedRegistration) -> None:
    """extraData must be the hash, under alg's digest, of authData || clientDataHash."""
    digest = hashes.Hash(hash_for(alg))
    digest.update(signed_data(parsed))
    if cert_info.data != digest.finalize():
        raise AttestationInvalid(
            "tpm certInfo extraData is not the hash of authData || clientDataHash"
        )


def check_attested_name(cert_info: TpmAttestationFormat, pub_area: TpmPublicFormat) -> None:
    try:
        name = pub_area.name()
    except _TPM_PARSE_ERRORS as e:
        raise AttestationMalformed(f"tpm pubArea name cannot be computed: {e}") from None
    if cert_info.attested.name != name:
        raise AttestationInvalid("tpm certInfo attested name is not the name of pubArea")


def check_aik_certificate(cert: x509.Certificate) -> dict[str, str | int | bool]:
    """WebAuthn 8.3.1: v3, empty subject, SAN with TPM identity, AIK EKU, CA=false."""
    check_v3_end_entity(cert, FMT)
    if len(cert.subject) != 0:
        raise AttestationInvalid("tpm AIK certificate subject must be empty")
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound as e:
        raise AttestationInvalid(f"tpm AIK certificate lacks {e.oid.dotted_string}") from None
    except ValueError as e:
        raise AttestationMalformed(f"tpm AIK certificate extensions: {e}") from None
    if OID_TCG_KP_AIK_CERTIFICATE not in list(eku):
        raise AttestationInvalid("tpm AIK certificate lacks the tcg-kp-AIKCertificate key usage")
    found: dict[str, str] = {}
    for name in san.get_values_for_type(x509.DirectoryName):
        for oid, label in (
            (OID_TPM_MANUFACTURER, "tpm_manufacturer"),
            (OID_TPM_MODEL, "tpm_model"),
            (OID_TPM_VERSION, "tpm_version"),
        ):
            for attr in name.get_attributes_for_oid(oid):
                if isinstance(attr.value, str):
                    found[label] = attr.value
    if set(found) != {"tpm_manufacturer", "tpm_model", "tpm_version"}:
        raise AttestationInvalid(
            "tpm AIK certificate subjectAltName lacks the TPM manufacturer, model or version"
        )
    vendor = found["tpm_manufacturer"]
    if not vendor.startswith("id:") or vendor[3:].upper() not in TPM_VENDOR_IDS:
        raise AttestationInvalid(f"tpm manufacturer {vendor!r} is not a registered TPM vendor")
    return dict(found)
