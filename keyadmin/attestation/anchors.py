"""Step 4: the trust anchors for one verification.

Anchors are the metadata entry's ``attestationRootCertificates`` plus the roots a policy
names explicitly. Nothing else is trusted: no system store, and an empty set is an error
(``validate_path`` refuses it), never "allow all".

The metadata entry is opaque here (keyadmin.mds owns its type). Its roots are found as
``entry.attestation_root_certificates``, ``entry.metadata_statement.attestation_root_certificates``
or, for a raw MDS3 dict, ``entry["metadataStatement"]["attestationRootCertificates"]``;
each root may be an ``x509.Certificate``, DER bytes or base64 text. A metadata root that
does not parse is skipped (one bad root must not hide the others) and counted.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning

from keyadmin.attestation.model import _lookup
from keyadmin.b64 import decode_std
from keyadmin.errors import ConfigError


@dataclass(frozen=True)
class TrustAnchors:
    certificates: tuple[x509.Certificate, ...]
    skipped_metadata_roots: int


def collect_trust_anchors(
    trust_anchors: Sequence[x509.Certificate | bytes], metadata_entry: Any
) -> TrustAnchors:
    """Explicit anchors (must all load) plus the metadata entry's roots (bad ones skipped)."""
    if isinstance(trust_anchors, (x509.Certificate, bytes, str)):
        raise ConfigError(
            "trust_anchors must be a list of certificates, not a single certificate",
            hint="pass [root] rather than root",
        )
    certs: list[x509.Certificate] = []
    for i, anchor in enumerate(trust_anchors):
        if isinstance(anchor, x509.Certificate):
            certs.append(anchor)
        elif isinstance(anchor, bytes):
            try:
                certs.append(x509.load_der_x509_certificate(anchor))
            except ValueError as e:
                raise ConfigError(
                    f"trust anchor {i} is not a DER X.509 certificate: {e}",
                    hint="give trust anchors as DER bytes or cryptography certificates",
                ) from None
        else:
            raise ConfigError(
                f"trust anchor {i} has type {type(anchor).__name__}, not a certificate"
            )
    roots, skipped = metadata_roots(metadata_entry)
    certs.extend(roots)
    return TrustAnchors(_dedupe(certs), skipped)


def metadata_roots(metadata_entry: Any) -> tuple[list[x509.Certificate], int]:
    """The entry's attestation root certificates that load, and how many did not."""
    if metadata_entry is None:
        return [], 0
    raw = _lookup(metadata_entry, "attestation_root_certificates")
    if raw is None or isinstance(raw, (str, bytes)) or not isinstance(raw, Iterable):
        return [], 0
    out: list[x509.Certificate] = []
    skipped = 0
    for item in raw:
        cert = _load_root(item)
        if cert is None:
            skipped += 1
        else:
            out.append(cert)
    return out, skipped


def status_reports(metadata_entry: Any) -> tuple[Any, ...]:
    """The entry's status reports, passed through unchanged (the policy layer reads them)."""
    if metadata_entry is None:
        return ()
    reports = _lookup(metadata_entry, "status_reports")
    if reports is None or isinstance(reports, (str, bytes)) or not isinstance(reports, Iterable):
        return ()
    return tuple(reports)


def _load_root(item: Any) -> x509.Certificate | None:
    with warnings.catch_warnings():
        # Some MDS roots have a non-positive serial; cryptography warns but loads them.
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return _load_root_quietly(item)


def _load_root_quietly(item: Any) -> x509.Certificate | None:
    try:
        if isinstance(item, x509.Certificate):
            return item
        if isinstance(item, str):
            item = decode_std(item)
        if isinstance(item, bytes):
            return x509.load_der_x509_certificate(item)
    except ValueError:
        return None
    return None


def _dedupe(certs: Iterable[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    seen: set[bytes] = set()
    out: list[x509.Certificate] = []
    for cert in certs:
        der = cert.public_bytes(Encoding.DER)
        if der not in seen:
            seen.add(der)
            out.append(cert)
    return tuple(out)
