"""What the policy layer needs from FIDO metadata, and an adapter over keyadmin's MDS index.

The policy layer reads metadata entries as the plain dicts the index stores
(``keyadmin.mds.model.Entry.to_dict()``); it never imports the store. The caller (the CLI,
a flow) hands in ``IndexMetadata(MdsIndex(url))`` or anything with the same four methods.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any, Protocol

from keyadmin.b64 import decode_std, encode_std
from keyadmin.mds.freshness import SnapshotLike
from keyadmin.mds.model import CERTIFICATION_LEVELS

__all__ = ["IndexMetadata", "MetadataSource", "SnapshotLike"]


class MetadataSource(Protocol):
    def snapshot(self) -> SnapshotLike | None: ...
    def by_aaguid(self, aaguid: str) -> dict[str, Any] | None: ...
    def by_key_id(self, key_id: str) -> dict[str, Any] | None: ...
    def models(self) -> Iterator[dict[str, Any]]: ...


class IndexMetadata:
    """``MetadataSource`` over ``keyadmin.store.mds_index.MdsIndex`` (fast sqlite lookups)."""

    def __init__(self, index: Any) -> None:
        self.index = index
        self._snapshot: Any = None
        self._loaded = False

    def snapshot(self) -> SnapshotLike | None:
        if not self._loaded:
            self._snapshot = self.index.current_snapshot()
            self._loaded = True
        return self._snapshot  # type: ignore[no-any-return]

    def by_aaguid(self, aaguid: str) -> dict[str, Any] | None:
        doc = self.index.entry_doc(aaguid)
        return doc if isinstance(doc, dict) and doc.get("aaguid") else None

    def by_key_id(self, key_id: str) -> dict[str, Any] | None:
        doc = self.index.entry_doc(key_id)
        return doc if isinstance(doc, dict) else None

    def models(self) -> Iterator[dict[str, Any]]:
        """Every entry of the current snapshot, as stored docs."""
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
                yield doc


# -- reading a stored entry doc ------------------------------------------------------------------


def entry_label(doc: dict[str, Any]) -> str:
    ident = (
        doc.get("aaguid")
        or doc.get("aaid")
        or ",".join(doc.get("attestation_certificate_key_identifiers") or [])
    )
    return f"{doc.get('description', '?')} ({ident})"


def entry_roots_der(doc: dict[str, Any]) -> list[bytes]:
    """The entry's attestation roots as DER (roots that are not base64 are left out)."""
    out: list[bytes] = []
    for root in doc.get("attestation_root_certificates") or []:
        b64 = root.get("der_b64") if isinstance(root, dict) else root
        if isinstance(b64, str):
            try:
                out.append(decode_std(b64))
            except ValueError:
                continue
    return out


def entry_root_fingerprints(doc: dict[str, Any]) -> set[str]:
    return {hashlib.sha256(der).hexdigest() for der in entry_roots_der(doc)}


def entry_for_attestation(doc: dict[str, Any]) -> dict[str, Any]:
    """The shape ``keyadmin.attestation.verify_attestation`` reads from a metadata entry."""
    return {
        "aaguid": doc.get("aaguid"),
        "description": doc.get("description"),
        "attestation_certificate_key_identifiers": doc.get(
            "attestation_certificate_key_identifiers"
        ),
        "attestation_root_certificates": [
            encode_std(der) for der in entry_roots_der(doc)
        ],
        "status_reports": doc.get("status_reports") or [],
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


def latest_certification(doc: dict[str, Any]) -> tuple[str | None, str | None]:
    """(level, date) of the entry's latest certification, or (None, reason) when it lapsed."""
    reports = doc.get("status_reports") or []
    ordered = sorted(
        (r for r in reports if isinstance(r, dict)),
        key=lambda r: (
            str(r.get("effective_date") or ""),
            certification_rank(str(r.get("status"))),
        ),
    )
    level: str | None = None
    date: str | None = None
    for r in ordered:
        status = str(r.get("status"))
        if status in CERTIFICATION_LEVELS:
            level, date = status, r.get("effective_date")
        elif status in ("NOT_FIDO_CERTIFIED", "REVOKED"):
            level, date = None, f"{status} since {r.get('effective_date')}"
    return level, date
