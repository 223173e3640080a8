"""verify_attestation: the fixed order of checks from a parsed registration to Evidence.

1. parse            (``parse_registration``, done by the caller: AttestationMalformed)
2. verify_statement the format's signature / nonce and certificate requirements
                    (AttestationMalformed, AttestationInvalid, AttestationUnsupported)
3. check_aaguid     the certificate's id-fido-gen-ce-aaguid against authData (AaguidMismatch)
4. collect anchors  metadata entry roots + explicit roots
5. validate_path    to an anchor at ``at`` (AttestationUntrusted; an empty anchor set too)
6. Evidence

Self and none attestation stop after step 2: there is no chain to trust, and the Evidence
says so (``chain == ()``, ``trusted is False``); the policy layer decides what to make of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cryptography import x509

from keyadmin.attestation.aaguid import check_aaguid, read_certificate_aaguid
from keyadmin.attestation.anchors import collect_trust_anchors, status_reports
from keyadmin.attestation.formats import verify_statement
from keyadmin.attestation.model import (
    AttestationType,
    CertificateInfo,
    Evidence,
    ParsedRegistration,
)
from keyadmin.attestation.path import validate_path
from keyadmin.errors import UsageError

_UNCHAINED = (AttestationType.SELF, AttestationType.NONE)


def verify_attestation(
    parsed: ParsedRegistration,
    *,
    trust_anchors: Sequence[x509.Certificate | bytes],
    at: datetime,
    metadata_entry: Any | None = None,
) -> Evidence:
    """Prove each claim of ``parsed`` at time ``at`` or raise; return the Evidence."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise UsageError("verify_attestation needs a timezone-aware time (e.g. datetime.now(UTC))")
    statement = verify_statement(parsed, at)
    details = dict(statement.details)
    cert_aaguid = None
    path: tuple[x509.Certificate, ...] = ()
    if statement.attestation_type not in _UNCHAINED:
        cert_aaguid = read_certificate_aaguid(statement.trust_path[0])
        check_aaguid(parsed.fmt, parsed.aaguid, cert_aaguid)
        anchors = collect_trust_anchors(trust_anchors, metadata_entry)
        if anchors.skipped_metadata_roots:
            details["skipped_metadata_roots"] = anchors.skipped_metadata_roots
        path = validate_path(statement.trust_path, anchors.certificates, at)
    return Evidence(
        fmt=parsed.fmt,
        attestation_type=statement.attestation_type,
        chain=tuple(CertificateInfo(c) for c in path),
        aaguid=parsed.aaguid,
        certificate_aaguid=cert_aaguid,
        metadata_entry=metadata_entry,
        status_reports=status_reports(metadata_entry),
        flags=parsed.flags,
        algorithm=parsed.algorithm,
        cred_protect=parsed.cred_protect,
        sign_count=parsed.sign_count,
        credential_id=parsed.credential_id,
        credential_public_key_cbor=parsed.credential_public_key_cbor,
        rp_id_hash=parsed.rp_id_hash,
        client_data=parsed.client_data,
        verified_at=at,
        details=details,
    )
