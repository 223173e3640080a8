"""A lost key, as one use case: suspend (or revoke) it with a reason, push the change to the
application's databases, and say what the user still holds and what to enrol next.

Nothing here is new authority: the status change is the same ``credential.suspend`` /
``credential.revoke`` as ``keyadmin creds suspend|revoke`` (same statement, same log row),
and each push is an ordinary ``sync`` run with its own authorization, so
``keyadmin operator verify-log`` checks both as before. Out of lab mode the operator needs the
lifecycle role and, when there is something to push to, the sync role: both are checked
before anything changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from keyadmin.errors import KeyadminError

#: authorize(action, args) -> keyadmin.flows.authority.Authority
Authorize = Callable[[str, dict[str, Any]], Any]


@dataclass(frozen=True)
class Push:
    """One application database the change was pushed to (an incremental sync)."""

    target: str
    ok: bool
    url: str = ""  # redacted: no password
    removed: int = 0
    disabled: int = 0
    tampering: int = 0
    error: str | None = None


@dataclass(frozen=True)
class LostKey:
    credential: Any  # keyadmin.store.registry.CredentialRecord, after the change
    reason: str
    pushed: tuple[Push, ...]
    coverage: Any  # keyadmin.store.registry.UserCoverage
    remaining: tuple[Any, ...]  # the user's other active credentials


def coverage(db_url: str, user: str, minimum: int | None) -> tuple[Any, tuple[Any, ...]]:
    """The user's coverage against ``minimum`` and their active credentials."""
    from keyadmin.store import registry
    from keyadmin.store.db import transaction

    with transaction(db_url) as s:
        rows = [r for r in registry.user_coverage(s, minimum) if r.user == user]
        active = registry.list_credentials(s, user=user, status="active")
    if rows:
        return rows[0], tuple(active)
    return registry.UserCoverage(user, 0, 0, 0, 0, minimum, None), tuple(active)


def report_lost(
    db_url: str,
    ref: str,
    *,
    reason: str,
    revoke: bool,
    targets: tuple[Any, ...],
    minimum: int | None,
    authorize: Authorize,
) -> LostKey:
    """Suspend (``revoke``: revoke) the credential ``ref``, then sync each target."""
    from keyadmin.flows.authority import require_role
    from keyadmin.store import registry
    from keyadmin.store.db import transaction

    verb = "revoke" if revoke else "suspend"
    with transaction(db_url) as s:
        c = registry.get_credential(s, ref)
    authority = authorize(f"credential.{verb}", {"credential": c.credential_id, "reason": reason})
    if targets and not authority.lab:  # refuse before anything changes
        require_role(db_url, authority.operator, "sync", "sync")
    with transaction(db_url) as s:
        changed = registry.change_status(
            s, c.id, verb, reason=reason, actor=authority.operator, authority=authority.evidence
        )
    pushed = tuple(_push(db_url, t, authorize) for t in targets)
    cov, active = coverage(db_url, c.user, minimum)
    return LostKey(changed, reason, pushed, cov, active)


def _push(db_url: str, target: Any, authorize: Authorize) -> Push:
    from keyadmin.flows.sync import sync
    from keyadmin.store.appstore import load_mapping, redact

    url = redact(target.url)
    try:
        authority = authorize("sync", {"requested_full": False, "requested_prune": False})
        result = sync(
            registry_url=db_url,
            target_url=target.url,
            mapping=load_mapping(target.mapping),
            actor=authority.operator,
            authority=authority.evidence,
        )
    except KeyadminError as e:
        return Push(target.name, False, url, error=e.message)
    return Push(
        target.name,
        result.tampering_count == 0,
        url,
        removed=result.removed,
        disabled=result.disabled,
        tampering=result.tampering_count,
        error=f"{result.tampering_count} tampering finding(s)" if result.tampering_count else None,
    )
