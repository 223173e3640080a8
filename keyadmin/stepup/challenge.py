"""Step-up, first half: ``begin`` issues a single-use challenge bound to the action.

The challenge (64 bytes) is ``nonce || binding``: 32 fresh random bytes, then
``SHA-256("keyadmin-stepup-v1" || 0x00 || SHA-256(action) || challenge id)``. The row in
ka_challenge stores the challenge, the action and its hash; ``finish``
(keyadmin.stepup.completion) recomputes the binding from the action it is told. Before a
challenge is issued ``begin`` purges the user's expired ones and applies the limits
(``Limits``, read from the policy's ``[step_up]``). See docs/stepup.md.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypedDict

from keyadmin.b64 import encode_url
from keyadmin.errors import UsageError
from keyadmin.stepup.errors import AttemptsExceeded, StepUpRefused, TooManyChallenges
from keyadmin.stepup.receipts import action_hash as hash_action
from keyadmin.store.db import Registry

if TYPE_CHECKING:
    from fido2.webauthn import PublicKeyCredentialRequestOptions

    from keyadmin.policy.model import Policy

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
    def from_policy(cls, policy: Policy) -> Limits:
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
    def _read(cls, policy: Policy) -> Limits:
        su = policy.step_up
        return cls(
            challenge_lifetime_seconds=su.challenge_lifetime_seconds,
            max_attempts_per_credential=su.max_attempts,
            max_attempts_per_user=su.max_attempts_per_user,
            attempt_window_seconds=su.attempt_window_seconds,
            counter_jump_threshold=su.counter_jump_threshold,
            max_live_challenges=su.max_live_challenges,
        )


_limits: dict[int, tuple[Policy, Limits]] = {}


def binding(action_hash_hex: str, challenge_id: str) -> bytes:
    """The second half of a challenge: it commits to the action and the challenge id."""
    return hashlib.sha256(DOMAIN + bytes.fromhex(action_hash_hex) + challenge_id.encode()).digest()


class CredentialDescriptorJSON(TypedDict):
    type: str
    id: str  # base64url


class RequestOptionsJSON(TypedDict, total=False):
    """``PublicKeyCredentialRequestOptionsJSON`` as ``begin`` fills it (every key); the CLI's
    own requests (keyadmin.flows.authority) carry only ``timeout``."""

    challenge: str  # base64url
    rpId: str
    timeout: int  # milliseconds
    userVerification: str
    allowCredentials: list[CredentialDescriptorJSON]


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
    options: RequestOptionsJSON = field(default_factory=lambda: RequestOptionsJSON())

    def request_options(self) -> PublicKeyCredentialRequestOptions:
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


def utc_now(now: datetime | None) -> datetime:
    """``now`` (or the current time) in UTC; a naive time is a UsageError."""
    at = now or datetime.now(UTC)
    if at.tzinfo is None:
        raise UsageError("step-up needs a timezone-aware time")
    return at.astimezone(UTC)


def require_text(**values: object) -> None:
    """Callers may hand in decoded request JSON: what must be text is refused otherwise
    (None is allowed only where the parameter is optional, i.e. origin and actor)."""
    for name, value in values.items():
        if not isinstance(value, str) and not (value is None and name in ("origin", "actor")):
            raise UsageError(f"the {name} must be text, not {type(value).__name__}")


def begin(
    db_url: Registry | str,
    policy: Policy,
    *,
    user: str,
    action: str,
    origin: str | None = None,
    now: datetime | None = None,
) -> StepUpChallenge:
    """Issue a single-use challenge bound to ``action`` for ``user``'s active credentials.

    ``db_url``: the registry (a ``keyadmin.store.db.Registry`` or its URL).
    Refuses (StepUpRefused) a user without an active credential, (AttemptsExceeded) a user
    or credentials over the policy's failed-attempt limit, and (TooManyChallenges) a user
    with ``step_up.max_live_challenges`` unused, unexpired challenges. Deletes up to
    ``PURGE_BATCH`` of the user's expired, unused challenges first.
    """
    from keyadmin.store import stepup as store

    registry = Registry.of(db_url)
    require_text(user=user, action=action, origin=origin)
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
    at = utc_now(now)
    limits = Limits.from_policy(policy)
    ah = hash_action(action)
    challenge_id = secrets.token_hex(16)
    challenge = os.urandom(32) + binding(ah, challenge_id)
    expires = at + timedelta(seconds=limits.challenge_lifetime_seconds)
    with registry.transaction() as s:
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
    options: RequestOptionsJSON = {
        "challenge": encode_url(challenge),
        "rpId": rp.rp_id,
        "timeout": limits.challenge_lifetime_seconds * 1000,
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
