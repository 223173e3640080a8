"""Step 5: build and validate the certificate path from the attestation certificate to an anchor.

``cryptography.x509.verification`` does the work (path building, signatures, validity at
``at``, the allowed signature algorithms and minimum RSA size of its policy). Its web-PKI
extension defaults do not fit attestation PKIs (the Yubico root's basicConstraints is not
critical, TPM AIK certificates carry a critical certificatePolicies), so the extension
policies here are explicit:

* CA certificates: basicConstraints present with CA=true; keyUsage, when present, has
  keyCertSign; pathLenConstraint is checked on the built chain (``check_path_lengths``).
* the attestation certificate: basicConstraints, when present, has CA=false; keyUsage,
  when present, has digitalSignature; a critical certificatePolicies is accepted.

One documented exception: early Yubico U2F attestation certificates (YubiKey 4 era) encode
sha256WithRSAEncryption without the NULL parameter, which ``cryptography``'s verifier
refuses as a forbidden algorithm although the signature itself is sound. For such a leaf
only, keyadmin checks the leaf's own requirements and its signature by its issuer here, and
hands the issuer (a CA) to the same verifier for the rest of the path.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from keyadmin.attestation.der import TAG_OID, TAG_SEQUENCE, DerError, children, parse_one
from keyadmin.attestation.errors import AttestationUntrusted

# sha{256,384,512}WithRSAEncryption, DER-encoded OID contents.
_RSA_PKCS1_OIDS = {
    bytes.fromhex("2a864886f70d01010b"),
    bytes.fromhex("2a864886f70d01010c"),
    bytes.fromhex("2a864886f70d01010d"),
}
_STRONG_HASHES = (hashes.SHA256, hashes.SHA384, hashes.SHA512)


def describe(cert: x509.Certificate) -> str:
    subject = cert.subject.rfc4514_string()
    return (
        f"'{subject}'" if subject else f"(empty subject, issuer '{cert.issuer.rfc4514_string()}')"
    )


def validate_path(
    chain: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate], at: datetime
) -> tuple[x509.Certificate, ...]:
    """Return the validated path leaf..anchor, or raise ``AttestationUntrusted``."""
    if not chain:
        raise AttestationUntrusted("the statement carries no certificate to validate")
    if not anchors:
        raise AttestationUntrusted(
            "no trust anchors: the metadata entry has no attestationRootCertificates and "
            "the policy names no root, so the chain cannot be trusted"
        )
    if at.tzinfo is None:
        raise AttestationUntrusted("verification time must be timezone-aware")
    check_validity(chain, at)
    leaf, intermediates = chain[0], list(chain[1:])
    if has_legacy_rsa_algorithm(leaf):
        path = _validate_legacy_leaf(leaf, intermediates, anchors, at)
    else:
        path = _verify(leaf, intermediates, anchors, at, leaf_is_ca=False)
    check_path_lengths(path)
    check_all_presented_used(chain, path, anchors)
    return path


def check_all_presented_used(
    chain: Sequence[x509.Certificate],
    path: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
) -> None:
    """Every certificate the statement presents must be verified by something.

    Certificates on the validated path are. Real statements also carry a CA in another form
    than the path used: a cross-signed root (SafetyNet's GTS Root R1 signed by GlobalSign) or
    a re-issued self-signed root (Android's Google root). Such a certificate is accepted when
    it has the subject and key of a CA on the path and its own signature verifies under a
    presented, path or anchor certificate. Anything else is refused, so no byte of the
    statement goes unchecked.
    """
    used = {c.public_bytes(Encoding.DER) for c in path}
    issuers = [*chain, *path, *anchors]
    for i, cert in enumerate(chain):
        if cert.public_bytes(Encoding.DER) in used:
            continue
        if not _same_ca_as_path(cert, path[1:]) or not _signed_by_any(cert, issuers):
            raise AttestationUntrusted(
                f"presented certificate {i} {describe(cert)} is not on the validated path "
                "to the trust anchor and is not a verified form of a CA on it"
            )


def _same_ca_as_path(cert: x509.Certificate, cas: Sequence[x509.Certificate]) -> bool:
    key = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return any(
        ca.subject == cert.subject
        and ca.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) == key
        for ca in cas
    )


def _signed_by_any(cert: x509.Certificate, issuers: Sequence[x509.Certificate]) -> bool:
    for issuer in issuers:
        if issuer.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            continue
        return True
    return False


def check_validity(chain: Sequence[x509.Certificate], at: datetime) -> None:
    """Every presented certificate must be valid at ``at`` (precise message per certificate)."""
    for i, cert in enumerate(chain):
        role = "attestation certificate" if i == 0 else f"chain certificate {i}"
        if at < cert.not_valid_before_utc:
            raise AttestationUntrusted(
                f"{role} {describe(cert)} is not yet valid at {at.isoformat()} "
                f"(valid from {cert.not_valid_before_utc.isoformat()})"
            )
        if at > cert.not_valid_after_utc:
            raise AttestationUntrusted(
                f"{role} {describe(cert)} expired on {cert.not_valid_after_utc.isoformat()} "
                f"(verification time {at.isoformat()})"
            )


def check_path_lengths(path: Sequence[x509.Certificate]) -> None:
    """RFC 5280 pathLenConstraint: CA at position i may have at most pathLen CAs below it."""
    for i, cert in enumerate(path[1:], start=1):
        bc = _basic_constraints(cert)
        if bc is None or not bc.ca:
            raise AttestationUntrusted(f"issuer {describe(cert)} is not a CA")
        below = i - 1
        if bc.path_length is not None and below > bc.path_length:
            raise AttestationUntrusted(
                f"CA {describe(cert)} has pathLenConstraint {bc.path_length} but {below} "
                "intermediate CA certificates follow it"
            )


def has_legacy_rsa_algorithm(cert: x509.Certificate) -> bool:
    """True when the outer signatureAlgorithm is RSA PKCS#1 v1.5 with the NULL omitted."""
    try:
        outer = children(parse_one(cert.public_bytes(Encoding.DER)))
        if len(outer) != 3 or not outer[1].is_universal(TAG_SEQUENCE):
            return False
        alg = children(outer[1])
    except DerError:
        return False
    return len(alg) == 1 and alg[0].is_universal(TAG_OID) and alg[0].value in _RSA_PKCS1_OIDS


def _basic_constraints(cert: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None
    except ValueError as e:
        raise AttestationUntrusted(f"certificate {describe(cert)} extensions: {e}") from None


def _ca_basic_constraints(
    policy: Policy, cert: x509.Certificate, bc: x509.BasicConstraints
) -> None:
    if not bc.ca:
        raise ValueError("issuer has basicConstraints CA=false")


def _ca_key_usage(policy: Policy, cert: x509.Certificate, ku: x509.KeyUsage | None) -> None:
    if ku is not None and not ku.key_cert_sign:
        raise ValueError("issuer keyUsage lacks keyCertSign")


def _ee_basic_constraints(
    policy: Policy, cert: x509.Certificate, bc: x509.BasicConstraints | None
) -> None:
    if bc is not None and bc.ca:
        raise ValueError("attestation certificate has basicConstraints CA=true")


def _ee_key_usage(policy: Policy, cert: x509.Certificate, ku: x509.KeyUsage | None) -> None:
    if ku is not None and not ku.digital_signature:
        raise ValueError("attestation certificate keyUsage lacks digitalSignature")


def ca_policy() -> ExtensionPolicy:
    return (
        ExtensionPolicy.permit_all()
        .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, _ca_basic_constraints)
        .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _ca_key_usage)
        .may_be_present(x509.CertificatePolicies, Criticality.AGNOSTIC, None)
    )


def ee_policy() -> ExtensionPolicy:
    return (
        ExtensionPolicy.permit_all()
        .may_be_present(x509.BasicConstraints, Criticality.AGNOSTIC, _ee_basic_constraints)
        .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _ee_key_usage)
        .may_be_present(x509.CertificatePolicies, Criticality.AGNOSTIC, None)
    )


def _verify(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    at: datetime,
    *,
    leaf_is_ca: bool,
) -> tuple[x509.Certificate, ...]:
    verifier = (
        PolicyBuilder()
        .store(Store(list(anchors)))
        .time(at)
        .extension_policies(
            ca_policy=ca_policy(), ee_policy=ca_policy() if leaf_is_ca else ee_policy()
        )
        .build_client_verifier()
    )
    try:
        return tuple(verifier.verify(leaf, intermediates).chain)
    except VerificationError as e:
        raise AttestationUntrusted(
            f"no valid path from {describe(leaf)} to any of {len(anchors)} trust anchor(s) at "
            f"{at.isoformat()}: {e}"
        ) from None


def _validate_legacy_leaf(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    at: datetime,
) -> tuple[x509.Certificate, ...]:
    """The documented exception: check the leaf here, the rest with ``cryptography``."""
    if not isinstance(leaf.signature_hash_algorithm, _STRONG_HASHES):
        raise AttestationUntrusted(
            f"attestation certificate {describe(leaf)} is signed with a "
            "hash other than SHA-256/384/512"
        )
    bc = _basic_constraints(leaf)
    if bc is not None and bc.ca:
        raise AttestationUntrusted("attestation certificate has basicConstraints CA=true")
    try:
        ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        if not ku.digital_signature:
            raise AttestationUntrusted("attestation certificate keyUsage lacks digitalSignature")
    except x509.ExtensionNotFound:
        pass
    failures: list[str] = []
    for issuer in [*intermediates, *anchors]:
        if issuer.subject != leaf.issuer:
            continue
        try:
            leaf.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as e:
            failures.append(f"{describe(issuer)}: {e or type(e).__name__}")
            continue
        rest = [c for c in intermediates if c is not issuer]
        return (leaf, *_verify(issuer, rest, anchors, at, leaf_is_ca=True))
    detail = "; ".join(failures) if failures else "no certificate has the leaf's issuer name"
    raise AttestationUntrusted(
        f"no valid path from {describe(leaf)} to any of {len(anchors)} trust anchor(s): {detail}"
    )
