"""Step-up for the application server and the CLI: ``begin`` issues a challenge, ``finish``
verifies the key's assertion and commits it with the counter compare-and-set.

The challenge (64 bytes) is ``nonce || binding``: 32 fresh random bytes, then
``SHA-256("keyadmin-stepup-v1" || 0x00 || SHA-256(action) || challenge id)``. The row in
ka_challenge stores the challenge, the action and its hash; ``finish`` must be told the
action again and refuses unless (1) the signed clientData carries exactly the stored
challenge, (2) the stored action hash is the hash of the action it was told, and (3) the
challenge's binding half recomputes from that action and the challenge id. An assertion for
action A therefore never verifies for action B. See docs/stepup.md.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from keyadmin.b64 import encode_url
from keyadmin.errors import KeyadminError, UsageError, failed_summary
from keyadmin.stepup.errors import (
    AssertionReplayed,
    AttemptsExceeded,
    ChallengeRefused,
    CounterRegression,
    StepUpRefused,
    TooManyChallenges,
)
from keyadmin.stepup.receipts import action_hash as hash_action
from keyadmin.stepup.verify import (
    Assertion,
    check_auth_data,
    check_client_data,
    check_signature,
    check_sizes,
    parse_auth_data,
    parse_response,
    trace,
)

if TYPE_CHECKING:
    from keyadmin.mds.model import Entry
    from keyadmin.policy.model import StepUpRules

DOMAIN = b"keyadmin-stepup-v1\x00"

#: Bounds on what callers hand in: the ids ``begin`` issues are 32 characters.
MAX_CHALLENGE_ID_CHARS = 64
MAX_ACTION_CHARS = 1024
#: Expired, unused challenges of the user that ``begin`` deletes per call (at most).
PURGE_BATCH = 100


@dataclass(frozen=True)
class Limits:
    """Step-up limits, read from the policy's ``[step_up]`` (whose loader fills in
    ``keyadmin.policy.model.STEP_UP_DEFAULTS``)."""

    challenge_lifetime_seconds: int
    max_attempts_per_credential: int
    max_attempts_per_user: int
    attempt_window_seconds: int
    counter_jump_threshold: int
    max_live_challenges: int

    @classmethod
    def from_policy(cls, policy: Any) -> Limits:
        """The policy's limits (remembered per policy object: a loaded policy is frozen)."""
        hit = _limits.get(id(policy))
        if hit is not None and hit[0] is policy:
            return hit[1]
        limits = cls._read(policy)
        if len(_limits) >= 64:
            _limits.clear()
        _limits[id(policy)] = (policy, limits)
        return limits

    @classmethod
    def _read(cls, policy: Any) -> Limits:
        su: StepUpRules = policy.step_up
        return cls(
            challenge_lifetime_seconds=su.challenge_lifetime_seconds,
            max_attempts_per_credential=su.max_attempts,
            max_attempts_per_user=su.max_attempts_per_user,
            attempt_window_seconds=su.attempt_window_seconds,
            counter_jump_threshold=su.counter_jump_threshold,
            max_live_challenges=su.max_live_challenges,
        )


_limits: dict[int, tuple[Any, Limits]] = {}


def binding(action_hash_hex: str, challenge_id: str) -> bytes:
    """The second half of a challenge: it commits to the action and the challenge id."""
    return hashlib.sha256(DOMAIN + bytes.fromhex(action_hash_hex) + challenge_id.encode()).digest()


@dataclass(frozen=True)
class StepUpChallenge:
    """What ``begin`` returns: hand ``options`` to ``navigator.credentials.get``."""

    challenge_id: str
    user: str
    action: str
    action_hash: str
    challenge: bytes
    rp_id: str
    origin: str
    expires_at: str
    allow_credentials: tuple[bytes, ...]
    options: dict[str, Any] = field(default_factory=dict)

    def request_options(self) -> Any:
        """The same options as python-fido2's PublicKeyCredentialRequestOptions."""
        from fido2.webauthn import (
            PublicKeyCredentialDescriptor,
            PublicKeyCredentialRequestOptions,
            PublicKeyCredentialType,
            UserVerificationRequirement,
        )

        return PublicKeyCredentialRequestOptions(
            challenge=self.challenge,
            timeout=self.options["timeout"],
            rp_id=self.rp_id,
            allow_credentials=[
                PublicKeyCredentialDescriptor(type=PublicKeyCredentialType.PUBLIC_KEY, id=c)
                for c in self.allow_credentials
            ],
            user_verification=UserVerificationRequirement.REQUIRED,
        )


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


def _now(now: datetime | None) -> datetime:
    at = now or datetime.now(UTC)
    if at.tzinfo is None:
        raise UsageError("step-up needs a timezone-aware time")
    return at.astimezone(UTC)


def _text(**values: object) -> None:
    """Callers may hand in decoded request JSON: what must be text is refused otherwise
    (None is allowed only where the parameter is optional, i.e. origin and actor)."""
    for name, value in values.items():
        if not isinstance(value, str) and not (value is None and name in ("origin", "actor")):
            raise UsageError(f"the {name} must be text, not {type(value).__name__}")


def begin(
    db_url: str,
    policy: Any,
    *,
    user: str,
    action: str,
    origin: str | None = None,
    now: datetime | None = None,
) -> StepUpChallenge:
    """Issue a single-use challenge bound to ``action`` for ``user``'s active credentials.

    Refuses (StepUpRefused) a user without an active credential, (AttemptsExceeded) a user
    or credentials over the policy's failed-attempt limit, and (TooManyChallenges) a user
    with ``step_up.max_live_challenges`` unused, unexpired challenges. Deletes up to
    ``PURGE_BATCH`` of the user's expired, unused challenges first.
    """
    from keyadmin.store import stepup as store
    from keyadmin.store.db import transaction

    _text(user=user, action=action, origin=origin)
    if not action.strip():
        raise UsageError("the action must not be empty", hint='e.g. --action "delete tenant 42"')
    if len(action) > MAX_ACTION_CHARS:
        raise UsageError(
            f"the action is {len(action)} characters; at most {MAX_ACTION_CHARS} are accepted",
            hint='name the operation briefly (e.g. "delete tenant 42")',
        )
    rp = policy.relying_party
    origin = origin or rp.origins[0]
    if origin not in rp.origins:
        raise UsageError(f"origin {origin!r} is not one of the policy's origins")
    at = _now(now)
    limits = Limits.from_policy(policy)
    ah = hash_action(action)
    challenge_id = secrets.token_hex(16)
    challenge = os.urandom(32) + binding(ah, challenge_id)
    expires = at + timedelta(seconds=limits.challenge_lifetime_seconds)
    with transaction(db_url) as s:
        user_id, _handle, creds = store.active_credentials(s, user)
        if not creds:
            raise StepUpRefused(
                f"{user} has no active credential in the registry",
                hint="enrol a key first (keyadmin enrol USER --policy FILE)",
            )
        store.purge_expired_challenges(s, user_id=user_id, now=at, limit=PURGE_BATCH)
        live = store.count_live_challenges(s, user_id=user_id, now=at)
        if live >= limits.max_live_challenges:
            raise TooManyChallenges(
                f"{user} has {live} live step-up challenges (limit "
                f"{limits.max_live_challenges}); finish one or let them expire",
                hint=f"challenges expire {limits.challenge_lifetime_seconds} s after begin; "
                "the limit is step_up.max_live_challenges in the policy",
            )
        since = at - timedelta(seconds=limits.attempt_window_seconds)
        total, per = store.count_failures(s, user_id=user_id, since=since)
        if total >= limits.max_attempts_per_user:
            raise AttemptsExceeded(
                f"{user} has {total} failed step-ups in the last "
                f"{limits.attempt_window_seconds} s (limit {limits.max_attempts_per_user})",
                hint="wait for the window to pass; investigate the failures in keyadmin log",
            )
        usable = [c for c in creds if per.get(c, 0) < limits.max_attempts_per_credential]
        if not usable:
            raise AttemptsExceeded(
                f"every active credential of {user} reached the failed-attempt limit "
                f"({limits.max_attempts_per_credential})",
                hint="wait for the window to pass; investigate the failures in keyadmin log",
            )
        store.insert_challenge(
            s,
            id=challenge_id,
            user_id=user_id,
            rp_id=rp.rp_id,
            origin=origin,
            action=action,
            action_hash=ah,
            challenge=challenge,
            created_at=at,
            expires_at=expires,
        )
    timeout_ms = limits.challenge_lifetime_seconds * 1000
    options = {
        "challenge": encode_url(challenge),
        "rpId": rp.rp_id,
        "timeout": timeout_ms,
        "userVerification": "required",
        "allowCredentials": [{"type": "public-key", "id": encode_url(c)} for c in usable],
    }
    return StepUpChallenge(
        challenge_id=challenge_id,
        user=user,
        action=action,
        action_hash=ah,
        challenge=challenge,
        rp_id=rp.rp_id,
        origin=origin,
        expires_at=expires.isoformat(),
        allow_credentials=tuple(usable),
        options=options,
    )


# ----------------------------------------------------------------------------- policy re-check
class _NoMetadata:
    """An empty metadata source (for policies that do not require metadata)."""

    def snapshot(self) -> None:
        return None

    def by_aaguid(self, aaguid: str) -> None:
        return None

    def by_key_id(self, key_id: str) -> None:
        return None

    def models(self) -> Iterator[Entry]:
        return iter(())


#: How long a ``policy_admits`` answer is reused, in seconds of the step-up's own time
#: (``at``): the only time-dependent rule is metadata freshness, and a new snapshot or a new
#: policy file is a new cache key at once.
ADMIT_CACHE_TTL_SECONDS = 30.0
_ADMIT_CACHE_SIZE = 1024
_Admitted = tuple[bool, tuple[dict[str, str], ...]]
_admitted: OrderedDict[tuple[Any, ...], tuple[float, _Admitted]] = OrderedDict()
_admitted_lock = threading.Lock()


def _admit_key(policy: Any, metadata: Any, aaguid: str) -> tuple[Any, ...] | None:
    # ``aaguid`` here is the model's name: the AAGUID, or "AAGUID/key id" for U2F models
    """What the answer depends on besides the time, or None when that cannot be named.

    The policy: its file's SHA-256 and the SHA-256 of the trust roots it loaded. The
    metadata: none, or the snapshot's number and SHA-256 (a source without a hashed snapshot
    is not cached).
    """
    hit = _policy_keys.get(id(policy))
    if hit is not None and hit[0] is policy:
        pkey = hit[1]
    else:  # a loaded policy is frozen: its file and root hashes are read once
        pkey = (policy.sha256, tuple(r.sha256 for r in getattr(policy, "trust_roots", ())))
        if len(_policy_keys) >= 64:
            _policy_keys.clear()
        _policy_keys[id(policy)] = (policy, pkey)
    if metadata is None:
        return (pkey, None, aaguid)
    snap = metadata.snapshot()
    digest = getattr(snap, "sha256", None) if snap is not None else None
    if not digest:
        return None
    return (pkey, (getattr(snap, "no", None), digest), aaguid)


_policy_keys: dict[int, tuple[Any, tuple[Any, ...]]] = {}


ZERO_AAGUID = "00000000-0000-0000-0000-000000000000"


def _attestation_key_id(leaf_der: bytes | None) -> str | None:
    if not leaf_der:
        return None
    from cryptography import x509

    from keyadmin.policy.evaluate import key_identifier

    return key_identifier(x509.load_der_x509_certificate(leaf_der))


def policy_admits(
    policy: Any, metadata: Any, aaguid: str, at: datetime, key_id: str | None = None
) -> _Admitted:
    """Does the policy still admit this model (allowlist, deny list, metadata status)? The
    answer, and the failing rules as reasons (``{"rule", "outcome": "fail", "detail"}``).

    ``keyadmin.policy.catalog.explain_model``; the answer is kept in an LRU keyed on the
    policy (file and trust-root hashes), the metadata snapshot (number and hash) and the
    AAGUID, and reused for ``ADMIT_CACHE_TTL_SECONDS`` either side of the time it was
    computed for.
    """
    from keyadmin.policy.catalog import explain_model

    key = _admit_key(policy, metadata, f"{aaguid}/{key_id}" if key_id else aaguid)
    when = at.timestamp()
    if key is not None:
        with _admitted_lock:
            hit = _admitted.get(key)
            if hit is not None and abs(when - hit[0]) < ADMIT_CACHE_TTL_SECONDS:
                _admitted.move_to_end(key)
                return hit[1]
    source = metadata if metadata is not None else _NoMetadata()
    decision = explain_model(policy, source, aaguid, at=at, key_id=key_id)
    failed = tuple(
        {"rule": r.rule, "outcome": "fail", "detail": r.detail} for r in decision.failed
    )
    answer = (decision.allowed, failed)
    if key is not None:
        with _admitted_lock:
            _admitted[key] = (when, answer)
            _admitted.move_to_end(key)
            while len(_admitted) > _ADMIT_CACHE_SIZE:
                _admitted.popitem(last=False)
    return answer


# ----------------------------------------------------------------------------- finish
def finish(
    db_url: str,
    policy: Any,
    *,
    challenge_id: str,
    action: str,
    response: Mapping[str, Any] | str | bytes | Assertion,
    metadata: Any = None,
    now: datetime | None = None,
    actor: str | None = None,
) -> StepUpResult:
    """Verify the browser's (or the CLI's) assertion for ``challenge_id`` and ``action``.

    Raises ChallengeRefused (unknown, used, expired; AssertionReplayed for a validly signed
    assertion made for another challenge, which leaves this one usable: exit 6),
    CounterRegression (the credential is quarantined: exit 6), UserVerificationMissing
    (exit 5), AttemptsExceeded or StepUpRefused (exit 3; also for oversized input, see
    ``keyadmin.stepup.verify.MAX_SIZES``). Every refusal past the input bounds is logged.
    """
    from keyadmin.store import stepup as store

    at = _now(now)
    limits = Limits.from_policy(policy)
    _text(action=action, actor=actor)
    if not isinstance(challenge_id, str):
        raise UsageError(f"the challenge id must be text, not {type(challenge_id).__name__}")
    if len(challenge_id) > MAX_CHALLENGE_ID_CHARS:
        raise _refuse_challenge_id(db_url, challenge_id, at, actor)
    if isinstance(response, Assertion):
        check_sizes(response)  # parse_response bounds what it decodes
        assertion = response
    else:
        assertion = parse_response(response)
    # One pooled connection for the reads and the commit; idle (no transaction) in between.
    with store.FinishConnection(db_url) as db:
        result = _finish(
            db,
            db_url,
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
    db_url: str, challenge_id: str, at: datetime, actor: str | None
) -> ChallengeRefused:
    """An id longer than any issued one: refused, and logged as a short trace only."""
    from keyadmin.store import stepup as store

    error = ChallengeRefused(
        f"unknown challenge: the challenge id is {len(challenge_id)} characters, longer than "
        f"any keyadmin issues (at most {MAX_CHALLENGE_ID_CHARS})",
        hint="send the challenge_id that begin() returned",
    )
    refusal = store.record_refusal(
        db_url,
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


def _finish(
    db: Any,
    db_url: str,
    policy: Any,
    limits: Limits,
    *,
    challenge_id: str,
    action: str,
    assertion: Assertion,
    metadata: Any,
    at: datetime,
    actor: str | None,
) -> StepUpResult:
    from keyadmin.store import state
    from keyadmin.store import stepup as store

    ctx = db.load_context(
        challenge_id=challenge_id,
        credential_id=assertion.credential_id,
        failures_since=at - timedelta(seconds=limits.attempt_window_seconds),
    )
    ch, cred = ctx.challenge, ctx.credential
    base: dict[str, Any] = {
        "challenge": challenge_id,
        "credential": assertion.credential_id.hex(),
        "action_hash": ch.action_hash if ch else None,
    }

    def refuse(
        error: KeyadminError,
        *,
        counts: bool,
        counter_violation: int | None = None,
        log_action: str | None = None,
    ) -> KeyadminError:
        db.close()  # the refusal is written through a session of its own: never hold two
        refusal = store.record_refusal(
            db_url,
            user_id=ch.user_id if ch else None,
            user=ch.user if ch else None,
            challenge_id=challenge_id if ch else None,
            credential_id=assertion.credential_id,
            reason=error.message,
            counts_as_attempt=counts,
            counter_violation=counter_violation,
            at=at,
            actor=actor or (ch.user if ch else "keyadmin"),
            details=base,
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

    # -- the challenge: known, unused, unexpired, for this action
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
    # -- attempt limits
    if ctx.failures_user >= limits.max_attempts_per_user:
        raise refuse(AttemptsExceeded(f"{ch.user} reached the failed step-up limit"), counts=False)
    if ctx.failures_credential >= limits.max_attempts_per_credential:
        raise refuse(
            AttemptsExceeded("this credential reached the failed step-up limit"), counts=False
        )
    # -- the credential: the user's, active, still admitted by the policy
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
    key_id = None
    if cred.aaguid == ZERO_AAGUID:  # a U2F model: named by its attestation key identifier
        key_id = _attestation_key_id(store.attestation_leaf(db_url, cred.id))
    admitted, failed = policy_admits(policy, metadata, cred.aaguid, at, key_id)
    if not admitted:
        reasons = [dict(r) for r in failed]  # one failing rule a line (keyadmin.cli.main)
        base["reasons"] = reasons  # and every detail in the log
        raise refuse(
            StepUpRefused(
                f"the policy no longer admits this key's model: {failed_summary(reasons)}",
                reasons=reasons,
            ),
            counts=False,
        )
    # -- the assertion itself. Only an assertion the registered key really signed counts as
    # an attempt (and consumes the challenge): anyone who learns a challenge id could otherwise
    # burn the user's attempts and lock them out without holding the key.
    try:
        check_signature(
            cred.public_key,
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
            registered_backup_eligible=cred.backup_eligible,
            device_bound=bool(policy.credential.device_bound),
        )
    except AssertionReplayed as e:
        raise refuse(e, counts=False, log_action="stepup.replay") from None
    except KeyadminError as e:
        raise refuse(e, counts=True) from None
    # -- the counter rule
    new, stored = auth.counter, cred.sign_count
    flags: list[str] = []
    if stored > 0 and new == 0:
        flags.append("counter-reset-to-zero")
    if new - stored > limits.counter_jump_threshold:
        flags.append("counter-jump")
    device_bound = not cred.backup_eligible
    never_counts = new == 0 and stored == 0
    counter_checked = not (
        never_counts and (policy.credential.counter == "allow-zero" or not device_bound)
    )
    base.update(counter=new, previous_counter=stored, flags=flags)
    seen = state.seen_of(bound)
    if counter_checked and seen < new <= stored:
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
    if counter_checked and new <= stored:
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
    outcome, seq, head_hash = db.commit_success(
        challenge_id=ch.id,
        credential_row_id=cred.id,
        new_count=new,
        counter_checked=counter_checked,
        at=at,
        actor=actor or ch.user,
        subject=ch.user,
        details={
            **base,
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
            counter_violation=new if counter_checked else None,
        )
    assert seq is not None
    return StepUpResult(
        user=ch.user,
        action_hash=ah,
        credential_id=cred.credential_id.hex(),
        registry_id=cred.id,
        counter=new,
        previous_counter=stored,
        challenge_id=ch.id,
        rp_id=ch.rp_id,
        at=at.isoformat(),
        audit_seq=seq,
        flags=tuple(flags),
        audit_hash=head_hash or "",
    )
