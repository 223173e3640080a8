"""The fleet's reconciliation report (``keyadmin keys report``): the inventory against the
registry, every finding with what to do about it.

Categories:
- ``issued-without-credential``: a key issued to a user holds no active credential;
- ``credential-not-in-inventory``: a live credential's key serial is not in the inventory;
- ``lost-key-with-active-credential`` / ``destroyed-key-with-active-credential``;
- ``user-below-minimum``: fewer compliant keys than the policy's keys_per_user.minimum. A
  compliant key is a physical key (by serial; a credential without a serial counts as a key of
  its own) holding an active credential of the user, not lost or destroyed, and, when the
  policy's [inventory] is required, in the inventory issued to that user.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from keyadmin.errors import PolicyRefused

if TYPE_CHECKING:
    from keyadmin.mds.model import Entry
    from keyadmin.policy.advisories import Advisory
    from keyadmin.policy.metadata import MetadataSource
    from keyadmin.policy.model import Policy

CATEGORIES = (
    "issued-without-credential",
    "credential-not-in-inventory",
    "lost-key-with-active-credential",
    "destroyed-key-with-active-credential",
    "user-below-minimum",
)
LIVE = frozenset({"active", "suspended", "quarantined"})


class ActionNeeded(PolicyRefused):
    """The report found something an operator must act on (exit 3)."""


@dataclass(frozen=True)
class Finding:
    category: str
    serial: str | None
    user: str | None
    registry_id: int | None
    credential_id: str | None
    detail: str
    action: str


@dataclass(frozen=True)
class KeysReport:
    at: str
    policy: str | None
    minimum: int | None
    keys: int
    credentials: int
    findings: list[Finding]
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.findings


def keys_report(db_url: str, policy: Policy | None) -> KeysReport:
    from keyadmin.store.db import transaction
    from keyadmin.store.inventory import read_estate

    started = time.monotonic()
    with transaction(db_url) as s:
        estate = read_estate(s)
    findings = reconcile(estate, policy)
    counts = {c: 0 for c in CATEGORIES}
    for f in findings:
        counts[f.category] += 1
    return KeysReport(
        at=datetime.now(UTC).isoformat(),
        policy=policy.name if policy is not None else None,
        minimum=policy.keys_per_user.minimum if policy is not None else None,
        keys=len(estate.keys),
        credentials=len(estate.credentials),
        findings=findings,
        counts=counts,
        seconds=round(time.monotonic() - started, 3),
    )


def reconcile(estate: Any, policy: Policy | None) -> list[Finding]:
    keys = {serial: (state, user) for serial, state, user, *_ in estate.keys}
    active_on: dict[str, int] = {}
    findings: list[Finding] = []
    for reg_id, cred_id, user, status, serial, *_ in estate.credentials:
        if serial is None:
            continue
        if status == "active":
            active_on[serial] = active_on.get(serial, 0) + 1
        key = keys.get(serial)
        if key is None and status in LIVE:
            findings.append(
                Finding(
                    "credential-not-in-inventory", serial, user, reg_id, cred_id,
                    f"{user}'s {status} credential #{reg_id} is on key {serial}, which is not "
                    "in the inventory",
                    f"import the key (keyadmin keys import FILE.csv) or revoke the credential "
                    f"(keyadmin creds revoke {reg_id} --reason …)",
                )
            )  # fmt: skip
        elif key is not None and status == "active" and key[0] in ("lost", "destroyed"):
            findings.append(
                Finding(
                    f"{key[0]}-key-with-active-credential", serial, user, reg_id, cred_id,
                    f"{user}'s credential #{reg_id} is active on key {serial}, marked {key[0]}",
                    f"keyadmin creds revoke {reg_id} --reason 'key {key[0]}', then keyadmin sync",
                )
            )  # fmt: skip
    for serial, (state, user) in keys.items():
        if state == "issued" and not active_on.get(serial):
            findings.append(
                Finding(
                    "issued-without-credential", serial, user, None, None,
                    f"key {serial} is issued to {user} but holds no active credential",
                    f"enrol it (keyadmin enrol {user} …) or take it back "
                    f"(keyadmin keys return {serial} --reason …)",
                )
            )  # fmt: skip
    if policy is not None:
        findings.extend(_below_minimum(estate, keys, policy))
    return findings


def _below_minimum(estate: Any, keys: dict[str, Any], policy: Policy) -> list[Finding]:
    minimum = policy.keys_per_user.minimum
    required = policy.inventory.required
    compliant: dict[str, set[str]] = {}
    for _, cred_id, user, status, serial, *_ in estate.credentials:
        if status != "active":
            continue
        key = keys.get(serial) if serial is not None else None
        if key is not None and key[0] in ("lost", "destroyed"):
            continue
        if required and (key is None or key[0] != "issued" or key[1] != user):
            continue
        compliant.setdefault(user, set()).add(serial if serial is not None else f"cred:{cred_id}")
    out = []
    for user in estate.users:
        have = len(compliant.get(user, ()))
        if have < minimum:
            out.append(
                Finding(
                    "user-below-minimum", None, user, None, None,
                    f"{user} holds {have} compliant key(s); the policy {policy.name} asks for "
                    f"at least {minimum}",
                    f"enrol another key for {user} (keyadmin enrol {user} --policy {policy.path})",
                )
            )  # fmt: skip
    return out


# ---------------------------------------------------------------------------------- advisories
#: metadata statuses worth telling the owner of an enrolled key about
NOTABLE_STATUSES = frozenset({"UPDATE_AVAILABLE", "RETIRED"})


@dataclass(frozen=True)
class AdvisoryFinding:
    kind: str  # "advisory" (firmware in an affected range), "firmware-unknown", "metadata-status"
    id: str  # the advisory id, or the metadata status
    user: str | None
    serial: str | None
    registry_id: int | None
    credential_id: str | None
    model: str | None
    firmware: str | None
    firmware_source: str | None
    detail: str
    action: str
    url: str | None


@dataclass(frozen=True)
class AdvisoryReport:
    at: str
    advisories: list[str]
    credentials: int
    keys: int
    findings: list[AdvisoryFinding]
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.findings


def advisories_report(
    db_url: str, advisories: list[Advisory], metadata: MetadataSource | None
) -> AdvisoryReport:
    """Every live credential and every inventory key without one, against the advisories
    (firmware: the key's in the inventory, else getInfo at enrolment, else the metadata's
    authenticatorVersion), and the metadata status reports dated after each enrolment.
    ``metadata``: ``keyadmin.policy.metadata.IndexMetadata(MdsIndex(url))`` or None."""
    from keyadmin.store.db import transaction
    from keyadmin.store.inventory import read_estate

    started = time.monotonic()
    with transaction(db_url) as s:
        estate = read_estate(s)
    docs: dict[str, Entry | None] = {}

    def doc(aaguid: str | None) -> Entry | None:
        if aaguid is None or metadata is None:
            return None
        if aaguid not in docs:
            docs[aaguid] = metadata.by_aaguid(aaguid)
        return docs[aaguid]

    keys = {k[0]: k for k in estate.keys}
    with_credentials: set[str] = set()
    findings: list[AdvisoryFinding] = []
    hits: dict[tuple[Any, ...], list[AdvisoryFinding]] = {}
    versions: dict[tuple[Any, ...], tuple[Any, str | None]] = {}

    def firmware(key_fw: str | None, cred_fw: str | None, entry: Any, aaguid: Any) -> Any:
        memo = (key_fw, cred_fw, aaguid)
        if memo not in versions:
            versions[memo] = _firmware(key_fw, cred_fw, entry)
        return versions[memo]

    def match(aaguid: str | None, model: str | None, version: Any, source: Any, where: Any) -> Any:
        memo = (aaguid, model, version, source)
        if memo not in hits:  # the same text for every key of one model and firmware
            hits[memo] = [
                _finding(adv, block, model, aaguid, version, source, (None,) * 5)
                for adv, block in _affecting(advisories, aaguid, model, version)
            ]
        user, serial, reg_id, cred_id, _ = where
        return [
            AdvisoryFinding(f.kind, f.id, user, serial, reg_id, cred_id, f.model, f.firmware,
                            f.firmware_source, f.detail, f.action, f.url)
            for f in hits[memo]
        ]  # fmt: skip

    for reg_id, cred_id, user, status, serial, aaguid, fw, _, created in estate.credentials:
        if status not in LIVE:
            continue
        key = keys.get(serial) if serial is not None else None
        if serial is not None:
            with_credentials.add(serial)
        entry = doc(aaguid)
        model = (key[3] if key else None) or (entry.description if entry else None)
        version, source = firmware(key[5] if key else None, fw, entry, aaguid)
        where: tuple[Any, ...] = (user, serial, reg_id, cred_id, model)
        findings.extend(match(aaguid, model, version, source, where))
        if entry is not None:
            findings.extend(_status_changes(entry, created, where))
    for serial, state, holder, key_model, key_aaguid, key_fw in estate.keys:
        if serial in with_credentials or state == "destroyed":
            continue
        entry = doc(key_aaguid)
        model = key_model or (entry.description if entry else None)
        version, source = firmware(key_fw, None, entry, key_aaguid)
        where = (holder, serial, None, None, model)
        findings.extend(match(key_aaguid, model, version, source, where))
    findings.sort(key=lambda f: (f.user or "", f.serial or "", f.registry_id or 0, f.id))
    return AdvisoryReport(
        at=datetime.now(UTC).isoformat(),
        advisories=[a.id for a in advisories],
        credentials=len(estate.credentials),
        keys=len(estate.keys),
        findings=findings,
        seconds=round(time.monotonic() - started, 3),
    )


def _firmware(
    key_fw: str | None, cred_fw: str | None, entry: Entry | None
) -> tuple[Any, str | None]:
    from keyadmin.policy.advisories import metadata_version, parse_version

    for text, source in ((key_fw, "the key (inventory)"), (cred_fw, "getInfo at enrolment")):
        if text:
            try:
                return parse_version(text), source
            except ValueError:
                continue
    av = entry.authenticator_version if entry else None
    if isinstance(av, int) and av > 0:
        return metadata_version(av), "metadata authenticatorVersion (the model's, not this key's)"
    return None, None


def _affecting(
    advisories: list[Any], aaguid: str | None, model: str | None, version: Any
) -> list[tuple[Any, Any]]:
    """(advisory, affects block) pairs for a model at a firmware (None: unknown firmware)."""
    out = []
    for adv in advisories:
        for block in adv.affects:
            if block.matches_model(aaguid, model) and (version is None or block.affected(version)):
                out.append((adv, block))
                break
    return out


def _finding(
    adv: Any,
    block: Any,
    model: str | None,
    aaguid: str | None,
    version: Any,
    source: str | None,
    where: tuple[Any, ...],
) -> AdvisoryFinding:
    from keyadmin.policy.advisories import version_text

    user, serial, reg_id, cred_id, _ = where
    if version is None:
        return AdvisoryFinding(
            "firmware-unknown", adv.id, user, serial, reg_id, cred_id, model, None, None,
            f"{adv.vendor} {adv.id}: {model or aaguid} is an affected model and its firmware "
            f"is unknown ({block.range_text()} is affected)",
            "read its firmware (keyadmin device info; enrolment records it in the inventory) "
            "and treat the key as affected until it is known",
            adv.url,
        )  # fmt: skip
    fw = version_text(version)
    return AdvisoryFinding(
        "advisory", adv.id, user, serial, reg_id, cred_id, model, fw, source,
        f"{adv.vendor} {adv.id} ({adv.title}): {model or aaguid} with firmware {fw} ({source}) "
        f"is in the affected range ({block.range_text()})",
        adv.action,
        adv.url,
    )  # fmt: skip


def _status_changes(
    entry: Entry | None, created: str, where: tuple[Any, ...]
) -> list[AdvisoryFinding]:
    from keyadmin.mds.model import BLOCKING_STATUSES

    if entry is None:
        return []
    user, serial, reg_id, cred_id, model = where
    enrolled = created
    out = []
    for report in entry.status_reports:
        status, date = report.status, report.effective_date or ""
        if status not in BLOCKING_STATUSES and status not in NOTABLE_STATUSES:
            continue
        if not date or date <= enrolled:
            continue
        blocking = status in BLOCKING_STATUSES
        out.append(
            AdvisoryFinding(
                "metadata-status", status, user, serial, reg_id, cred_id, model, None, None,
                f"FIDO metadata reported {status} for {model or 'this model'} on {date}, after "
                f"the credential's enrolment on {enrolled}",
                "keyadmin audit --policy … --enforce quarantines it; replace the key"
                if blocking else "review the vendor's notice; no action is forced",
                report.url or None,
            )
        )  # fmt: skip
    return out
