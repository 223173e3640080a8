"""fmt "android-key" (WebAuthn 8.4): Android Keystore key attestation.

python-fido2 2.2.1 has no verifier for this format; this one follows the spec:
the statement signature under the leaf key, the leaf key equal to the credential key,
the key description extension (1.3.6.1.4.1.11129.2.1.17) parsed as DER with
attestationChallenge == clientDataHash, no allApplications, and origin GENERATED and
purpose SIGN in the hardware-enforced (TEE / StrongBox) authorization list. A key whose
origin or purpose is only software-enforced is refused: it is not bound to hardware.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from keyadmin.attestation.der import (
    TAG_SEQUENCE,
    TAG_SET,
    DerError,
    Tlv,
    as_int,
    as_octets,
    children,
    expect,
    parse_one,
)
from keyadmin.attestation.errors import AttestationInvalid, AttestationMalformed
from keyadmin.attestation.formats._common import (
    bytes_field,
    check_not_ca,
    int_field,
    leaf,
    require_keys,
    signed_data,
)
from keyadmin.attestation.model import AttestationType, ParsedRegistration, StatementResult
from keyadmin.attestation.signatures import same_key, verify_signature

FMT = "android-key"
OID_KEY_DESCRIPTION = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.1.17")
TAG_PURPOSE = 1
TAG_ALL_APPLICATIONS = 600
TAG_ORIGIN = 702
KM_PURPOSE_SIGN = 2
KM_ORIGIN_GENERATED = 0
SECURITY_LEVELS = {0: "software", 1: "trusted_environment", 2: "strongbox"}


@dataclass(frozen=True)
class AuthorizationList:
    purposes: frozenset[int]
    origin: int | None
    all_applications: bool


@dataclass(frozen=True)
class KeyDescription:
    attestation_version: int
    attestation_security_level: int
    keymaster_security_level: int
    attestation_challenge: bytes
    software_enforced: AuthorizationList
    hardware_enforced: AuthorizationList


def verify_android_key(parsed: ParsedRegistration, at: datetime) -> StatementResult:
    require_keys(parsed.att_stmt, FMT, frozenset({"alg", "sig", "x5c"}))
    alg = int_field(parsed.att_stmt, "alg", FMT)
    sig = bytes_field(parsed.att_stmt, "sig", FMT)
    cert = leaf(parsed, FMT)
    check_not_ca(cert, FMT)
    verify_signature(
        cert.public_key(), alg, signed_data(parsed), sig, what="android-key statement signature"
    )
    if not same_key(cert.public_key(), parsed.verified_key("android-key key comparison")):
        raise AttestationInvalid("android-key certificate key differs from the credential key")
    desc = read_key_description(cert)
    check_key_description(desc, parsed.client_data_hash)
    details: dict[str, str | int | bool] = {
        "attestation_security_level": SECURITY_LEVELS.get(
            desc.attestation_security_level, str(desc.attestation_security_level)
        ),
        "keymaster_security_level": SECURITY_LEVELS.get(
            desc.keymaster_security_level, str(desc.keymaster_security_level)
        ),
        "attestation_version": desc.attestation_version,
    }
    return StatementResult(AttestationType.BASIC, parsed.x5c, details)


def check_key_description(desc: KeyDescription, client_data_hash: bytes) -> None:
    if not hmac.compare_digest(desc.attestation_challenge, client_data_hash):
        raise AttestationInvalid("android-key attestationChallenge is not the clientDataHash")
    if desc.software_enforced.all_applications or desc.hardware_enforced.all_applications:
        raise AttestationInvalid("android-key key is usable by all applications (allApplications)")
    hw = desc.hardware_enforced
    if hw.origin != KM_ORIGIN_GENERATED:
        raise AttestationInvalid(
            "android-key key origin is not hardware-enforced GENERATED "
            f"(hardware origin {hw.origin}, software origin {desc.software_enforced.origin})"
        )
    if KM_PURPOSE_SIGN not in hw.purposes:
        raise AttestationInvalid("android-key hardware-enforced purposes do not include SIGN")


def read_key_description(cert: x509.Certificate) -> KeyDescription:
    try:
        ext = cert.extensions.get_extension_for_oid(OID_KEY_DESCRIPTION)
    except x509.ExtensionNotFound:
        raise AttestationInvalid("android-key certificate lacks the key description") from None
    except ValueError as e:
        raise AttestationMalformed(f"android-key certificate extensions: {e}") from None
    if not isinstance(ext.value, x509.UnrecognizedExtension):
        raise AttestationMalformed("android-key key description has an unexpected type")
    try:
        return parse_key_description(ext.value.value)
    except DerError as e:
        raise AttestationMalformed(f"android-key key description is not DER: {e}") from None


def parse_key_description(data: bytes) -> KeyDescription:
    items = children(expect(parse_one(data), TAG_SEQUENCE, "KeyDescription"))
    if len(items) < 8:
        raise DerError(f"KeyDescription has {len(items)} fields, expected at least 8")
    return KeyDescription(
        attestation_version=as_int(items[0], "attestationVersion"),
        attestation_security_level=as_int(items[1], "attestationSecurityLevel"),
        keymaster_security_level=as_int(items[3], "keymasterSecurityLevel"),
        attestation_challenge=as_octets(items[4], "attestationChallenge"),
        software_enforced=_parse_authorization_list(items[6], "softwareEnforced"),
        hardware_enforced=_parse_authorization_list(items[7], "teeEnforced"),
    )


def _parse_authorization_list(tlv: Tlv, what: str) -> AuthorizationList:
    purposes: set[int] = set()
    origin: int | None = None
    all_apps = False
    for item in children(expect(tlv, TAG_SEQUENCE, what)):
        if item.tag_class != 2:
            raise DerError(f"{what}: expected context-specific tags")
        if item.tag == TAG_PURPOSE:
            (inner,) = _explicit(item, what)
            for p in children(expect(inner, TAG_SET, f"{what}.purpose")):
                purposes.add(as_int(p, f"{what}.purpose"))
        elif item.tag == TAG_ORIGIN:
            (inner,) = _explicit(item, what)
            origin = as_int(inner, f"{what}.origin")
        elif item.tag == TAG_ALL_APPLICATIONS:
            all_apps = True
    return AuthorizationList(frozenset(purposes), origin, all_apps)


def _explicit(item: Tlv, what: str) -> list[Tlv]:
    inner = children(item)
    if len(inner) != 1:
        raise DerError(f"{what}: [{item.tag}] must wrap exactly one element")
    return inner
