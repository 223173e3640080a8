"""Tampering: what a row of an approved credential in the application's table may not say.

The application's database is less trusted than the registry. A row of an active registry
credential is **tampered with** when it holds (docs/sync.md, "Tampering"):

* ``public-key``: another public key than the one keyadmin approved (a substituted key signs
  in as that user);
* ``user``: another user than the registry's (the key signs in as someone else);
* ``counter-jump``: a counter more than the policy's ``step_up.counter_jump_threshold`` above
  the registry's; adopting it would make the owner's next genuine step-up look like a clone;
* ``counter-invalid``: a counter that is not a WebAuthn counter (not a whole number in
  0..2^32-1);
* ``counter-rollback``: a counter below the registry's although an earlier sync wrote the
  registry's value: the application would accept replayed assertions.

Sync and ``audit --target`` both judge rows with :func:`inspect_row`. A tampered counter is
never adopted: the registry's stays, so tampering can never quarantine a credential.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from keyadmin.errors import PolicyRefused

#: Kinds sync repairs by writing the registry's value; the others leave the row's counter
#: (keyadmin never lowers an application counter) and keep the registry's.
REPAIRED = frozenset({"public-key", "user", "counter-rollback"})


class TamperingFound(PolicyRefused):
    """The application's table contradicts the registry on purpose-made points (exit 3)."""


@dataclass(frozen=True)
class Tamper:
    """One tampered row of an approved credential."""

    credential_id: str  # hex
    kind: str  # public-key, user, counter-jump, counter-invalid, counter-rollback
    detail: str
    repaired: bool  # sync wrote the registry's value back


def jump_threshold(policy: Any | None) -> int:
    """The policy's ``step_up.counter_jump_threshold``, the documented default without one."""
    from keyadmin.policy.model import STEP_UP_DEFAULTS

    if policy is None:
        return STEP_UP_DEFAULTS.counter_jump_threshold
    return int(policy.step_up.counter_jump_threshold)


def shown(value: Any, limit: int = 40) -> str:
    """A stored value for people: bytes as hex, text as is, cut to ``limit`` characters."""
    if isinstance(value, (bytes, memoryview)):
        value = bytes(value).hex()
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _digest(value: Any) -> str:
    raw = bytes(value) if isinstance(value, (bytes, memoryview)) else str(value).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def inspect_row(
    store: Any, want: dict[str, Any], rec: Any, row: Any, *, synced: bool, jump: int
) -> list[tuple[str, str]]:
    """(kind, detail) for each way ``row`` contradicts the active registry credential ``rec``.

    ``want`` is ``store.desired(rec)``; ``synced``: an earlier sync wrote the registry's
    current counter (the credential has not changed since the target's watermark)."""
    out: list[tuple[str, str]] = []
    have = row.values
    if "public_key" in want and store.normalise("public_key", want["public_key"]) != have.get(
        "public_key"
    ):
        out.append(
            (
                "public-key",
                f"another public key (SHA-256 {_digest(have.get('public_key'))}…) than the "
                f"one keyadmin approved ({_digest(rec.public_key)}…)",
            )
        )
    if "user_id" in want and store.normalise("user_id", want["user_id"]) != have.get("user_id"):
        out.append(
            (
                "user",
                f"mapped to user {shown(have.get('user_id'))!r}; the registry's is "
                f"{shown(want['user_id'])!r}",
            )
        )
    count = row.sign_count
    if count is None:
        out.append(
            (
                "counter-invalid",
                f"sign_count {shown(have.get('sign_count'))!r} is not a WebAuthn counter "
                f"(0..4294967295); the registry's {rec.sign_count} stays",
            )
        )
    elif count - rec.sign_count > jump:
        out.append(
            (
                "counter-jump",
                f"counter {count} is more than {jump} above the registry's {rec.sign_count}; "
                "not adopted, the registry's counter stays",
            )
        )
    elif count < rec.sign_count and synced:
        out.append(
            (
                "counter-rollback",
                f"counter {count} is below the registry's {rec.sign_count}, which an earlier "
                "sync wrote: the application would accept replayed assertions",
            )
        )
    return out
