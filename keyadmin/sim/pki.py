"""The software key's lab attestation PKI: root -> intermediate -> leaf.

Generated per state file. The leaf follows the packed attestation certificate
requirements (WebAuthn §8.2.1): X.509 v3, Subject C/O/CN and
OU="Authenticator Attestation", basicConstraints CA=false, and the
id-fido-gen-ce-aaguid extension (1.3.6.1.4.1.45724.1.1.4) holding the AAGUID
as an OCTET STRING, not critical.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

OID_FIDO_AAGUID = x509.ObjectIdentifier("1.3.6.1.4.1.45724.1.1.4")
ORG = "keyadmin SOFTWARE key lab (not hardware)"


@dataclass(frozen=True)
class LabPki:
    root_cert_pem: str
    root_key_pem: str
    intermediate_cert_pem: str
    intermediate_key_pem: str
    leaf_cert_pem: str
    leaf_key_pem: str


def _name(cn: str, ou: str | None = None) -> x509.Name:
    attrs = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "SE"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
    ]
    if ou:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _pem_cert(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def aaguid_extension(aaguid: bytes) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(OID_FIDO_AAGUID, b"\x04\x10" + aaguid)


def issue_leaf(
    aaguid: bytes | None,
    issuer_cert: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    *,
    not_before: dt.datetime,
    not_after: dt.datetime,
    extensions: list[x509.UnrecognizedExtension] | None = None,
    common_name: str = "keyadmin softkey attestation",
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, "Authenticator Attestation"))
        .issuer_name(issuer_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if aaguid is not None:
        builder = builder.add_extension(aaguid_extension(aaguid), critical=False)
    for ext in extensions or []:
        builder = builder.add_extension(ext, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def generate_lab_pki(
    aaguid: str, *, now: dt.datetime | None = None, leaf_under_root: bool = False
) -> LabPki:
    """A fresh root (20 years), intermediate (15 years) and attestation leaf (10 years).

    ``leaf_under_root`` issues the leaf straight from the root, for fido-u2f
    attestation, whose x5c carries exactly one certificate.
    """
    now = now or dt.datetime.now(dt.UTC)
    start = now - dt.timedelta(days=1)
    root_key = ec.generate_private_key(ec.SECP256R1())
    inter_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name("keyadmin softkey lab root")
    ca_usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=365 * 20))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(ca_usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), False)
        .sign(root_key, hashes.SHA256())
    )
    inter = (
        x509.CertificateBuilder()
        .subject_name(_name("keyadmin softkey lab intermediate"))
        .issuer_name(root_name)
        .public_key(inter_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=365 * 15))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(ca_usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(inter_key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False
        )
        .sign(root_key, hashes.SHA256())
    )
    leaf = issue_leaf(
        uuid.UUID(aaguid).bytes,
        root if leaf_under_root else inter,
        root_key if leaf_under_root else inter_key,
        leaf_key,
        not_before=start,
        not_after=start + dt.timedelta(days=365 * 10),
    )
    return LabPki(
        root_cert_pem=_pem_cert(root),
        root_key_pem=_pem_key(root_key),
        intermediate_cert_pem=_pem_cert(inter),
        intermediate_key_pem=_pem_key(inter_key),
        leaf_cert_pem=_pem_cert(leaf),
        leaf_key_pem=_pem_key(leaf_key),
    )


def ec_key(pem: str) -> ec.EllipticCurvePrivateKey:
    """One of the key's own attestation keys (all EC P-256: generate_lab_pki, enterprise)."""
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError("an attestation key of the software key is not an EC key")
    return key
