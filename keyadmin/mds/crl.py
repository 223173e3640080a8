"""Revocation of the BLOB signer's chain, by CRL (RFC 5280 §6.3, full CRLs).

Every certificate on the path except the anchor is checked against a CRL from its issuer: one
supplied with ``--crl FILE`` (matched by issuer name), else one downloaded from the
certificate's CRL distribution points. A CRL must verify with the issuer's key and cover the
time of use (thisUpdate <= at <= nextUpdate). A certificate listed with a revocation date at or
before the time of use is refused. With no CRL at all the check refuses, unless the operator
passed ``--allow-missing-crl``: then the gap is returned, and recorded with the snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from keyadmin.mds.errors import (
    CertificateRevoked,
    CrlInvalid,
    CrlMissing,
    CrlStale,
    DownloadFailed,
)

if TYPE_CHECKING:
    from cryptography.x509 import Certificate, CertificateRevocationList

Fetcher = Callable[[str], bytes]


@dataclass(frozen=True)
class CrlCheck:
    """The outcome for one certificate on the path."""

    subject: str
    issuer: str
    status: str  # "not-revoked" or "missing-allowed"
    source: str | None = None
    this_update: str | None = None
    next_update: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class SuppliedCrl:
    source: str
    crl: CertificateRevocationList


def load_crl(data: bytes, source: str) -> CertificateRevocationList:
    from cryptography import x509

    try:
        if b"-----BEGIN X509 CRL-----" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as e:
        raise CrlInvalid(f"{source} is not an X.509 CRL: {e}", source=source) from e


def load_supplied(files: Sequence[tuple[str, bytes]]) -> list[SuppliedCrl]:
    return [SuppliedCrl(src, load_crl(data, src)) for src, data in files]


def distribution_points(cert: Certificate) -> list[str]:
    from cryptography import x509

    try:
        cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return []
    urls = []
    for dp in cdp:
        for name in dp.full_name or []:
            if isinstance(name, x509.UniformResourceIdentifier) and name.value.lower().startswith(
                ("http://", "https://")
            ):
                urls.append(name.value)
    return urls


def _check_one(
    cert: Certificate,
    issuer: Certificate,
    crl: CertificateRevocationList,
    source: str,
    at: datetime,
) -> CrlCheck:
    subject = cert.subject.rfc4514_string()
    if crl.issuer != issuer.subject:
        raise CrlInvalid(
            f"the CRL from {source} is issued by {crl.issuer.rfc4514_string()}, not by "
            f"{issuer.subject.rfc4514_string()}",
            source=source,
        )
    if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
        raise CrlInvalid(
            f"the CRL from {source} does not verify with the key of "
            f"{issuer.subject.rfc4514_string()}",
            source=source,
        )
    this_u, next_u = crl.last_update_utc, crl.next_update_utc
    if at < this_u or (next_u is not None and at > next_u):
        raise CrlStale(
            f"the CRL from {source} covers {this_u.isoformat()} .. "
            f"{next_u.isoformat() if next_u else 'open'}, not the time of use {at.isoformat()}",
            source=source,
            this_update=this_u.isoformat(),
            next_update=next_u.isoformat() if next_u else None,
            at=at.isoformat(),
        )
    revoked = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    note = None
    if revoked is not None:
        when = revoked.revocation_date_utc
        if when <= at:
            reason = None
            from cryptography import x509

            try:
                reason = revoked.extensions.get_extension_for_class(
                    x509.CRLReason
                ).value.reason.name
            except x509.ExtensionNotFound:
                pass
            raise CertificateRevoked(
                f"{subject} (serial {cert.serial_number:x}) was revoked on {when.isoformat()}"
                + (f" ({reason})" if reason else "")
                + f" according to the CRL from {source}",
                subject=subject,
                serial=format(cert.serial_number, "x"),
                revoked_at=when.isoformat(),
                crl_reason=reason,
                source=source,
            )
        note = f"revoked later, on {when.isoformat()}, after the time of use"
    return CrlCheck(
        subject=subject,
        issuer=issuer.subject.rfc4514_string(),
        status="not-revoked",
        source=source,
        this_update=this_u.isoformat(),
        next_update=next_u.isoformat() if next_u else None,
        note=note,
    )


def check_revocation(
    path: Sequence[Certificate],
    at: datetime,
    *,
    supplied: Sequence[SuppliedCrl] = (),
    fetch: Fetcher | None = None,
    allow_missing: bool = False,
) -> list[CrlCheck]:
    """Check each non-anchor certificate of ``path`` (signer first, anchor last)."""
    results: list[CrlCheck] = []
    for i in range(len(path) - 1):
        cert, issuer = path[i], path[i + 1]
        subject = cert.subject.rfc4514_string()
        mine = [s for s in supplied if s.crl.issuer == issuer.subject]
        if mine:
            # Every supplied CRL from this issuer must be sound; all must clear the certificate.
            checks = [_check_one(cert, issuer, s.crl, s.source, at) for s in mine]
            results.append(checks[-1])
            continue
        tried: list[str] = []
        found: CrlCheck | None = None
        urls = distribution_points(cert)
        if fetch is not None:
            for url in urls:
                try:
                    data = fetch(url)
                except DownloadFailed as e:
                    tried.append(f"{url}: {e.message}")
                    continue
                found = _check_one(cert, issuer, load_crl(data, url), url, at)
                break
        if found is not None:
            results.append(found)
            continue
        why = (
            "; ".join(tried)
            if tried
            else (
                "offline, no --crl given" if urls else "no CRL distribution point, no --crl given"
            )
        )
        if not allow_missing:
            raise CrlMissing(
                f"no CRL to check {subject} (issuer {issuer.subject.rfc4514_string()}): {why}",
                subject=subject,
                issuer=issuer.subject.rfc4514_string(),
                distribution_points=urls,
            )
        results.append(
            CrlCheck(subject, issuer.subject.rfc4514_string(), "missing-allowed", note=why)
        )
    return results
