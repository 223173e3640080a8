"""Enrol a hardware key for a user: only a credential that passes the policy is kept.

Order (each step raises; nothing is stored until the last one), one function each:
 1. ``_gate``: dual control (the witness), the metadata gate (freshness, and signatures
    when the policy demands them), device readiness (firmware floor, PIN, min PIN length,
    always-UV, AAGUID not denied)
 2. ``_ceremony``: a discoverable credential with direct attestation, UV required,
    credProtect as the policy says, an excludeList of the user's credentials
    (``Device.make_credential``: keyadmin.device.ceremony builds python-fido2's client)
 3. ``_verify``: challenge, then every policy rule on the attestation (Decision)
 4. ``_decide``: enterprise attestation when the policy asks for it
    (keyadmin.flows.enterprise) and the key inventory's rule; a refusal raises here
 5. ``_store``: user, credential, evidence, decision, policy version, metadata no.,
    operator and witness, with an audit row, in ONE transaction
 Refused, interrupted (Ctrl-C), or a database that refuses the commit: the new
 credential is deleted from the key (credential management) and nothing is stored
 but the audit row of the refusal.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from keyadmin.device.cleanup import discard, discard_unknown
from keyadmin.device.errors import CredentialExcluded, UnsupportedAlgorithm
from keyadmin.errors import KeyadminError, PinError, PolicyRefused, failed_summary

if TYPE_CHECKING:
    from keyadmin.device.ceremony import NewCredential
    from keyadmin.device.interaction import Interaction
    from keyadmin.device.port import Device
    from keyadmin.device.session import DeviceInfo
    from keyadmin.flows.authority import WitnessProof
    from keyadmin.flows.enterprise import EnterpriseAsk
    from keyadmin.mds.freshness import Freshness
    from keyadmin.policy.metadata import MetadataSource
    from keyadmin.policy.model import Decision, Policy
    from keyadmin.policy.readiness import DeviceFacts

#: pubKeyCredParams in the RP's order of preference; only those the policy allows are sent.
_REQUESTED_ALGORITHMS = (-7, -8, -35, -257, -48, -49, -50)  # ES256, EdDSA, ES384, RS256, ML-DSA

#: a log row's details, and the authority's evidence in it (JSON objects)
Details = dict[str, object]


class EnrolmentRefused(PolicyRefused):
    """The policy refused the key or its credential; ``reasons`` says which rules failed."""


@dataclass(frozen=True)
class EnrolResult:
    approved: bool
    user: str
    device: str
    aaguid: str | None
    credential_id: str | None
    registry_id: int | None
    policy: str
    policy_sha256: str
    metadata_no: int | None
    operator: str
    witness: str | None
    reasons: list[dict[str, str]] = field(default_factory=list)
    witness_proof: Details | None = None
    removed_from_key: bool | None = None
    metadata_override: bool = False
    key_serial: str | None = None
    flags: list[str] = field(default_factory=list)  # warnings (inventory.serial_reuse = "flag")


def _reasons(decision: Decision) -> list[dict[str, str]]:
    return [{"rule": r.rule, "outcome": r.outcome, "detail": r.detail} for r in decision.reasons]


def _failed(reasons: list[dict[str, str]]) -> str:
    """The failed rules by name, for a one-line message; the CLI prints each rule's detail
    on its own line from the error's ``reasons`` (keyadmin.cli.main)."""
    return failed_summary(reasons)


def _log(
    db_url: str,
    *,
    actor: str,
    action: str,
    subject: str,
    details: Details,
    authority: Details | None = None,
) -> None:
    from keyadmin.store.audit import record

    if authority is not None:
        details = {**details, "authority": authority}
    record(db_url, actor=actor, action=action, subject=subject, details=details)


def _registered(db_url: str, credential_id: bytes) -> bool:
    """Is this credential in the registry (committed)? False when that cannot be read."""
    from keyadmin.store import registry
    from keyadmin.store.db import transaction
    from keyadmin.store.registry import NotFound

    try:
        with transaction(db_url) as s:
            registry.get_credential(s, credential_id.hex())
    except NotFound:
        return False
    except Exception:  # noqa: BLE001 - unknown means not stored: clean the key up
        return False
    return True


def _log_refusal(
    db_url: str,
    *,
    actor: str,
    subject: str,
    details: Details,
    authority: Details | None = None,
) -> str:
    """Log an ``enrol.refused`` row. The refusal stands whatever happens to its log row:
    returns "" when logged, else a note for the refusal's message."""
    try:
        _log(
            db_url,
            actor=actor,
            action="enrol.refused",
            subject=subject,
            details=details,
            authority=authority,
        )
    except KeyadminError as e:
        return f" (the refusal could not be written to the log: {e.message})"
    return ""


def metadata_gate(
    policy: Policy, metadata: MetadataSource | None, now: datetime, override_stale: bool
) -> Freshness | None:
    """Freshness (and signature) gate for policies that need metadata; None when not needed."""
    if not policy.metadata.required:
        return None
    from keyadmin.mds.freshness import require_fresh

    return require_fresh(
        metadata.snapshot() if metadata is not None else None,
        now,
        timedelta(days=policy.metadata.freshness_grace_days),
        override=override_stale,
        require_signed=policy.metadata.signed,
        override_flag="--allow-stale-metadata",
    )


def device_facts(info: DeviceInfo) -> DeviceFacts:
    from keyadmin.policy.readiness import DeviceFacts

    return DeviceFacts(
        aaguid=info.aaguid,
        firmware=info.firmware,
        pin_set=info.pin_set,
        min_pin_length=info.min_pin_length,
        always_uv=info.always_uv,
        cred_protect_supported="credProtect" in info.extensions,
    )


def check_witness(witness: str | None, *, user: str, operator: str) -> None:
    """Dual control needs a second person: the witness may be neither the user being
    enrolled (their own first key would vouch for their next one) nor the operator."""
    if witness is None:
        return
    same = witness.strip().casefold()
    if same == user.strip().casefold():
        raise EnrolmentRefused(
            f"the witness {witness} is the user being enrolled; dual control needs a second person",
            hint="ask another operator with an enrolled key to witness",
        )
    if same == operator.strip().casefold():
        raise EnrolmentRefused(
            f"the witness {witness} is the operator running the enrolment; dual control needs "
            "a second person",
            hint="ask another operator with an enrolled key to witness",
        )


@dataclass
class _Enrolment:
    """One enrolment as its steps share it: the inputs, and what each step learnt."""

    user: str
    display_name: str | None
    policy: Policy
    session: Device
    interaction: Interaction
    db_url: str
    metadata: MetadataSource | None
    operator: str
    nickname: str | None
    witness: str | None
    witness_proof: WitnessProof | None
    now: datetime
    authority: Details | None
    user_handle: bytes | None
    base: Details = field(default_factory=dict)  # in every log row's details
    fresh: Freshness | None = None  # the metadata gate's verdict (1)
    metadata_no: int | None = None
    info: DeviceInfo | None = None  # the key's getInfo (1)
    known: set[str] = field(default_factory=set)  # the user's credentials in the registry (2)
    ea_ask: EnterpriseAsk | None = None  # what enterprise attestation was asked for (2)
    challenge: bytes | None = None  # the ceremony's challenge (2)

    @property
    def device(self) -> str:
        return self.session.ref.selector

    @property
    def rp_id(self) -> str:
        return self.policy.relying_party.rp_id

    @property
    def stale_override(self) -> bool:
        return bool(self.fresh and self.fresh.override_used)

    def key_info(self) -> DeviceInfo:
        if self.info is None:  # _gate reads it before anything else needs it
            raise KeyadminError("internal: the key's getInfo was not read")
        return self.info

    def refuse(self, details: Details) -> str:
        """Log an ``enrol.refused`` row with the base details; "" or a note (_log_refusal)."""
        return _log_refusal(
            self.db_url,
            actor=self.operator,
            authority=self.authority,
            subject=self.user,
            details={**self.base, **details},
        )


@dataclass(frozen=True)
class _Verdict:
    """What ``_decide`` approved: the reasons, and the inventory's serial and flags."""

    reasons: list[dict[str, str]]
    key_serial: str | None
    flags: list[str]


def enrol(
    *,
    user: str,
    display_name: str | None,
    policy: Policy,
    session: Device,
    interaction: Interaction,
    db_url: str,
    metadata: MetadataSource | None,
    operator: str,
    nickname: str | None = None,
    witness: str | None = None,
    witness_proof: WitnessProof | None = None,
    override_stale_metadata: bool = False,
    now: datetime | None = None,
    authority: Details | None = None,
    user_handle: bytes | None = None,
) -> EnrolResult:
    """``user_handle``: the WebAuthn user handle for a new user (the application's own, so
    that its sign-in finds the user); an existing user keeps theirs, and another is refused.
    ``witness_proof`` is the WitnessProof of ``keyadmin.flows.authority.witness``: the
    witness proved presence with their own credential, for this enrolment, just now.
    ``authority`` (keyadmin.flows.authority's evidence) goes into every log row's details."""
    from keyadmin.store import registry

    user = registry.user_name(user)  # NFC; control/bidi/invisible refused before the key
    if display_name is not None:
        display_name = registry.user_name(display_name, "display name")
    ctx = _Enrolment(
        user=user,
        display_name=display_name,
        policy=policy,
        session=session,
        interaction=interaction,
        db_url=db_url,
        metadata=metadata,
        operator=operator,
        nickname=nickname,
        witness=witness,
        witness_proof=witness_proof,
        now=now or datetime.now(UTC),
        authority=authority,
        user_handle=user_handle,
    )
    ctx.base = {
        "user": user,
        "device": ctx.device,
        "policy": policy.name,
        "policy_sha256": policy.sha256,
        "operator": operator,
        "witness": witness,
    }
    _gate(ctx, override_stale_metadata)
    made = _ceremony(ctx)
    cred_id = made.credential_id
    # from here on, anything but success removes the credential from the key
    try:
        decision = _verify(ctx, made)
        verdict = _decide(ctx, made, decision)
        registry_id = _store(ctx, made, decision, verdict)
    except EnrolmentRefused:
        raise
    except BaseException as e:
        if _registered(db_url, cred_id):
            # Ctrl-C landed after the commit (on its way out of the transaction): the
            # enrolment is complete, so the credential stays on the key with its row.
            raise
        removed = discard(session, interaction, cred_id)
        if isinstance(e, KeyadminError):
            e.data["removed_from_key"] = removed
            if not removed:
                e.message += " (the new credential could NOT be removed from the key)"
        raise
    return EnrolResult(
        approved=True,
        user=user,
        device=ctx.device,
        aaguid=made.aaguid,
        credential_id=cred_id.hex(),
        registry_id=registry_id,
        policy=policy.name,
        policy_sha256=policy.sha256,
        metadata_no=ctx.metadata_no,
        operator=operator,
        witness=witness,
        reasons=verdict.reasons,
        witness_proof=_witness_details(witness_proof),
        metadata_override=ctx.stale_override,
        key_serial=verdict.key_serial,
        flags=verdict.flags,
    )


def _witness_details(proof: WitnessProof | None) -> Details | None:
    """What the log rows and the result say of the witness's assertion."""
    if proof is None:
        return None
    return {
        "credential": proof.credential_id,
        "counter": proof.counter,
        "challenge": proof.challenge_id,
        "action_hash": proof.action_hash,
        "audit_seq": proof.audit_seq,
    }


def _gate(ctx: _Enrolment, override_stale_metadata: bool) -> None:
    """Step 1: dual control, the metadata gate, the key's readiness. Raises on a refusal;
    notes the metadata's verdict and the key's getInfo in ``ctx``."""
    from keyadmin.policy.readiness import evaluate_device

    policy, witness, proof = ctx.policy, ctx.witness, ctx.witness_proof
    # dual control
    check_witness(witness, user=ctx.user, operator=ctx.operator)
    if proof is not None and (witness is None or proof.user != witness):
        raise KeyadminError("the witness proof is for another operator")
    if policy.enrolment.witness_required and proof is None:
        raise EnrolmentRefused(
            f"the policy {policy.name} requires a witness (dual control)",
            hint="name the witness and their key: --witness NAME --witness-device DEVICE",
        )
    if witness is not None and proof is None:
        raise EnrolmentRefused(
            f"the witness {witness} has not proved presence",
            hint="pass --witness-device with the witness's enrolled key",
        )
    if proof is not None:
        ctx.base["witness_proof"] = _witness_details(proof)

    # metadata
    ctx.fresh = metadata_gate(policy, ctx.metadata, ctx.now, override_stale_metadata)
    if ctx.fresh is not None and ctx.fresh.override_used:
        _log(
            ctx.db_url,
            actor=ctx.operator,
            action="override.stale-metadata",
            subject=ctx.user,
            details={"no": ctx.fresh.no, "deadline": ctx.fresh.deadline, "device": ctx.device},
            authority=ctx.authority,
        )
    snap = ctx.metadata.snapshot() if ctx.metadata is not None else None
    ctx.metadata_no = snap.no if snap is not None else None

    # device readiness
    ctx.info = info = ctx.session.info()
    readiness = evaluate_device(policy, device_facts(info))
    if not readiness.allowed:
        reasons = _reasons(readiness)
        unlogged = ctx.refuse({"stage": "device", "aaguid": info.aaguid, "reasons": reasons})
        raise EnrolmentRefused(
            f"the key is not ready for enrolment: {_failed(reasons)}{unlogged}",
            hint=f"prepare it with: keyadmin device prepare --policy {policy.path}",
            reasons=reasons,
        )


def _ceremony(ctx: _Enrolment) -> NewCredential:
    """Step 2: the registry's limits for the user, then makeCredential on the key. A
    refusal is logged; an interruption or failure cleans the key of the user's new
    credential. Notes the user handle and the user's known credentials in ``ctx``."""
    from keyadmin.flows import enterprise
    from keyadmin.store import registry
    from keyadmin.store.db import transaction

    user, policy, info = ctx.user, ctx.policy, ctx.key_info()
    with transaction(ctx.db_url) as s:
        existing_user = registry.find_user(s, user)
        existing = registry.list_credentials(s, user=user) if existing_user else []
    live = [c for c in existing if c.status in ("active", "suspended", "quarantined")]
    if len(live) >= policy.keys_per_user.maximum:
        raise EnrolmentRefused(
            f"{user} already holds {len(live)} key(s), the policy's maximum",
            hint="revoke a key first (keyadmin creds revoke ID --reason …)",
        )
    if (
        existing_user
        and ctx.user_handle is not None
        and not hmac.compare_digest(existing_user.user_handle, ctx.user_handle)
    ):
        from keyadmin.errors import UsageError

        raise UsageError(
            f"{user} already has another user handle in the registry",
            hint="leave out --user-handle: a user keeps the handle of their first enrolment",
        )
    if existing_user:
        ctx.user_handle = existing_user.user_handle
    elif ctx.user_handle is None:
        ctx.user_handle = os.urandom(32)
    user_handle = ctx.user_handle
    ctx.known = {c.credential_id for c in existing}
    challenge = os.urandom(32)
    try:
        ctx.ea_ask = enterprise.plan(policy, info)
        made = _make_credential(
            ctx,
            user_handle,
            challenge,
            [bytes.fromhex(c.credential_id) for c in existing],
        )
    except EnrolmentRefused as refused:
        refused.message += ctx.refuse(
            {
                "stage": "ceremony",
                "aaguid": info.aaguid,
                "reasons": [
                    {
                        "rule": refused.data.get("rule", "registry.duplicate"),
                        "outcome": "fail",
                        "detail": refused.message,
                    }
                ],
            }
        )
        raise
    except PinError:
        raise  # no verified PIN, no credential: and a clean-up would spend another PIN retry
    except BaseException:
        # Interrupted (Ctrl-C) or failed while the key may already hold the new credential:
        # delete any credential of this user handle that the registry does not know.
        discard_unknown(ctx.session, ctx.interaction, ctx.rp_id, user_handle, ctx.known)
        raise
    ctx.challenge = challenge
    return made


def _verify(ctx: _Enrolment, made: NewCredential) -> Decision:
    """Step 3: our challenge in the client data, then every policy rule on the attestation."""
    from keyadmin.policy.evaluate import evaluate_registration

    if ctx.challenge is None or not hmac.compare_digest(
        made.client_data_challenge, ctx.challenge
    ):
        raise KeyadminError("the client data does not carry our challenge")
    return evaluate_registration(
        ctx.policy,
        made.attestation_object,
        made.client_data_json,
        at=ctx.now,
        metadata=ctx.metadata,
        stale_metadata_override=ctx.stale_override,
    )


def _decide(ctx: _Enrolment, made: NewCredential, decision: Decision) -> _Verdict:
    """Step 4: the attestation's decision, enterprise attestation and the key inventory's
    rule. A refusal removes the credential from the key, is logged, and raises."""
    from keyadmin.flows import enterprise
    from keyadmin.flows.inventory import check_enrolment
    from keyadmin.store.db import transaction

    reasons = _reasons(decision)
    ea_reason, key_serial = enterprise.judge(ctx.policy, ctx.ea_ask, decision.evidence)
    if ea_reason is not None:
        reasons.append(ea_reason)
    with transaction(ctx.db_url) as s:
        inv_reason, flags = check_enrolment(s, ctx.policy, key_serial, ctx.user)
    if inv_reason is not None:
        reasons.append(inv_reason)
    if decision.allowed and not any(
        r is not None and r["outcome"] == "fail" for r in (ea_reason, inv_reason)
    ):
        return _Verdict(reasons, key_serial, flags)
    removed = discard(ctx.session, ctx.interaction, made.credential_id)
    unlogged = ctx.refuse(
        {
            "stage": "attestation",
            "aaguid": made.aaguid,
            "credential": made.credential_id.hex(),
            "reasons": reasons,
            "removed_from_key": removed,
        }
    )
    raise EnrolmentRefused(
        f"the policy refused this key: {_failed(reasons)}"
        + ("" if removed else " (the credential could NOT be removed from the key)")
        + unlogged,
        reasons=reasons,
        removed_from_key=removed,
        logged=not unlogged,
    )


def _store(ctx: _Enrolment, made: NewCredential, decision: Decision, verdict: _Verdict) -> int:
    """Step 5: user, credential, evidence, decision, policy version, inventory binding and
    their log rows, in ONE transaction. Returns the credential's registry id."""
    from keyadmin.store import registry
    from keyadmin.store.db import transaction

    if decision.evidence is None:  # an allowed decision always rests on verified evidence
        raise KeyadminError("internal: an allowed decision without evidence")
    if ctx.user_handle is None:  # _ceremony chose it
        raise KeyadminError("internal: no user handle")
    policy, info, operator, authority = ctx.policy, ctx.key_info(), ctx.operator, ctx.authority
    evidence = decision.evidence.to_dict()
    with transaction(ctx.db_url) as s:
        u = registry.get_or_create_user(
            s, ctx.user, ctx.display_name, user_handle=ctx.user_handle
        )
        policy_id = registry.record_policy(
            s,
            sha256=policy.sha256,
            name=policy.name,
            path=str(policy.path),
            content=policy.text,
            authority=authority,
        )
        record = registry.add_credential(
            s,
            user=u,
            credential_id=made.credential_id,
            # the COSE_Key exactly as the authenticator encoded it in authData
            public_key_cose=decision.evidence.credential_public_key_cbor,
            sign_count=made.sign_count,
            aaguid=made.aaguid,
            transports=list(info.transports),
            backup_eligible=bool(made.flags & 0x08),
            backed_up=bool(made.flags & 0x10),
            nickname=ctx.nickname,
            evidence=evidence,
            decision={
                "allowed": True,
                "reasons": verdict.reasons,
                "subject": decision.subject,
                "witness_proof": ctx.base.get("witness_proof"),
                "device": {
                    "firmware": info.firmware,
                    "transport": info.transport,
                    "min_pin_length": info.min_pin_length,
                    "always_uv": info.always_uv,
                },
            },
            attestation_object=made.attestation_object,
            client_data_json=made.client_data_json,
            policy_version_id=policy_id,
            metadata_no=ctx.metadata_no,
            operator=operator,
            witness=ctx.witness,
            authority=authority,
            key_serial=verdict.key_serial,
            firmware=info.firmware,
            flags=verdict.flags,
        )
        if verdict.key_serial is not None:
            from keyadmin.store.inventory import bind

            bind(
                s,
                verdict.key_serial,
                user=u,
                credential_id=made.credential_id.hex(),
                firmware=info.firmware,
                actor=operator,
                authority=authority,
            )
    return record.id


def _make_credential(
    ctx: _Enrolment, user_handle: bytes, challenge: bytes, exclude: list[bytes]
) -> NewCredential:
    """makeCredential as the policy asks. ``ctx.ea_ask`` (keyadmin.flows.enterprise): ask
    for enterprise attestation; its ``ep_att`` is set from the key's answer."""
    from keyadmin.device.ceremony import CredentialRequest, EnterpriseRequest

    policy, ea_ask = ctx.policy, ctx.ea_ask
    rp = policy.relying_party
    algs = tuple(a for a in _REQUESTED_ALGORITHMS if a in policy.credential.algorithms)
    asked = ea_ask is not None and ea_ask.asked
    request = CredentialRequest(
        rp_id=rp.rp_id,
        rp_name=policy.name,
        origin=rp.origins[0],
        user_id=user_handle,
        user_name=ctx.user,
        user_display_name=ctx.display_name or ctx.user,
        challenge=challenge,
        algorithms=algs,
        exclude=tuple(exclude),
        resident_key=True,
        cred_protect=policy.credential.cred_protect,
        enterprise=EnterpriseRequest(ea_ask.platform_rp_ids) if ea_ask and asked else None,
        timeout_ms=60000,
    )
    try:
        made = ctx.session.make_credential(request, ctx.interaction)
    except CredentialExcluded:
        raise EnrolmentRefused(
            f"this key already holds a credential of {ctx.user} in the registry",
            hint="the same key cannot be enrolled twice for one user; use another key",
        ) from None
    except UnsupportedAlgorithm:
        from keyadmin.policy.model import ALGORITHM_NAMES

        wanted = ", ".join(ALGORITHM_NAMES.get(a, str(a)) for a in algs) or "none"
        raise EnrolmentRefused(
            f"the key makes credentials with none of the algorithms requested ({wanted}; "
            "the policy's credential.algorithms that enrolment can request)",
            hint="use a key that supports one of them, or a policy allowing the key's "
            "algorithms (keyadmin device info lists them)",
            rule="algorithm",
        ) from None
    if ea_ask is not None and asked:
        ea_ask.ep_att = made.ep_att
    return made
