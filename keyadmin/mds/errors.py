"""Errors of the metadata layer (FIDO MDS3).

Every refusal is a :class:`keyadmin.errors.MetadataError` (exit code 7) that carries the data a
caller needs and a hint naming the fix. Verification raises; it never returns False.
"""

from __future__ import annotations

from typing import Any

from keyadmin.errors import MetadataError


class MdsError(MetadataError):
    """Base of the metadata errors. ``reason`` is a stable, machine-readable code."""

    reason: str = "metadata_error"
    default_hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None, **data: Any) -> None:
        super().__init__(message, hint=hint or self.default_hint, **data)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["reason"] = self.reason
        return out


# -- nothing to work with ----------------------------------------------------------------------


class MetadataMissing(MdsError):
    reason = "metadata_missing"
    default_hint = (
        "load metadata first: `keyadmin mds update` (online) or `keyadmin mds import FILE` "
        "(offline)"
    )


class EntryNotFound(MdsError):
    reason = "entry_not_found"
    default_hint = (
        "check the identifier (an AAGUID, a 40-hex attestation certificate key identifier or an "
        "AAID); `keyadmin mds search` lists what the metadata knows"
    )


class DownloadFailed(MdsError):
    reason = "download_failed"
    default_hint = (
        "check the network and the URL; on an air-gapped station copy the BLOB over and use "
        "`keyadmin mds import FILE`"
    )


class PackageNotFound(MdsError):
    reason = "package_not_found"
    default_hint = "install it into keyadmin's environment: pip install 'keyadmin[mds]'"


# -- the JWS itself ------------------------------------------------------------------------------


class BlobMalformed(MdsError):
    """The file is not a compact JWS, or one of its parts does not decode."""

    reason = "blob_malformed"
    default_hint = (
        "the file is damaged or not an MDS3 BLOB; download it again from "
        "https://mds3.fidoalliance.org/"
    )


class UnsupportedAlgorithm(MdsError):
    reason = "unsupported_algorithm"
    default_hint = (
        "a genuine BLOB is signed with RS/PS/ES 256/384/512 or EdDSA; this one was altered or is "
        "not an MDS3 BLOB"
    )


class SignatureInvalid(MdsError):
    reason = "signature_invalid"
    default_hint = (
        "the BLOB was altered after signing (or truncated); download it again and do not edit it"
    )


class PayloadInvalid(MdsError):
    reason = "payload_invalid"
    default_hint = "the payload lacks a required MDS3 field; download the BLOB again"


# -- the certificate path ---------------------------------------------------------------------


class ChainInvalid(MdsError):
    """The x5c header is missing, unparsable or not in issuing order."""

    reason = "chain_invalid"
    default_hint = (
        "x5c must list the signer first, each next certificate issuing the one before it; the "
        "BLOB was altered"
    )


class ChainUntrusted(MdsError):
    """The chain does not end at a pinned root (or a root the operator added)."""

    reason = "chain_untrusted"
    default_hint = (
        "if this BLOB comes from a source you trust under another root, add that root with "
        "--trust-root FILE (it is recorded); the pinned roots are GlobalSign Root R46 and "
        "GlobalSign Root CA - R3"
    )


class SignerNameMismatch(ChainUntrusted):
    reason = "signer_name_mismatch"
    default_hint = (
        "under the public GlobalSign roots only a certificate for the FIDO Alliance's MDS host "
        "may sign metadata; this one belongs to someone else"
    )


class CertificateNotValidAtTime(MdsError):
    """A certificate on the path is expired or not yet valid at the time of use."""

    reason = "certificate_not_valid"
    default_hint = (
        "download a current BLOB (`keyadmin mds update`); to check a historic BLOB as evidence, "
        "pass --at with a moment inside its certificates' validity (it is recorded)"
    )


# -- revocation ---------------------------------------------------------------------------------


class CrlMissing(MdsError):
    reason = "crl_missing"
    default_hint = (
        "supply the CRL with --crl FILE (download it where there is network), or accept the risk "
        "explicitly with --allow-missing-crl (it is recorded)"
    )


class CrlInvalid(MdsError):
    reason = "crl_invalid"
    default_hint = "the CRL is not signed by the certificate's issuer or is damaged; fetch it again"


class CrlStale(MdsError):
    reason = "crl_stale"
    default_hint = (
        "the CRL does not cover the time of use (past its nextUpdate, or issued later); fetch a "
        "current one or choose --at inside its window"
    )


class CertificateRevoked(MdsError):
    reason = "certificate_revoked"
    default_hint = (
        "the BLOB's signing chain has been revoked by its CA; do not use this BLOB, download a "
        "new one"
    )


# -- sequence, freshness, policy ---------------------------------------------------------------


class RollbackRefused(MdsError):
    reason = "rollback"
    default_hint = (
        "a BLOB with a lower serial number than the stored one is a replay of old metadata; "
        "download the current BLOB"
    )


class MetadataStale(MdsError):
    reason = "metadata_stale"
    default_hint = (
        "run `keyadmin mds update` (online) or `keyadmin mds import FILE` (offline) for current "
        "metadata"
    )

    @classmethod
    def hint_for(cls, override_flag: str | None) -> str:
        """The hint naming the exact override of the command that refused, when it has one."""
        if override_flag is None:
            return f"{cls.default_hint}; this command has no override"
        return f"{cls.default_hint}; or, to proceed anyway, pass {override_flag} (recorded)"


class UnsignedMetadataRefused(MdsError):
    reason = "metadata_unsigned"
    default_hint = (
        "the policy demands signed metadata; load a signed BLOB with `keyadmin mds update` or "
        "`keyadmin mds import FILE` instead of --from-package"
    )


class TrustRootInvalid(MdsError):
    reason = "trust_root_invalid"
    default_hint = "pass a PEM or DER X.509 CA certificate to --trust-root"


class TimeInvalid(MdsError):
    reason = "time_invalid"
    default_hint = "give --at as ISO 8601 with a time zone, e.g. 2022-01-15T12:00:00Z"


class DuplicateEntries(MdsError):
    """Two entries of one BLOB claim the same AAGUID (or AAID)."""

    reason = "duplicate_entries"
    default_hint = (
        "report the BLOB to its provider; to load it anyway, keeping the most restrictive copy of "
        'each model, set `duplicate_entries = "most-restrictive"` in the policy\'s [metadata] and '
        "pass --policy FILE (recorded)"
    )


class IndexOutdated(MdsError):
    """The stored snapshot was indexed by an older keyadmin that lacks what a query needs."""

    reason = "index_outdated"
    default_hint = "re-import the metadata (`keyadmin mds update`, or `keyadmin mds import`)"
