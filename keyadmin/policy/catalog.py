"""The policy against the metadata: would a model pass (``explain_model``), and which models
does it admit (``admitted_models``), as a reviewable list with its hash and a diff.

Only what metadata can say is judged here: status, certification, allowlist, attachment,
key protection, attestation types and trust anchors. What only a registration shows (flags,
algorithm, signature, chain validity) is listed as ``skip`` with the rule that will check it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from keyadmin.policy import lifecycle
from keyadmin.policy.evaluate import (
    allowlist_outcome,
    certification_outcome,
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
    entry_label,
    entry_root_fingerprints,
    entry_roots_der,
)
from keyadmin.policy.model import Decision, Outcome, Policy, Reason

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


@dataclass
class _ModelCtx:
    policy: Policy
    metadata: MetadataSource | None
    aaguid: str
    at: datetime
    entry: dict[str, Any] | None = None
    key_id: str | None = None  # attestation key identifier, for models without an AAGUID (U2F)


def _entry(ctx: _ModelCtx) -> tuple[Outcome, str]:
    if ctx.metadata is None:
        return "fail", "no metadata source"
    if ctx.aaguid == "00000000-0000-0000-0000-000000000000" and ctx.key_id:
        ctx.entry = ctx.metadata.by_key_id(ctx.key_id)
        if ctx.entry is not None:
            return "pass", f"{entry_label(ctx.entry)} (attestation key identifier {ctx.key_id})"
    else:
        ctx.entry = ctx.metadata.by_aaguid(ctx.aaguid)
    if ctx.entry is not None:
        return "pass", entry_label(ctx.entry)
    if ctx.policy.metadata.required:
        return "fail", f"no metadata entry for AAGUID {ctx.aaguid}; the policy requires one"
    return "skip", f"no metadata entry for AAGUID {ctx.aaguid}; the policy does not require one"


def _signed(ctx: _ModelCtx) -> tuple[Outcome, str]:
    return metadata_signed_outcome(ctx.policy, ctx.metadata)


def _fresh(ctx: _ModelCtx) -> tuple[Outcome, str]:
    return metadata_fresh_outcome(ctx.policy, ctx.metadata, ctx.at)


def _trusted(ctx: _ModelCtx) -> tuple[Outcome, str]:
    n_entry = len(entry_roots_der(ctx.entry)) if ctx.entry else 0
    n_extra = len(ctx.policy.trust_roots)
    if n_entry + n_extra == 0:
        return (
            "fail",
            "no trust anchor: the entry lists no attestation root and the policy names none",
        )
    return "pass", (
        f"{n_entry} metadata root(s) + {n_extra} policy root(s); each registration's chain "
        "is validated against them"
    )


def _types(ctx: _ModelCtx) -> tuple[Outcome, str]:
    if ctx.entry is None:
        return "skip", "no metadata entry lists the model's attestation types"
    types = [_MDS_TYPES.get(str(t), str(t)) for t in ctx.entry.get("attestation_types") or []]
    ok = [t for t in types if t in ctx.policy.attestation.types]
    if ok:
        return "pass", f"metadata attestationTypes {', '.join(types)}; accepted: {', '.join(ok)}"
    return "fail", f"metadata attestationTypes {', '.join(types) or '-'}: none accepted"


def _status(ctx: _ModelCtx) -> tuple[Outcome, str]:
    return status_outcome(ctx.policy, ctx.entry)


def _certification(ctx: _ModelCtx) -> tuple[Outcome, str]:
    return certification_outcome(ctx.policy, ctx.entry)


def _retired(ctx: _ModelCtx) -> tuple[Outcome, str]:
    return lifecycle.retired_outcome(ctx.policy, ctx.entry, ctx.at)


def _fips(ctx: _ModelCtx) -> tuple[Outcome, str]:
    return lifecycle.fips_outcome(ctx.policy, ctx.entry)


def _profile(ctx: _ModelCtx) -> tuple[Outcome, str]:
    return lifecycle.profile_outcome(ctx.policy, ctx.entry)


def _allowed(ctx: _ModelCtx) -> tuple[Outcome, str]:
    roots = entry_root_fingerprints(ctx.entry) if ctx.entry else set()
    vendor = next(iter(roots & ctx.policy.authenticators.allow_vendor_roots), None)
    return allowlist_outcome(ctx.policy, ctx.aaguid, ctx.entry, vendor)


def _roaming(ctx: _ModelCtx) -> tuple[Outcome, str]:
    return roaming_outcome(ctx.policy, None, ctx.entry)


def _key_protection(ctx: _ModelCtx) -> tuple[Outcome, str]:
    return key_protection_outcome(ctx.policy, ctx.entry)


def _hardware(ctx: _ModelCtx) -> tuple[Outcome, str]:
    return hardware_outcome(ctx.policy, ctx.entry)


def _firmware(ctx: _ModelCtx) -> tuple[Outcome, str]:
    floor = ctx.policy.device.firmware_minimum.get(ctx.aaguid)
    if floor is None:
        return "skip", "no firmware floor for this AAGUID"
    version = ctx.entry.get("authenticator_version") if ctx.entry else None
    return "skip", (
        f"each key must run firmware >= {floor} (checked on the device at enrolment); "
        f"metadata authenticatorVersion {version if version is not None else '-'}"
    )


def _per_registration(ctx: _ModelCtx) -> tuple[Outcome, str]:
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
    ("metadata.status", _status),
    ("metadata.certification", _certification),
    ("metadata.retired", _retired),
    ("metadata.fips", _fips),
    ("metadata.profile", _profile),
    ("authenticator.allowed", _allowed),
    ("authenticator.roaming", _roaming),
    ("authenticator.key_protection", _key_protection),
    ("authenticator.hardware", _hardware),
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
    ctx = _ModelCtx(policy, metadata, canonical, at, key_id=key_id)
    reasons = run_rules(MODEL_RULES, ctx)
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
            "description": ctx.entry.get("description") if ctx.entry else None,
            "at": at.isoformat(),
        },
    )


@dataclass(frozen=True)
class ModelList:
    policy_name: str
    policy_version: int
    policy_sha256: str
    metadata_no: int | None
    metadata_source: str | None
    models: tuple[dict[str, Any], ...]
    sha256: str  # of the canonical JSON of ``models``

    def to_dict(self) -> dict[str, Any]:
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


def models_hash(models: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> str:
    canon = json.dumps(list(models), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


#: Rules about the snapshot as a whole, not the model: reported by ``mds status``, not per model.
_SNAPSHOT_RULES = frozenset({"metadata.entry", "metadata.signed", "metadata.fresh"})


def admitted_models(policy: Policy, metadata: MetadataSource, *, at: datetime) -> ModelList:
    """Every metadata model (with an AAGUID) that ``explain_model`` would admit."""
    rows: list[dict[str, Any]] = []
    for doc in metadata.models():
        aaguid = doc.get("aaguid")
        if not aaguid:
            continue
        ctx = _ModelCtx(policy, metadata, aaguid, at, entry=doc)
        reasons = run_rules([r for r in MODEL_RULES if r[0] not in _SNAPSHOT_RULES], ctx)
        if not decide(reasons, MODEL_MUST_PASS - {"metadata.entry"}):
            continue
        level = doc.get("certification_level")
        floor = policy.device.firmware_minimum.get(aaguid)
        rows.append(
            {
                "aaguid": aaguid,
                "description": doc.get("description"),
                "certification": level,
                "status": doc.get("status"),
                "firmware_minimum": str(floor) if floor else None,
                "why": qualifies(policy, doc, reasons),
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


def qualifies(policy: Policy, doc: dict[str, Any], reasons: tuple[Reason, ...]) -> dict[str, str]:
    """Why an admitted model qualifies: each rule that passed, with the metadata it read; the
    ``[hardware]`` rule is shown criterion by criterion (``hardware.key_protection``, ...)."""
    why = {r.rule: r.detail for r in reasons if r.outcome == "pass"}
    if policy.hardware is not None and why.pop("authenticator.hardware", None) is not None:
        why.update({c.criterion: c.detail for c in hardware_checks(policy.hardware, doc)})
    return why


def diff_models(previous: dict[str, Any], current: ModelList) -> dict[str, Any]:
    """Compare a saved ``keyadmin policy models --json`` output with the current list."""
    before = {m["aaguid"]: m for m in previous.get("models") or [] if isinstance(m, dict)}
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
