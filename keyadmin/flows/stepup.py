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
from typing import Any

from keyadmin.device.errors import device_errors
from keyadmin.stepup.api import StepUpChallenge, begin, finish
from keyadmin.stepup.verify import Assertion


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


def get_assertion(session: Any, interaction: Any, challenge: StepUpChallenge) -> Assertion:
    """Run getAssertion on the key for ``challenge`` (UV required) and decode the response."""
    from fido2.client import DefaultClientDataCollector, Fido2Client

    client = Fido2Client(
        session.device,
        DefaultClientDataCollector(challenge.origin),
        user_interaction=interaction,
    )
    with device_errors():
        selection = client.get_assertion(challenge.request_options())
        response = selection.get_response(0)
    inner = response.response
    return Assertion(
        credential_id=bytes(response.raw_id),
        client_data_json=bytes(inner.client_data),
        authenticator_data=bytes(inner.authenticator_data),
        signature=bytes(inner.signature),
        user_handle=bytes(inner.user_handle) if inner.user_handle else None,
    )


def step_up(
    *,
    user: str,
    action: str,
    policy: Any,
    session: Any,
    interaction: Any,
    db_url: str,
    metadata: Any = None,
    signer: Any = None,
    receipt_lifetime_seconds: int = 300,
    actor: str | None = None,
) -> StepUpOutcome:
    """Prove ``user`` holds an enrolled key and its PIN, for ``action``; return the receipt."""
    challenge = begin(db_url, policy, user=user, action=action)
    assertion = get_assertion(session, interaction, challenge)
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
