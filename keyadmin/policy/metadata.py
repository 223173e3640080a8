"""What the policy layer needs from FIDO metadata, and an adapter over keyadmin's MDS index.

The policy layer reads metadata entries as typed ``keyadmin.mds.model.Entry`` records; it never
imports the store. The index keeps each entry as JSON (``Entry.to_dict()``); ``IndexMetadata``
turns it back into an ``Entry`` at this boundary. The caller (the CLI, a flow) hands in
``IndexMetadata(MdsIndex(url))`` or anything with the same four methods.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from keyadmin.b64 import decode_std, encode_std
from keyadmin.mds.freshness import SnapshotLike
from keyadmin.mds.model import CERTIFICATION_LEVELS, Entry, entry_from_dict

if TYPE_CHECKING:
    from keyadmin.store.mds_index import MdsIndex, SnapshotInfo

__all__ = ["Entry", "IndexMetadata", "MetadataSource", "SnapshotLike"]


class MetadataSource(Protocol):
    """Where the policy layer reads FIDO metadata: the current snapshot and its entries."""

    def snapshot(self) -> SnapshotLike | None: ...
    def by_aaguid(self, aaguid: str) -> Entry | None: ...
    def by_key_id(self, key_id: str) -> Entry | None: ...
    def models(self) -> Iterator[Entry]: ...


class IndexMetadata:
    """``MetadataSource`` over ``keyadmin.store.mds_index.MdsIndex`` (fast sqlite lookups)."""

    def __init__(self, index: MdsIndex) -> None:
        self.index = index
        self._snapshot: SnapshotInfo | None = None
        self._loaded = False

    def snapshot(self) -> SnapshotInfo | None:
        if not self._loaded:
            self._snapshot = self.index.current_snapshot()
            self._loaded = True
        return self._snapshot

    def by_aaguid(self, aaguid: str) -> Entry | None:
        doc = self.index.entry_doc(aaguid)
        return entry_from_dict(doc) if doc is not None and doc.get("aaguid") else None

    def by_key_id(self, key_id: str) -> Entry | None:
        doc = self.index.entry_doc(key_id)
        return entry_from_dict(doc) if doc is not None else None

    def models(self) -> Iterator[Entry]:
        """Every entry of the current snapshot (by its AAGUID, else its AAID, else its first
        attestation key identifier), in the index's search order."""
        from keyadmin.store.mds_index import SearchFilters

        for row in self.index.search(SearchFilters(limit=100000)):
            doc = None
            if row.get("aaguid"):
                doc = self.index.entry_doc(row["aaguid"])
            else:
                raw = self.index.raw_entry(int(row["entry_index"]))
                if isinstance(raw, dict):
                    if raw.get("aaid"):
                        doc = self.index.entry_doc(raw["aaid"])
                    else:
                        kids = raw.get("attestationCertificateKeyIdentifiers") or []
                        if kids:
                            doc = self.index.entry_doc(str(kids[0]))
            if isinstance(doc, dict):
                yield entry_from_dict(doc)


# -- reading an entry ------------------------------------------------------------------------------


def entry_label(entry: Entry) -> str:
    ident = entry.aaguid or entry.aaid or ",".join(entry.attestation_certificate_key_identifiers)
    return f"{entry.description} ({ident})"


def entry_roots_der(entry: Entry) -> list[bytes]:
    """The entry's attestation roots as DER (roots that are not base64 are left out)."""
    out: list[bytes] = []
    for root in entry.attestation_root_certificates:
        if not root.der_b64:
            continue
        try:
            out.append(decode_std(root.der_b64))
        except ValueError:
            continue
    return out


def entry_root_fingerprints(entry: Entry) -> set[str]:
    return {hashlib.sha256(der).hexdigest() for der in entry_roots_der(entry)}


def entry_for_attestation(entry: Entry) -> dict[str, object]:
    """The shape ``keyadmin.attestation.verify_attestation`` reads from a metadata entry."""
    return {
        "aaguid": entry.aaguid,
        "description": entry.description,
        "attestation_certificate_key_identifiers": list(
            entry.attestation_certificate_key_identifiers
        ),
        "attestation_root_certificates": [encode_std(der) for der in entry_roots_der(entry)],
        "status_reports": [r.to_dict() for r in entry.status_reports],
    }


def certification_rank(level: str | None) -> int:
    """0 for none; L1 (and the legacy FIDO_CERTIFIED) is 1, L1plus 2, ... L3plus 6."""
    if level is None:
        return 0
    if level == "FIDO_CERTIFIED":
        return 1
    try:
        return CERTIFICATION_LEVELS.index(level)
    except ValueError:
        return 0


def latest_certification(entry: Entry) -> tuple[str | None, str | None]:
    """(level, date) of the entry's latest certification, or (None, reason) when it lapsed."""
    ordered = sorted(
        entry.status_reports,
        key=lambda r: (r.effective_date or "", certification_rank(r.status)),
    )
    level: str | None = None
    date: str | None = None
    for r in ordered:
        if r.status in CERTIFICATION_LEVELS:
            level, date = r.status, r.effective_date
        elif r.status in ("NOT_FIDO_CERTIFIED", "REVOKED"):
            level, date = None, f"{r.status} since {r.effective_date}"
    return level, date
