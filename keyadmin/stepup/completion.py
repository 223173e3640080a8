"""Step-up, second half: ``finish`` verifies the key's assertion and commits it with the
counter compare-and-set.

``finish`` refuses unless (1) the signed clientData carries exactly the stored challenge,
(2) the stored action hash is the hash of the action it was told, and (3) the challenge's
binding half recomputes from that action and the challenge id: an assertion for action A
never verifies for action B. The checks run in a fixed order (``_finish``); every refusal
after the input bounds is recorded (``_Refuse``, through ``keyadmin.store.stepup``). See
docs/stepup.md.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple

from keyadmin.errors import KeyadminError, UsageError, failed_summary
from keyadmin.stepup.admission import ZERO_AAGUID, attestation_key_id, policy_admits
from keyadmin.stepup.challenge import (
    MAX_CHALLENGE_ID_CHARS,
    Limits,
    binding,
    require_text,
    utc_now,
)
from keyadmin.stepup.errors import (
    AssertionReplayed,
    AttemptsExceeded,
    ChallengeRefused,
    CounterRegression,
    StepUpRefused,
)
from keyadmin.stepup.receipts import action_hash as hash_action
from keyadmin.stepup.verify import (
    Assertion,
    AuthData,
    check_auth_data,
    check_client_data,
    check_signature,
    check_sizes,
    parse_auth_data,
    parse_response,
    trace,
)
from keyadmin.store.db import Registry

if TYPE_CHECKING:
    from keyadmin.policy.metadata import MetadataSource
    from keyadmin.policy.model import Policy
    from keyadmin.store.stepup import ChallengeData, FinishConnection


@dataclass(frozen=True)
class StepUpResult:
    """A verified, committed step-up."""

    user: str
    action_hash: str
    credential_id: str  # hex
    registry_id: int
    counter: int
    previous_counter: int
    challenge_id: str
    rp_id: str
    at: str
    audit_seq: int
    flags: tuple[str, ...] = ()
    audit_hash: str = ""  # the log head this step-up made (seq, hash): receipts carry it


def finish(
    db_url: Registry | str,
    policy: Policy,
    *,
    challenge_id: str,
    action: str,
    response: Mapping[str, object] | str | bytes | Assertion,
    metadata: MetadataSource | None = None,
    now: datetime | None = None,
    actor: str | None = None,
) -> StepUpResult:
    """Verify the browser's (or the CLI's) assertion for ``challenge_id`` and ``action``.

    ``db_url``: the registry (a ``keyadmin.store.db.Registry`` or its URL).
    Raises ChallengeRefused (unknown, used, expired; AssertionReplayed for a validly signed
    assertion made for another challenge, which leaves this one usable: exit 6),
    CounterRegression (the credential is quarantined: exit 6), UserVerificationMissing
    (exit 5), AttemptsExceeded or StepUpRefused (exit 3; also for oversized input, see
    ``keyadmin.stepup.verify.MAX_SIZES``). Every refusal past the input bounds is logged.
    """
    from keyadmin.store import stepup as store

    registry = Registry.of(db_url)
    at = utc_now(now)
    limits = Limits.from_policy(policy)
    require_text(action=action, actor=actor)
    if not isinstance(challenge_id, str):
        raise UsageError(f"the challenge id must be text, not {type(challenge_id).__name__}")
    if len(challenge_id) > MAX_CHALLENGE_ID_CHARS:
        raise _refuse_challenge_id(registry, challenge_id, at, actor)
    if isinstance(response, Assertion):
        check_sizes(response)  # parse_response bounds what it decodes
        assertion = response
    else:
        assertion = parse_response(response)
    # One pooled connection for the reads and the commit; idle (no transaction) in between.
    with store.FinishConnection(registry.url) as db:
        result = _finish(
            db,
            registry,
            policy,
            limits,
            challenge_id=challenge_id,
            action=action,
            assertion=assertion,
            metadata=metadata,
            at=at,
            actor=actor,
        )
    anomalies = [f for f in result.flags if f.startswith("counter")]
    if anomalies:  # accepted, and announced after the commit
        from keyadmin.notify import event, send

        send([event("counter-anomaly", f"step-up of {result.user} accepted with "
                    f"{', '.join(anomalies)}", user=result.user, flags=anomalies,
                    credential_id=result.credential_id, log_seq=result.audit_seq)])  # fmt: skip
    return result


def _refuse_challenge_id(
    registry: Registry, challenge_id: str, at: datetime, actor: str | None
) -> ChallengeRefused:
    """An id longer than any issued one: refused, and logged as a short trace only."""
    from keyadmin.store import stepup as store

    error = ChallengeRefused(
        f"unknown challenge: the challenge id is {len(challenge_id)} characters, longer than "
        f"any keyadmin issues (at most {MAX_CHALLENGE_ID_CHARS})",
        hint="send the challenge_id that begin() returned",
    )
    refusal = store.record_refusal(
        registry.url,
        user_id=None,
        user=None,
        challenge_id=None,
        credential_id=None,
        reason=error.message,
        counts_as_attempt=False,
        counter_violation=None,
        at=at,
        actor=actor or "keyadmin",
        details={"challenge": trace(challenge_id)},
    )
    error.data.update(audit_seq=refusal.audit_seq, quarantined=False, challenge_consumed=False)
    return error


class _Refuse:
    """Records a refusal of this ``finish`` (``store.record_refusal``) and returns the error to
    raise. ``details`` is what the log row keeps; the checks add to it as they go."""

    def __init__(
        self,
        db: FinishConnection,
        registry: Registry,
        *,
        challenge_id: str,
        challenge: ChallengeData | None,
        credential_id: bytes,
        at: datetime,
        actor: str | None,
    ) -> None:
        self.db = db
        self.registry = registry
        self.challenge_id = challenge_id
        self.challenge = challenge
        self.credential_id = credential_id
        self.at = at
        self.actor = actor
        self.details: dict[str, object] = {
            "challenge": challenge_id,
            "credential": credential_id.hex(),
            "action_hash": challenge.action_hash if challenge else None,
        }

    def __call__(
        self,
        error: KeyadminError,
        *,
        counts: bool,
        counter_violation: int | None = None,
        log_action: str | None = None,
    ) -> KeyadminError:
        from keyadmin.store import stepup as store

        ch = self.challenge
        self.db.close()  # the refusal is written through a session of its own: never hold two
        refusal = store.record_refusal(
            self.registry.url,
            user_id=ch.user_id if ch else None,
            user=ch.user if ch else None,
            challenge_id=self.challenge_id if ch else None,
            credential_id=self.credential_id,
            reason=error.message,
            counts_as_attempt=counts,
            counter_violation=counter_violation,
            at=self.at,
            actor=self.actor or (ch.user if ch else "keyadmin"),
            details=self.details,
            log_action=log_action,
        )
        error.data.update(
            audit_seq=refusal.audit_seq,
            quarantined=refusal.quarantined,
            challenge_consumed=refusal.consumed,
        )
        if counter_violation is not None and not refusal.consumed:
            return ChallengeRefused(
                "the challenge was used already (a replayed assertion)", **error.data
            )
        if counter_violation is not None and refusal.quarantined:
            return CounterRegression(
                error.message + "; the credential is quarantined",
                hint="revoke or reinstate it after investigation (keyadmin creds …)",
                **error.data,
            )
        return error


def _finish(
    db: FinishConnection,
    registry: Registry,
    policy: Policy,
    limits: Limits,
    *,
    challenge_id: str,
    action: str,
    assertion: Assertion,
    metadata: MetadataSource | None,
    at: datetime,
    actor: str | None,
) -> StepUpResult:
    """The checks, in their fixed order, then the one write transaction."""
    from keyadmin.store import state
    from keyadmin.store import stepup as store

    ctx = db.load_context(
        challenge_id=challenge_id,
        credential_id=assertion.credential_id,
        failures_since=at - timedelta(seconds=limits.attempt_window_seconds),
    )
    refuse = _Refuse(
        db,
        registry,
        challenge_id=challenge_id,
        challenge=ctx.challenge,
        credential_id=assertion.credential_id,
        at=at,
        actor=actor,
    )
    ch, ah = _check_challenge(refuse, ctx.challenge, challenge_id, action, at)
    _check_attempts(refuse, ch, ctx.failures_user, ctx.failures_credential, limits)
    # -- the credential: the user's, bound to its state in the log, active, the user handle
    # the user's (keyadmin.store.stepup.CredentialData: read here, passed on field by field)
    cred = ctx.credential
    if cred is None or cred.user_id != ch.user_id:
        raise refuse(
            StepUpRefused(f"the credential is not a registered credential of {ch.user}"),
            counts=False,
        )
    try:
        bound = state.check_bound(
            credential_id=cred.credential_id, user=ch.user, public_key=cred.public_key,
            aaguid=cred.aaguid, status=cred.status, counter=cred.sign_count,
            change_seq=cred.change_seq, log_row=cred.log_row, next_prev_hash=cred.next_prev_hash,
            head_seq=cred.head_seq,
        )  # fmt: skip
    except state.NotBound as e:
        raise refuse(
            StepUpRefused(
                f"the credential's registry row does not match the log: {e}",
                hint="the registry was edited outside keyadmin; run: keyadmin log verify",
            ),
            counts=False,
        ) from None
    if cred.status != "active":
        raise refuse(StepUpRefused(f"the credential is {cred.status}"), counts=False)
    if assertion.user_handle is not None and not hmac.compare_digest(
        assertion.user_handle, ch.user_handle
    ):
        raise refuse(StepUpRefused("userHandle does not match the user"), counts=False)
    _check_admitted(refuse, registry, policy, metadata, cred.id, cred.aaguid, at)
    auth = _check_assertion(refuse, policy, ch, cred.public_key, cred.backup_eligible, assertion)
    counter = _check_counter(
        refuse,
        policy,
        limits,
        stored=cred.sign_count,
        seen=state.seen_of(bound),
        backup_eligible=cred.backup_eligible,
        new=auth.counter,
    )
    new, flags = counter.new, counter.flags
    outcome, seq, head_hash = db.commit_success(
        challenge_id=ch.id,
        credential_row_id=cred.id,
        new_count=new,
        counter_checked=counter.checked,
        at=at,
        actor=actor or ch.user,
        subject=ch.user,
        details={
            **refuse.details,
            "user": ch.user,
            "rp_id": ch.rp_id,
            "state": state.credential_state(
                credential_id=cred.credential_id,
                user=ch.user,
                public_key=cred.public_key,
                aaguid=cred.aaguid,
                status="active",
                counter=new,
                seen=new,
            ),  # fmt: skip
        },
    )
    if outcome is store.CommitOutcome.CHALLENGE_GONE:
        raise refuse(
            ChallengeRefused("the challenge was used already (a concurrent replay lost)"),
            counts=False,
        )
    if outcome is store.CommitOutcome.COUNTER_REFUSED:
        raise refuse(
            CounterRegression(
                f"signature counter did not advance past the stored value ({new}): a cloned "
                "key or a replayed assertion, or the credential was just suspended",
                counter=new,
                flags=flags,
            ),
            counts=True,
            counter_violation=new if counter.checked else None,
        )
    assert seq is not None
    return StepUpResult(
        user=ch.user,
        action_hash=ah,
        credential_id=cred.credential_id.hex(),
        registry_id=cred.id,
        counter=new,
        previous_counter=cred.sign_count,
        challenge_id=ch.id,
        rp_id=ch.rp_id,
        at=at.isoformat(),
        audit_seq=seq,
        flags=tuple(flags),
        audit_hash=head_hash or "",
    )


def _check_challenge(
    refuse: _Refuse, ch: ChallengeData | None, challenge_id: str, action: str, at: datetime
) -> tuple[ChallengeData, str]:
    """The challenge: known, unused, unexpired, for this action. Returns it and the action's
    hash."""
    if ch is None:
        raise refuse(ChallengeRefused(f"unknown challenge {challenge_id!r}"), counts=False)
    if ch.used_at is not None:
        raise refuse(
            ChallengeRefused("the challenge was used already (a replayed assertion)"),
            counts=False,
        )
    if at >= ch.expires_at:
        raise refuse(
            ChallengeRefused(f"the challenge expired at {ch.expires_at.isoformat()}"),
            counts=False,
        )
    ah = hash_action(action)
    if not hmac.compare_digest(ah, ch.action_hash) or not hmac.compare_digest(
        ch.challenge[32:], binding(ah, ch.id)
    ):
        raise refuse(
            StepUpRefused("the assertion was made for another action than this one"), counts=False
        )
    return ch, ah


def _check_attempts(
    refuse: _Refuse, ch: ChallengeData, failures_user: int, failures_credential: int, limits: Limits
) -> None:
    """The failed-attempt limits, per user and per credential."""
    if failures_user >= limits.max_attempts_per_user:
        raise refuse(AttemptsExceeded(f"{ch.user} reached the failed step-up limit"), counts=False)
    if failures_credential >= limits.max_attempts_per_credential:
        raise refuse(
            AttemptsExceeded("this credential reached the failed step-up limit"), counts=False
        )


def _check_admitted(
    refuse: _Refuse,
    registry: Registry,
    policy: Policy,
    metadata: MetadataSource | None,
    credential_row_id: int,
    aaguid: str,
    at: datetime,
) -> None:
    """The policy still admits the key's model (keyadmin.stepup.admission)."""
    from keyadmin.store import stepup as store

    key_id = None
    if aaguid == ZERO_AAGUID:  # a U2F model: named by its attestation key identifier
        key_id = attestation_key_id(store.attestation_leaf(registry.url, credential_row_id))
    admitted, failed = policy_admits(policy, metadata, aaguid, at, key_id)
    if not admitted:
        reasons = [dict(r) for r in failed]  # one failing rule a line (keyadmin.cli.main)
        refuse.details["reasons"] = reasons  # and every detail in the log
        raise refuse(
            StepUpRefused(
                f"the policy no longer admits this key's model: {failed_summary(reasons)}",
                reasons=reasons,
            ),
            counts=False,
        )


def _check_assertion(
    refuse: _Refuse,
    policy: Policy,
    ch: ChallengeData,
    public_key: bytes,
    backup_eligible: bool,
    assertion: Assertion,
) -> AuthData:
    """The assertion itself: the signature, then the client data and the authenticator data.

    Only an assertion the registered key really signed counts as an attempt (and consumes
    the challenge): anyone who learns a challenge id could otherwise burn the user's attempts
    and lock them out without holding the key."""
    try:
        check_signature(
            public_key,
            assertion.authenticator_data,
            assertion.client_data_json,
            assertion.signature,
        )
    except KeyadminError as e:
        raise refuse(e, counts=False) from None
    # A valid signature over client data naming another challenge: a captured assertion
    # replayed (check_client_data checks the challenge first). It neither counts nor
    # consumes the challenge, or an old assertion would lock the admin out.
    try:
        check_client_data(
            assertion.client_data_json, challenge=ch.challenge, origins=policy.relying_party.origins
        )
        auth = parse_auth_data(assertion.authenticator_data)
        check_auth_data(
            auth,
            rp_id=ch.rp_id,
            registered_backup_eligible=backup_eligible,
            device_bound=bool(policy.credential.device_bound),
        )
    except AssertionReplayed as e:
        raise refuse(e, counts=False, log_action="stepup.replay") from None
    except KeyadminError as e:
        raise refuse(e, counts=True) from None
    return auth


class _Counter(NamedTuple):
    new: int
    flags: list[str]  # counter anomalies accepted (a reset to zero, a large jump)
    checked: bool  # False: a credential that never counts, where the policy allows it


def _check_counter(
    refuse: _Refuse,
    policy: Policy,
    limits: Limits,
    *,
    stored: int,
    seen: int,
    backup_eligible: bool,
    new: int,
) -> _Counter:
    """The counter rule: a device-bound credential that counts must count strictly upward.
    ``stored`` is the registry's counter, ``seen`` the last one keyadmin verified itself."""
    flags: list[str] = []
    if stored > 0 and new == 0:
        flags.append("counter-reset-to-zero")
    if new - stored > limits.counter_jump_threshold:
        flags.append("counter-jump")
    device_bound = not backup_eligible
    never_counts = new == 0 and stored == 0
    checked = not (
        never_counts and (policy.credential.counter == "allow-zero" or not device_bound)
    )
    refuse.details.update(counter=new, previous_counter=stored, flags=flags)
    if checked and seen < new <= stored:
        # The stored value was adopted from the application's table (sync), not verified by
        # keyadmin: the key counted past everything keyadmin saw it sign. Not evidence of a
        # clone, and the application's database must never quarantine anyone by itself.
        raise refuse(
            CounterRegression(
                f"signature counter {new} is below {stored}, a value adopted from the "
                f"application's table, but above {seen}, the last counter keyadmin verified: "
                "refused, not quarantined",
                hint="check the application's table (keyadmin audit --target), then repair: "
                "keyadmin creds set-counter",
                counter=new,
                stored=stored,
                seen=seen,
                flags=[*flags, "counter-below-adopted-value"],
            ),
            counts=False,
        )
    if checked and new <= stored:
        raise refuse(
            CounterRegression(
                f"signature counter did not advance ({new} after {stored}): a cloned key "
                "or a replayed assertion",
                counter=new,
                stored=stored,
                flags=flags,
            ),
            counts=True,
            counter_violation=new,
        )
    return _Counter(new, flags, checked)
