"""The policy against the metadata: would a model pass (``explain_model``), and which models
does it admit (``admitted_models``), as a reviewable list with its hash and a diff.

Only what metadata can say is judged here: status, certification, allowlist, attachment,
key protection, attestation types and trust anchors. What only a registration shows (flags,
algorithm, signature, chain validity) is listed as ``skip`` with the rule that will check it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TypedDict

from keyadmin.policy import lifecycle
from keyadmin.policy.evaluate import (
    Computed,
    allowlist_outcome,
    certification_outcome,
    compute,
    decide,
    key_protection_outcome,
    metadata_fresh_outcome,
    metadata_signed_outcome,
    roaming_outcome,
    run_rules,
    status_outcome,
)
from keyadmin.policy.hardware import hardware_checks, hardware_outcome
from keyadmin.policy.metadata import (
    MetadataSource,
    SnapshotLike,
    entry_label,
    entry_root_fingerprints,
    entry_roots_der,
)
from keyadmin.policy.model import Decision, Outcome, Policy, Reason

if TYPE_CHECKING:
    from keyadmin.mds.model import Entry

#: MDS3 attestationTypes -> WebAuthn attestation types.
_MDS_TYPES = {
    "basic_full": "basic",
    "basic_surrogate": "self",
    "attca": "attca",
    "anonca": "anonca",
    "ecdaa": "ecdaa",
    "none": "none",
}

MODEL_MUST_PASS = frozenset(
    {"metadata.entry", "attestation.trusted", "attestation.type", "authenticator.allowed"}
)


@dataclass(frozen=True)
class ModelLookup:
    """The model's entry, and whether it was found by attestation key identifier (U2F)."""

    entry: Entry | None
    by_key_id: bool = False


@dataclass(frozen=True)
class ModelFacts:
    """What the model rules read, computed once (as ``evaluate.RegistrationFacts``)."""

    aaguid: str
    at: datetime
    has_metadata: bool
    lookup_: Computed[ModelLookup]  # value None: no metadata source
    snapshot_: Computed[SnapshotLike | None]
    key_id: str | None = None  # attestation key identifier, for models without an AAGUID (U2F)

    @property
    def entry(self) -> Entry | None:
        return self.lookup_.value.entry if self.lookup_.value is not None else None


def lookup_model(metadata: MetadataSource, aaguid: str, key_id: str | None) -> ModelLookup:
    if aaguid == "00000000-0000-0000-0000-000000000000" and key_id:
        entry = metadata.by_key_id(key_id)
        if entry is not None:
            return ModelLookup(entry, by_key_id=True)
        return ModelLookup(None)
    return ModelLookup(metadata.by_aaguid(aaguid))


def model_facts(
    metadata: MetadataSource | None, aaguid: str, at: datetime, key_id: str | None = None
) -> ModelFacts:
    lookup: Computed[ModelLookup] = Computed()
    snapshot: Computed[SnapshotLike | None] = Computed()
    if metadata is not None:
        m = metadata
        lookup = compute(lambda: lookup_model(m, aaguid, key_id))
        snapshot = compute(metadata.snapshot)
    return ModelFacts(aaguid, at, metadata is not None, lookup, snapshot, key_id)


def _entry(f: ModelFacts, policy: Policy) -> tuple[Outcome, str]:
    if not f.has_metadata:
        return "fail", "no metadata source"
    found = f.lookup_.get()
    if found is not None and found.entry is not None:
        if found.by_key_id:
            return "pass", f"{entry_label(found.entry)} (attestation key identifier {f.key_id})"
        return "pass", entry_label(found.entry)
    if policy.metadata.required:
        return "fail", f"no metadata entry for AAGUID {f.aaguid}; the policy requires one"
    return "skip", f"no metadata entry for AAGUID {f.aaguid}; the policy does not require one"


def _signed(f: ModelFacts, policy: Policy) -> tuple[Outcome, str]:
    return metadata_signed_outcome(policy, f.snapshot_.get())


def _fresh(f: ModelFacts, policy: Policy) -> tuple[Outcome, str]:
    if not policy.metadata.required:  # the snapshot is not read
        return metadata_fresh_outcome(policy, None, f.at)
    return metadata_fresh_outcome(policy, f.snapshot_.get(), f.at)


def _trusted(f: ModelFacts, policy: Policy) -> tuple[Outcome, str]:
    n_entry = len(entry_roots_der(f.entry)) if f.entry else 0
    n_extra = len(policy.trust_roots)
    if n_entry + n_extra == 0:
        return (
            "fail",
            "no trust anchor: the entry lists no attestation root and the policy names none",
        )
    return "pass", (
        f"{n_entry} metadata root(s) + {n_extra} policy root(s); each registration's chain "
        "is validated against them"
    )


def _types(f: ModelFacts, policy: Policy) -> tuple[Outcome, str]:
    if f.entry is None:
        return "skip", "no metadata entry lists the model's attestation types"
    types = [_MDS_TYPES.get(str(t), str(t)) for t in f.entry.attestation_types]
    ok = [t for t in types if t in policy.attestation.types]
    if ok:
        return "pass", f"metadata attestationTypes {', '.join(types)}; accepted: {', '.join(ok)}"
    return "fail", f"metadata attestationTypes {', '.join(types) or '-'}: none accepted"


def _of_entry(
    outcome: Callable[[Policy, Entry | None], tuple[Outcome, str]],
) -> Callable[[ModelFacts, Policy], tuple[Outcome, str]]:
    """The model rule that judges the model's entry with ``outcome`` (as a registration's)."""
    return lambda f, policy: outcome(policy, f.entry)


def _retired(f: ModelFacts, policy: Policy) -> tuple[Outcome, str]:
    return lifecycle.retired_outcome(policy, f.entry, f.at)


def _allowed(f: ModelFacts, policy: Policy) -> tuple[Outcome, str]:
    roots = entry_root_fingerprints(f.entry) if f.entry else set()
    vendor = next(iter(roots & policy.authenticators.allow_vendor_roots), None)
    return allowlist_outcome(policy, f.aaguid, f.entry, vendor)


def _roaming(f: ModelFacts, policy: Policy) -> tuple[Outcome, str]:
    return roaming_outcome(policy, None, f.entry)


def _firmware(f: ModelFacts, policy: Policy) -> tuple[Outcome, str]:
    floor = policy.device.firmware_minimum.get(f.aaguid)
    if floor is None:
        return "skip", "no firmware floor for this AAGUID"
    version = f.entry.authenticator_version if f.entry else None
    return "skip", (
        f"each key must run firmware >= {floor} (checked on the device at enrolment); "
        f"metadata authenticatorVersion {version if version is not None else '-'}"
    )


def _per_registration(f: ModelFacts, policy: Policy) -> tuple[Outcome, str]:
    return "skip", (
        "checked on each registration: rp_id, origin, format, signature, certificate AAGUID, "
        "chain validity, device_bound, user_verification, algorithm, cred_protect"
    )


MODEL_RULES = (
    ("metadata.entry", _entry),
    ("metadata.signed", _signed),
    ("metadata.fresh", _fresh),
    ("attestation.trusted", _trusted),
    ("attestation.type", _types),
    ("metadata.status", _of_entry(status_outcome)),
    ("metadata.certification", _of_entry(certification_outcome)),
    ("metadata.retired", _retired),
    ("metadata.fips", _of_entry(lifecycle.fips_outcome)),
    ("metadata.profile", _of_entry(lifecycle.profile_outcome)),
    ("authenticator.allowed", _allowed),
    ("authenticator.roaming", _roaming),
    ("authenticator.key_protection", _of_entry(key_protection_outcome)),
    ("authenticator.hardware", _of_entry(hardware_outcome)),
    ("device.firmware", _firmware),
    ("registration", _per_registration),
)


def explain_model(
    policy: Policy,
    metadata: MetadataSource | None,
    aaguid: str,
    *,
    at: datetime,
    key_id: str | None = None,
) -> Decision:
    """Would the model with ``aaguid`` pass ``policy`` as far as metadata can tell, and why not.

    Models without an AAGUID (fido-u2f: the all-zero AAGUID) are named by ``key_id``, the
    attestation certificate's key identifier, as FIDO metadata lists them."""
    import uuid

    canonical = str(uuid.UUID(aaguid))
    facts = model_facts(metadata, canonical, at, key_id)
    reasons = run_rules(MODEL_RULES, facts, policy)
    return Decision(
        allowed=decide(
            reasons,
            MODEL_MUST_PASS
            if policy.metadata.required
            else frozenset({"attestation.trusted", "authenticator.allowed"}),
        ),
        reasons=reasons,
        subject={
            "policy": {"name": policy.name, "version": policy.version, "sha256": policy.sha256},
            "aaguid": canonical,
            "description": facts.entry.description if facts.entry else None,
            "at": at.isoformat(),
        },
    )


class ModelRow(TypedDict):
    """One admitted model, as ``keyadmin policy models --json`` lists it."""

    aaguid: str
    description: str | None
    certification: str | None
    status: str | None
    firmware_minimum: str | None
    why: dict[str, str]


@dataclass(frozen=True)
class ModelList:
    policy_name: str
    policy_version: int
    policy_sha256: str
    metadata_no: int | None
    metadata_source: str | None
    models: tuple[ModelRow, ...]
    sha256: str  # of the canonical JSON of ``models``

    def to_dict(self) -> dict[str, object]:
        return {
            "policy": {
                "name": self.policy_name,
                "version": self.policy_version,
                "sha256": self.policy_sha256,
            },
            "metadata": {"no": self.metadata_no, "source": self.metadata_source},
            "count": len(self.models),
            "sha256": self.sha256,
            "models": list(self.models),
        }


def models_hash(models: Sequence[ModelRow]) -> str:
    canon = json.dumps(list(models), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


#: Rules about the snapshot as a whole, not the model: reported by ``mds status``, not per model.
_SNAPSHOT_RULES = frozenset({"metadata.entry", "metadata.signed", "metadata.fresh"})


def admitted_models(policy: Policy, metadata: MetadataSource, *, at: datetime) -> ModelList:
    """Every metadata model (with an AAGUID) that ``explain_model`` would admit."""
    rules = [r for r in MODEL_RULES if r[0] not in _SNAPSHOT_RULES]
    rows: list[ModelRow] = []
    for entry in metadata.models():
        aaguid = entry.aaguid
        if not aaguid:
            continue
        facts = ModelFacts(aaguid, at, True, Computed(ModelLookup(entry)), Computed())
        reasons = run_rules(rules, facts, policy)
        if not decide(reasons, MODEL_MUST_PASS - {"metadata.entry"}):
            continue
        floor = policy.device.firmware_minimum.get(aaguid)
        rows.append(
            {
                "aaguid": aaguid,
                "description": entry.description,
                "certification": entry.certification_level,
                "status": entry.status,
                "firmware_minimum": str(floor) if floor else None,
                "why": qualifies(policy, entry, reasons),
            }
        )
    for extra in policy.authenticators.allow_aaguids:
        if not any(r["aaguid"] == extra for r in rows) and metadata.by_aaguid(extra) is None:
            if not policy.metadata.required:
                rows.append(
                    {
                        "aaguid": extra,
                        "description": "(not in metadata; admitted via trust.extra_roots)",
                        "certification": None,
                        "status": None,
                        "firmware_minimum": None,
                        "why": {"authenticator.allowed": f"AAGUID {extra} is on the allowlist"},
                    }
                )
    rows.sort(key=lambda r: (str(r["description"]), r["aaguid"]))
    snap = metadata.snapshot()
    return ModelList(
        policy_name=policy.name,
        policy_version=policy.version,
        policy_sha256=policy.sha256,
        metadata_no=snap.no if snap else None,
        metadata_source=snap.source if snap else None,
        models=tuple(rows),
        sha256=models_hash(rows),
    )


def qualifies(policy: Policy, entry: Entry, reasons: tuple[Reason, ...]) -> dict[str, str]:
    """Why an admitted model qualifies: each rule that passed, with the metadata it read; the
    ``[hardware]`` rule is shown criterion by criterion (``hardware.key_protection``, ...)."""
    why = {r.rule: r.detail for r in reasons if r.outcome == "pass"}
    if policy.hardware is not None and why.pop("authenticator.hardware", None) is not None:
        why.update({c.criterion: c.detail for c in hardware_checks(policy.hardware, entry)})
    return why


def diff_models(previous: Mapping[str, object], current: ModelList) -> dict[str, object]:
    """Compare a saved ``keyadmin policy models --json`` output with the current list."""
    saved = previous.get("models")
    rows = saved if isinstance(saved, list) else []
    before = {m["aaguid"]: m for m in rows if isinstance(m, dict)}
    after = {m["aaguid"]: m for m in current.models}
    changed = [
        {"aaguid": k, "before": before[k], "after": after[k]}
        for k in sorted(before.keys() & after.keys())
        if before[k] != after[k]
    ]
    return {
        "previous_sha256": previous.get("sha256"),
        "current_sha256": current.sha256,
        "added": [after[k] for k in sorted(after.keys() - before.keys())],
        "removed": [before[k] for k in sorted(before.keys() - after.keys())],
        "changed": changed,
    }
