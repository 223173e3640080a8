"""Build and check the BLOB signer's certificate path to a trust anchor.

Checks, in this order, each raising a precise error:

1. every x5c entry is a DER certificate (``ChainInvalid``);
2. x5c is in issuing order: x5c[i] is issued by x5c[i+1], by name and signature (``ChainInvalid``);
3. the shortest path from the signer to an anchor: the first x5c certificate that *is* an anchor,
   or is issued by one (``ChainUntrusted``); certificates after that point are not on the path;
4. under a pinned (public web-PKI) root the signer must be issued for the FIDO Alliance MDS host
   (``SignerNameMismatch``);
5. every certificate on the path, the anchor included, is valid at the time of use
   (``CertificateNotValidAtTime``);
6. RFC 5280 path validation by ``cryptography.x509.verification`` at that time, CA certificates
   required to carry basicConstraints (``ChainUntrusted``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from keyadmin.mds.errors import (
    CertificateNotValidAtTime,
    ChainInvalid,
    ChainUntrusted,
    SignerNameMismatch,
)
from keyadmin.mds.roots import PRODUCTION_SIGNER_NAMES, Anchor

if TYPE_CHECKING:
    from cryptography.x509 import Certificate


def cert_summary(cert: Certificate) -> dict[str, Any]:
    from cryptography.hazmat.primitives import hashes

    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "sha256": cert.fingerprint(hashes.SHA256()).hex(),
    }


@dataclass(frozen=True)
class VerifiedChain:
    """The path signer -> ... -> anchor, checked at ``at``."""

    path: tuple[Certificate, ...]  # path[0] is the signer, path[-1] the anchor's certificate
    anchor: Anchor
    at: datetime

    @property
    def signer(self) -> Certificate:
        return self.path[0]

    def describe(self) -> list[dict[str, Any]]:
        return [cert_summary(c) for c in self.path]


def _issued_by(cert: Certificate, issuer: Certificate) -> bool:
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def load_x5c(ders: list[bytes]) -> list[Certificate]:
    from cryptography import x509

    certs = []
    for i, der in enumerate(ders):
        try:
            certs.append(x509.load_der_x509_certificate(der))
        except ValueError as e:
            raise ChainInvalid(f"x5c[{i}] is not a DER X.509 certificate: {e}", index=i) from e
    return certs


def check_order(certs: list[Certificate]) -> None:
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

    for i in range(len(certs) - 1):
        child, parent = certs[i], certs[i + 1]
        if child.issuer != parent.subject:
            raise ChainInvalid(
                f"x5c is not in issuing order: x5c[{i}] ({child.subject.rfc4514_string()}) is "
                f"issued by {child.issuer.rfc4514_string()}, but x5c[{i + 1}] is "
                f"{parent.subject.rfc4514_string()}",
                index=i,
            )
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as e:
            raise ChainInvalid(
                f"x5c[{i}]'s certificate signature does not verify with x5c[{i + 1}]'s key",
                index=i,
            ) from e


def find_path(certs: list[Certificate], anchors: list[Anchor]) -> tuple[list[Certificate], Anchor]:
    from cryptography.hazmat.primitives import hashes

    by_fp = {a.sha256: a for a in anchors}
    anchor_certs = [(a, a.certificate()) for a in anchors]
    for i, cert in enumerate(certs):
        fp = cert.fingerprint(hashes.SHA256()).hex()
        if fp in by_fp:
            return certs[: i + 1], by_fp[fp]
        for anchor, acert in anchor_certs:
            if cert.issuer == acert.subject and _issued_by(cert, acert):
                return certs[: i + 1] + [acert], anchor
    last = certs[-1]
    raise ChainUntrusted(
        f"the signer chain ends at {last.issuer.rfc4514_string()!r}, which is none of the "
        f"trusted roots ({'; '.join(f'{a.name} {a.sha256[:16]}…' for a in anchors)})",
        issuer=last.issuer.rfc4514_string(),
        trusted=[a.sha256 for a in anchors],
    )


def check_signer_name(signer: Certificate) -> None:
    from cryptography import x509

    try:
        san = signer.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [n.lower() for n in san.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        names = []
    if not set(names) & set(PRODUCTION_SIGNER_NAMES):
        raise SignerNameMismatch(
            f"the signer certificate ({signer.subject.rfc4514_string()}) is issued for "
            f"{names or 'no DNS name'}, not for {' or '.join(PRODUCTION_SIGNER_NAMES)}",
            names=names,
        )


def check_validity(path: list[Certificate], at: datetime) -> None:
    for i, cert in enumerate(path):
        nb, na = cert.not_valid_before_utc, cert.not_valid_after_utc
        role = "signer" if i == 0 else ("root" if i == len(path) - 1 else f"intermediate {i}")
        if at < nb or at > na:
            state = "not yet valid" if at < nb else "expired"
            raise CertificateNotValidAtTime(
                f"the {role} certificate ({cert.subject.rfc4514_string()}) is {state} at "
                f"{at.isoformat()}: valid {nb.isoformat()} .. {na.isoformat()}",
                role=role,
                state=state,
                subject=cert.subject.rfc4514_string(),
                not_before=nb.isoformat(),
                not_after=na.isoformat(),
                at=at.isoformat(),
            )


def rfc5280_validate(path: list[Certificate], at: datetime) -> None:
    from cryptography import x509
    from cryptography.x509.verification import (
        Criticality,
        ExtensionPolicy,
        PolicyBuilder,
        Store,
        VerificationError,
    )

    # Web-PKI defaults demand subjectAltName / authorityKeyIdentifier on leaves, which the
    # conformance and spec-example signers lack; CAs must still be CAs.
    ca_policy = ExtensionPolicy.permit_all().require_present(
        x509.BasicConstraints, Criticality.AGNOSTIC, None
    )
    verifier = (
        PolicyBuilder()
        .store(Store([path[-1]]))
        .time(at)
        .extension_policies(ca_policy=ca_policy, ee_policy=ExtensionPolicy.permit_all())
        .build_client_verifier()
    )
    try:
        verifier.verify(path[0], path[1:-1])
    except VerificationError as e:
        raise ChainUntrusted(f"RFC 5280 path validation failed: {e}", detail=str(e)) from e


def verify_chain(x5c: list[bytes], anchors: list[Anchor], at: datetime) -> VerifiedChain:
    """Run checks 1-6 above; return the verified path."""
    if not anchors:
        raise ChainUntrusted("no trust anchors configured", hint="this is a bug: report it")
    certs = load_x5c(x5c)
    check_order(certs)
    path, anchor = find_path(certs, anchors)
    if len(path) == 1:
        raise ChainUntrusted(
            "the JWS is signed directly by a root certificate; MDS3 requires a signer certificate"
        )
    if anchor.pinned:
        check_signer_name(path[0])
    check_validity(path, at)
    rfc5280_validate(path, at)
    return VerifiedChain(tuple(path), anchor, at)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
