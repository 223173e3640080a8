"""Verify an MDS3 BLOB, in a fixed order; every failure raises a precise MdsError.

1. compact JWS structure and header (``jws.parse_compact``): BlobMalformed, UnsupportedAlgorithm
2. x5c certificates parse and are in issuing order (``chain``): ChainInvalid
3. the JWS signature with the signer certificate's key (``jws.verify_signature``):
   SignatureInvalid
4. the path to a pinned (or operator-added) root, the signer's name under a pinned root, every
   certificate's validity at the time of use, RFC 5280 path validation (``chain``):
   ChainUntrusted, SignerNameMismatch, CertificateNotValidAtTime
5. revocation of every non-root certificate by CRL (``crl``): CrlMissing, CrlInvalid, CrlStale,
   CertificateRevoked
6. the payload's own members (``parse.payload_header``): PayloadInvalid

The serial-number (rollback) check needs the stored state and lives in ``ingest``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from keyadmin.mds import chain as chain_mod
from keyadmin.mds import crl as crl_mod
from keyadmin.mds.errors import TimeInvalid
from keyadmin.mds.jws import parse_compact, verify_signature, x5c_der
from keyadmin.mds.parse import load_payload_bytes, payload_header
from keyadmin.mds.roots import Anchor


@dataclass(frozen=True)
class VerifiedBlob:
    sha256: str
    size: int
    alg: str
    header: dict[str, Any]  # without x5c
    chain: chain_mod.VerifiedChain
    crl_checks: tuple[crl_mod.CrlCheck, ...]
    payload: dict[str, Any]
    no: int
    next_update: str
    legal_header: str
    at: datetime
    allow_missing_crl: bool

    def provenance(self) -> dict[str, Any]:
        """What is stored with the snapshot, for evidence."""
        return {
            "alg": self.alg,
            "header": self.header,
            "chain": self.chain.describe(),
            "anchor": self.chain.anchor.describe(),
            "crl": [c.__dict__ for c in self.crl_checks],
            "allow_missing_crl": self.allow_missing_crl,
            "verified_at": self.at.isoformat(),
        }


def require_aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise TimeInvalid(f"time {at.isoformat()} has no time zone")
    return at.astimezone(UTC)


def verify_blob(
    raw: bytes,
    *,
    anchors: list[Anchor],
    at: datetime,
    crls: Sequence[tuple[str, bytes]] = (),
    fetch_crl: crl_mod.Fetcher | None = None,
    allow_missing_crl: bool = False,
) -> VerifiedBlob:
    """Verify ``raw`` (the BLOB as downloaded) at time ``at``; return it with its evidence."""
    at = require_aware(at)
    jws = parse_compact(raw)
    certs = chain_mod.load_x5c(x5c_der(jws))
    chain_mod.check_order(certs)
    verify_signature(jws, certs[0].public_key())
    verified = chain_mod.verify_chain(x5c_der(jws), anchors, at)
    supplied = crl_mod.load_supplied(crls)
    checks = crl_mod.check_revocation(
        verified.path, at, supplied=supplied, fetch=fetch_crl, allow_missing=allow_missing_crl
    )
    payload = load_payload_bytes(jws.payload)
    no, next_update, legal, _entries = payload_header(payload)
    return VerifiedBlob(
        sha256=hashlib.sha256(raw).hexdigest(),
        size=len(raw),
        alg=jws.alg,
        header={k: v for k, v in jws.header.items() if k != "x5c"},
        chain=verified,
        crl_checks=tuple(checks),
        payload=payload,
        no=no,
        next_update=next_update,
        legal_header=legal,
        at=at,
        allow_missing_crl=allow_missing_crl,
    )


def read_unverified_payload(data: bytes) -> Any:
    """For ``diff``: the payload of a BLOB (not verified) or of a plain JSON payload file."""
    stripped = data.lstrip()
    if stripped.startswith(b"{"):
        return load_payload_bytes(stripped)
    return load_payload_bytes(parse_compact(data).payload)
