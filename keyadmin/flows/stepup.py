"""Step-up at the command line: challenge, the key's UV assertion, verification, receipt.

Order: ``keyadmin.stepup.begin`` (a single-use challenge bound to the action) -> the
getAssertion ceremony on the key with user verification required (the PIN through the
interaction callback) -> ``keyadmin.stepup.finish`` (the same checks and the same counter
compare-and-set as the web API) -> a signed receipt, when a signer is given.

Enrolment's dual control (the witness's assertion) is keyadmin.flows.authority.witness.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from keyadmin.device.errors import NoCredentials
from keyadmin.stepup.api import StepUpChallenge, begin, finish
from keyadmin.stepup.verify import Assertion

if TYPE_CHECKING:
    from keyadmin.device.ceremony import AssertionRequest
    from keyadmin.device.interaction import Interaction
    from keyadmin.device.port import Device
    from keyadmin.policy.metadata import MetadataSource
    from keyadmin.policy.model import Policy
    from keyadmin.stepup.receipts import ReceiptSigner


@dataclass(frozen=True)
class StepUpOutcome:
    """A step-up made at the command line, with its receipt."""

    user: str
    action: str
    action_hash: str
    credential_id: str
    registry_id: int
    counter: int
    previous_counter: int
    challenge_id: str
    device: str
    at: str
    audit_seq: int
    flags: tuple[str, ...]
    receipt: str | None
    receipt_expires_at: str | None


def assertion_request(challenge: StepUpChallenge) -> AssertionRequest:
    """What the key is asked to sign for ``challenge`` (UV required)."""
    from keyadmin.device.ceremony import AssertionRequest

    timeout = challenge.options.get("timeout")
    return AssertionRequest(
        rp_id=challenge.rp_id,
        origin=challenge.origin,
        challenge=challenge.challenge,
        allow_credentials=tuple(challenge.allow_credentials),
        timeout_ms=int(timeout) if timeout else None,
    )


def get_assertion(
    session: Device, interaction: Interaction, challenge: StepUpChallenge
) -> Assertion:
    """Run getAssertion on the key for ``challenge`` (UV required) and decode the response."""
    signed = session.get_assertion(assertion_request(challenge), interaction)
    return Assertion(
        credential_id=signed.credential_id,
        client_data_json=signed.client_data_json,
        authenticator_data=signed.authenticator_data,
        signature=signed.signature,
        user_handle=signed.user_handle,
    )


def wrong_key(db_url: str, user: str, challenge: StepUpChallenge, actor: str) -> Exception:
    """The key holds none of the credentials the challenge asked for: a refusal (exit 3) that
    names the user's active credentials, and those left out for their failed-attempt limit;
    logged as ``stepup.refused`` (not counted as an attempt: no signature was made)."""
    from keyadmin.stepup.errors import StepUpRefused
    from keyadmin.store import registry
    from keyadmin.store import stepup as store
    from keyadmin.store.db import transaction

    with transaction(db_url) as s:
        active = registry.list_credentials(s, user=user, status="active")
        found = registry.find_user(s, user)
    asked = {c.hex() for c in challenge.allow_credentials}
    usable = [c for c in active if c.credential_id in asked]
    limited = [c for c in active if c.credential_id not in asked]
    message = f"this key holds none of {user}'s active credentials"
    if limited:
        message += " that may step up now"
    message += ": " + ("; ".join(c.label() for c in usable) or "none")
    if limited:
        message += "; past the failed-attempt limit, so not asked for: " + "; ".join(
            c.label() for c in limited
        )
    hint = f"use one of {user}'s own keys named above (keyadmin creds list --user {user})"
    if limited:
        hint += "; a credential past the limit is asked for again when the attempt window passes"
    refusal = store.record_refusal(
        db_url,
        user_id=found.id if found else None,
        user=user,
        challenge_id=challenge.challenge_id,
        credential_id=None,
        reason=message,
        counts_as_attempt=False,
        counter_violation=None,
        at=datetime.now(UTC),
        actor=actor,
        details={"challenge": challenge.challenge_id, "wrong_key": True,
                 "asked_for": sorted(asked), "past_attempt_limit": [c.id for c in limited]},
    )  # fmt: skip
    return StepUpRefused(message, hint=hint, audit_seq=refusal.audit_seq)


def step_up(
    *,
    user: str,
    action: str,
    policy: Policy,
    session: Device,
    interaction: Interaction,
    db_url: str,
    metadata: MetadataSource | None = None,
    signer: ReceiptSigner | None = None,
    receipt_lifetime_seconds: int = 300,
    actor: str | None = None,
) -> StepUpOutcome:
    """Prove ``user`` holds an enrolled key and its PIN, for ``action``; return the receipt."""
    challenge = begin(db_url, policy, user=user, action=action)
    try:
        assertion = get_assertion(session, interaction, challenge)
    except NoCredentials:
        raise wrong_key(db_url, user, challenge, actor or user) from None
    result = finish(
        db_url,
        policy,
        challenge_id=challenge.challenge_id,
        action=action,
        response=assertion,
        metadata=metadata,
        actor=actor,
    )
    receipt = expires = None
    if signer is not None:
        at = datetime.fromisoformat(result.at)
        receipt = signer.issue_for(result, lifetime_seconds=receipt_lifetime_seconds)
        expires = (
            datetime.fromtimestamp(int(at.timestamp()), UTC)
            + timedelta(seconds=receipt_lifetime_seconds)
        ).isoformat()
    return StepUpOutcome(
        user=result.user,
        action=action,
        action_hash=result.action_hash,
        credential_id=result.credential_id,
        registry_id=result.registry_id,
        counter=result.counter,
        previous_counter=result.previous_counter,
        challenge_id=result.challenge_id,
        device=session.ref.selector,
        at=result.at,
        audit_seq=result.audit_seq,
        flags=result.flags,
        receipt=receipt,
        receipt_expires_at=expires,
    )
