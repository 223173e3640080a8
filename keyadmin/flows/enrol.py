"""Enrol a hardware key for a user: only a credential that passes the policy is kept.

Order (each step raises; nothing is stored until the last one):
 1. metadata gate: freshness (and signatures, when the policy demands them)
 2. device readiness: firmware floor, PIN, min PIN length, always-UV, AAGUID not denied
 3. the ceremony: a discoverable credential with direct attestation, UV required,
    credProtect as the policy says, an excludeList of the user's credentials
 4. verification: challenge, then every policy rule on the attestation (Decision), then
    enterprise attestation when the policy asks for it (keyadmin.flows.enterprise)
 5. approved: user, credential, evidence, decision, policy version, metadata no.,
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
from typing import Any

from keyadmin.device.errors import device_errors
from keyadmin.errors import DeviceError, KeyadminError, PinError, PolicyRefused, failed_summary

#: pubKeyCredParams in the RP's order of preference; only those the policy allows are sent.
_REQUESTED_ALGORITHMS = (-7, -8, -35, -257, -48, -49, -50)  # ES256, EdDSA, ES384, RS256, ML-DSA


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
    witness_proof: dict[str, Any] | None = None
    removed_from_key: bool | None = None
    metadata_override: bool = False
    key_serial: str | None = None
    flags: list[str] = field(default_factory=list)  # warnings (inventory.serial_reuse = "flag")


def _reasons(decision: Any) -> list[dict[str, str]]:
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
    details: dict[str, Any],
    authority: dict[str, Any] | None = None,
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
    details: dict[str, Any],
    authority: dict[str, Any] | None = None,
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


def metadata_gate(policy: Any, metadata: Any, now: datetime, override_stale: bool) -> Any:
    """Freshness (and signature) gate for policies that need metadata; None when not needed."""
    if not policy.metadata.required:
        return None
    from keyadmin.mds.freshness import require_fresh

    return require_fresh(
        metadata.snapshot(),
        now,
        timedelta(days=policy.metadata.freshness_grace_days),
        override=override_stale,
        require_signed=policy.metadata.signed,
        override_flag="--allow-stale-metadata",
    )


def device_facts(info: Any) -> Any:
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


def enrol(
    *,
    user: str,
    display_name: str | None,
    policy: Any,
    session: Any,
    interaction: Any,
    db_url: str,
    metadata: Any,
    operator: str,
    nickname: str | None = None,
    witness: str | None = None,
    witness_proof: Any = None,
    override_stale_metadata: bool = False,
    now: datetime | None = None,
    authority: dict[str, Any] | None = None,
    user_handle: bytes | None = None,
) -> EnrolResult:
    """``user_handle``: the WebAuthn user handle for a new user (the application's own, so
    that its sign-in finds the user); an existing user keeps theirs, and another is refused.
    ``witness_proof`` is the WitnessProof of ``keyadmin.flows.authority.witness``: the
    witness proved presence with their own credential, for this enrolment, just now.
    ``authority`` (keyadmin.flows.authority's evidence) goes into every log row's details."""
    from keyadmin.policy.readiness import evaluate_device
    from keyadmin.store import registry
    from keyadmin.store.db import transaction

    now = now or datetime.now(UTC)
    user = registry.user_name(user)  # NFC; control/bidi/invisible refused before the key
    if display_name is not None:
        display_name = registry.user_name(display_name, "display name")
    device = session.ref.selector
    base: dict[str, Any] = {
        "user": user,
        "device": device,
        "policy": policy.name,
        "policy_sha256": policy.sha256,
        "operator": operator,
        "witness": witness,
    }

    # 0. dual control
    check_witness(witness, user=user, operator=operator)
    if witness_proof is not None and (witness is None or witness_proof.user != witness):
        raise KeyadminError("the witness proof is for another operator")
    if policy.enrolment.witness_required and witness_proof is None:
        raise EnrolmentRefused(
            f"the policy {policy.name} requires a witness (dual control)",
            hint="name the witness and their key: --witness NAME --witness-device DEVICE",
        )
    if witness is not None and witness_proof is None:
        raise EnrolmentRefused(
            f"the witness {witness} has not proved presence",
            hint="pass --witness-device with the witness's enrolled key",
        )
    if witness_proof is not None:
        base["witness_proof"] = {
            "credential": witness_proof.credential_id,
            "counter": witness_proof.counter,
            "challenge": witness_proof.challenge_id,
            "action_hash": witness_proof.action_hash,
            "audit_seq": witness_proof.audit_seq,
        }

    # 1. metadata
    fresh = metadata_gate(policy, metadata, now, override_stale_metadata)
    if fresh is not None and fresh.override_used:
        _log(
            db_url,
            actor=operator,
            action="override.stale-metadata",
            subject=user,
            details={"no": fresh.no, "deadline": fresh.deadline, "device": device},
            authority=authority,
        )
    snap = metadata.snapshot() if metadata is not None else None
    metadata_no = snap.no if snap is not None else None

    # 2. device readiness
    info = session.info()
    readiness = evaluate_device(policy, device_facts(info))
    if not readiness.allowed:
        reasons = _reasons(readiness)
        unlogged = _log_refusal(
            db_url,
            actor=operator,
            authority=authority,
            subject=user,
            details={**base, "stage": "device", "aaguid": info.aaguid, "reasons": reasons},
        )
        raise EnrolmentRefused(
            f"the key is not ready for enrolment: {_failed(reasons)}{unlogged}",
            hint=f"prepare it with: keyadmin device prepare --policy {policy.path}",
            reasons=reasons,
        )

    # 3. the ceremony
    with transaction(db_url) as s:
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
        and user_handle is not None
        and not hmac.compare_digest(existing_user.user_handle, user_handle)
    ):
        from keyadmin.errors import UsageError

        raise UsageError(
            f"{user} already has another user handle in the registry",
            hint="leave out --user-handle: a user keeps the handle of their first enrolment",
        )
    if existing_user:
        user_handle = existing_user.user_handle
    elif user_handle is None:
        user_handle = os.urandom(32)
    challenge = os.urandom(32)
    from keyadmin.flows import enterprise

    try:
        ea_ask = enterprise.plan(policy, info)
        response = _make_credential(
            session,
            interaction,
            policy,
            user,
            display_name,
            user_handle,
            challenge,
            [bytes.fromhex(c.credential_id) for c in existing],
            ea_ask,
        )
    except EnrolmentRefused as refused:
        refused.message += _log_refusal(
            db_url,
            actor=operator,
            authority=authority,
            subject=user,
            details={
                **base,
                "stage": "ceremony",
                "aaguid": info.aaguid,
                "reasons": [
                    {
                        "rule": refused.data.get("rule", "registry.duplicate"),
                        "outcome": "fail",
                        "detail": refused.message,
                    }
                ],
            },
        )
        raise
    except PinError:
        raise  # no verified PIN, no credential: and a clean-up would spend another PIN retry
    except BaseException:
        # Interrupted (Ctrl-C) or failed while the key may already hold the new credential:
        # delete any credential of this user handle that the registry does not know.
        _remove_unknown(
            session,
            interaction,
            policy.relying_party.rp_id,
            user_handle,
            {c.credential_id for c in existing},
        )
        raise
    att_obj = bytes(response.response.attestation_object)
    client_data = bytes(response.response.client_data)
    auth_data = response.response.attestation_object.auth_data
    cred_data = auth_data.credential_data
    cred_id = bytes(cred_data.credential_id)
    aaguid = str(cred_data.aaguid)

    # 4 and 5: from here on, anything but success removes the credential from the key
    try:
        if not hmac.compare_digest(response.response.client_data.challenge, challenge):
            raise KeyadminError("the client data does not carry our challenge")
        from keyadmin.policy.evaluate import evaluate_registration

        decision = evaluate_registration(
            policy,
            att_obj,
            client_data,
            at=now,
            metadata=metadata,
            stale_metadata_override=bool(fresh and fresh.override_used),
        )
        reasons = _reasons(decision)
        ea_reason, key_serial = enterprise.judge(policy, ea_ask, decision.evidence)
        if ea_reason is not None:
            reasons.append(ea_reason)
        from keyadmin.flows.inventory import check_enrolment

        with transaction(db_url) as s:
            inv_reason, flags = check_enrolment(s, policy, key_serial, user)
        if inv_reason is not None:
            reasons.append(inv_reason)
        if not decision.allowed or any(
            r is not None and r["outcome"] == "fail" for r in (ea_reason, inv_reason)
        ):
            removed = _remove(session, interaction, cred_id, policy.relying_party.rp_id)
            unlogged = _log_refusal(
                db_url,
                actor=operator,
                authority=authority,
                subject=user,
                details={
                    **base,
                    "stage": "attestation",
                    "aaguid": aaguid,
                    "credential": cred_id.hex(),
                    "reasons": reasons,
                    "removed_from_key": removed,
                },
            )
            raise EnrolmentRefused(
                f"the policy refused this key: {_failed(reasons)}"
                + ("" if removed else " (the credential could NOT be removed from the key)")
                + unlogged,
                reasons=reasons,
                removed_from_key=removed,
                logged=not unlogged,
            )
        if decision.evidence is None:  # an allowed decision always rests on verified evidence
            raise KeyadminError("internal: an allowed decision without evidence")
        evidence = decision.evidence.to_dict()
        with transaction(db_url) as s:
            u = registry.get_or_create_user(s, user, display_name, user_handle=user_handle)
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
                credential_id=cred_id,
                # the COSE_Key exactly as the authenticator encoded it in authData
                public_key_cose=decision.evidence.credential_public_key_cbor,
                sign_count=auth_data.counter,
                aaguid=aaguid,
                transports=list(info.transports),
                backup_eligible=bool(auth_data.flags & 0x08),
                backed_up=bool(auth_data.flags & 0x10),
                nickname=nickname,
                evidence=evidence,
                decision={
                    "allowed": True,
                    "reasons": reasons,
                    "subject": decision.subject,
                    "witness_proof": base.get("witness_proof"),
                    "device": {
                        "firmware": info.firmware,
                        "transport": info.transport,
                        "min_pin_length": info.min_pin_length,
                        "always_uv": info.always_uv,
                    },
                },
                attestation_object=att_obj,
                client_data_json=client_data,
                policy_version_id=policy_id,
                metadata_no=metadata_no,
                operator=operator,
                witness=witness,
                authority=authority,
                key_serial=key_serial,
                firmware=info.firmware,
                flags=flags,
            )
            if key_serial is not None:
                from keyadmin.store.inventory import bind

                bind(
                    s,
                    key_serial,
                    user=u,
                    credential_id=cred_id.hex(),
                    firmware=info.firmware,
                    actor=operator,
                    authority=authority,
                )
    except EnrolmentRefused:
        raise
    except BaseException as e:
        if _registered(db_url, cred_id):
            # Ctrl-C landed after the commit (on its way out of the transaction): the
            # enrolment is complete, so the credential stays on the key with its row.
            raise
        removed = _remove(session, interaction, cred_id, policy.relying_party.rp_id)
        if isinstance(e, KeyadminError):
            e.data["removed_from_key"] = removed
            if not removed:
                e.message += " (the new credential could NOT be removed from the key)"
        raise
    return EnrolResult(
        approved=True,
        aaguid=aaguid,
        credential_id=cred_id.hex(),
        registry_id=record.id,
        metadata_no=metadata_no,
        reasons=reasons,
        metadata_override=bool(fresh and fresh.override_used),
        key_serial=key_serial,
        flags=flags,
        **base,
    )


def _make_credential(
    session: Any,
    interaction: Any,
    policy: Any,
    user: str,
    display_name: str | None,
    user_handle: bytes,
    challenge: bytes,
    exclude: list[bytes],
    ea_ask: Any = None,
) -> Any:
    """``ea_ask`` (keyadmin.flows.enterprise.EnterpriseAsk): ask for enterprise attestation;
    its ``ep_att`` is set from the key's answer."""
    from fido2.client import ClientError, DefaultClientDataCollector, Fido2Client
    from fido2.ctap import CtapError
    from fido2.webauthn import (
        AttestationConveyancePreference,
        AuthenticatorSelectionCriteria,
        PublicKeyCredentialCreationOptions,
        PublicKeyCredentialDescriptor,
        PublicKeyCredentialParameters,
        PublicKeyCredentialRpEntity,
        PublicKeyCredentialType,
        PublicKeyCredentialUserEntity,
        ResidentKeyRequirement,
        UserVerificationRequirement,
    )

    rp = policy.relying_party
    extensions: dict[str, Any] = {}
    if policy.credential.cred_protect:
        names = {
            1: "userVerificationOptional",
            2: "userVerificationOptionalWithCredentialIDList",
            3: "userVerificationRequired",
        }
        extensions["credentialProtectionPolicy"] = names[policy.credential.cred_protect]
        extensions["enforceCredentialProtectionPolicy"] = True
    algs = [a for a in _REQUESTED_ALGORITHMS if a in policy.credential.algorithms]
    options = PublicKeyCredentialCreationOptions(
        rp=PublicKeyCredentialRpEntity(name=policy.name, id=rp.rp_id),
        user=PublicKeyCredentialUserEntity(
            name=user, id=user_handle, display_name=display_name or user
        ),
        challenge=challenge,
        pub_key_cred_params=[
            PublicKeyCredentialParameters(type=PublicKeyCredentialType.PUBLIC_KEY, alg=a)
            for a in algs
        ],
        timeout=60000,
        exclude_credentials=[
            PublicKeyCredentialDescriptor(type=PublicKeyCredentialType.PUBLIC_KEY, id=c)
            for c in exclude
        ],
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        attestation=(
            AttestationConveyancePreference.ENTERPRISE
            if ea_ask is not None and ea_ask.asked
            else AttestationConveyancePreference.DIRECT
        ),
        extensions=extensions or None,
    )
    client = Fido2Client(
        session.device, DefaultClientDataCollector(rp.origins[0]), user_interaction=interaction
    )
    ep_att = None
    if ea_ask is not None and ea_ask.asked:
        from keyadmin.device.enterprise import request_enterprise

        ep_att = request_enterprise(client, ea_ask.platform_rp_ids)
    try:
        with device_errors():
            made = client.make_credential(options)
        if ep_att is not None:
            ea_ask.ep_att = ep_att()
        return made
    except DeviceError as e:
        cause = e.__cause__
        inner = cause.cause if isinstance(cause, ClientError) else cause
        if isinstance(inner, CtapError) and inner.code == CtapError.ERR.CREDENTIAL_EXCLUDED:
            raise EnrolmentRefused(
                f"this key already holds a credential of {user} in the registry",
                hint="the same key cannot be enrolled twice for one user; use another key",
            ) from None
        if isinstance(inner, CtapError) and inner.code == CtapError.ERR.UNSUPPORTED_ALGORITHM:
            from keyadmin.policy.model import ALGORITHM_NAMES

            wanted = ", ".join(ALGORITHM_NAMES.get(a, str(a)) for a in algs) or "none"
            raise EnrolmentRefused(
                f"the key makes credentials with none of the algorithms requested ({wanted}; "
                "the policy's credential.algorithms that enrolment can request)",
                hint="use a key that supports one of them, or a policy allowing the key's "
                "algorithms (keyadmin device info lists them)",
                rule="algorithm",
            ) from None
        raise


def _known_pin(interaction: Any, rp_id: str) -> str | None:
    """The PIN the operator already gave (never a new prompt during a clean-up)."""
    known = getattr(interaction, "known_pin", None)
    if callable(known):
        pin = known()
        return pin if isinstance(pin, str) and pin else None
    from fido2.ctap2 import ClientPin

    pin = interaction.request_pin(ClientPin.PERMISSION.CREDENTIAL_MGMT, rp_id)
    return pin if isinstance(pin, str) and pin else None


def _remove(session: Any, interaction: Any, credential_id: bytes, rp_id: str) -> bool:
    """Delete a just-made credential from the key. True when it is gone."""
    try:
        pin = _known_pin(interaction, rp_id)
        if not pin:
            return False
        session.delete_credential(pin, credential_id)
        return True
    except BaseException:  # noqa: BLE001 - a failed clean-up is reported, never raised
        return False


def _remove_unknown(
    session: Any, interaction: Any, rp_id: str, user_handle: bytes, known: set[str]
) -> int:
    """Delete the user's credentials for ``rp_id`` that are not in the registry; best effort."""
    try:
        pin = _known_pin(interaction, rp_id)
        if not pin:
            return 0
        stray = [
            c
            for c in session.list_credentials(pin, rp_id)
            if c.user_id == user_handle.hex() and c.credential_id not in known
        ]
        for cred in stray:
            session.delete_credential(pin, bytes.fromhex(cred.credential_id))
        return len(stray)
    except BaseException:  # noqa: BLE001 - a failed clean-up must not hide the first error
        return 0
