"""The MDS 3.1 rules: retired models and sunset dates, the FIPS 140 floor, certification profiles.

Each rule reads the model's status reports (``keyadmin.mds.model.Entry.status_reports``) through
``keyadmin.mds.model.lifecycle``, so a snapshot indexed before MDS 3.1 support still yields
its RETIRED and FIPS140 statuses; what only MDS 3.1 fields say (sunsetDate, profiles) is
missing there, and the rules that need it fail closed.

* ``metadata.retired``  a RETIRED model is refused (``retired = "refuse"``, the default), or
  allowed until its sunsetDate (``"until-sunset"``; no sunsetDate: refused); any model whose
  sunsetDate has passed at the decision time is refused.
* ``metadata.fips``     the latest FIPS140_CERTIFIED_Lx report is at least ``fips_level_min``.
* ``metadata.profile``  the latest certification profiles meet ``certification_profiles``.
"""

from __future__ import annotations

from datetime import date, datetime

from keyadmin.mds.model import Entry, Lifecycle, lifecycle
from keyadmin.policy.model import Outcome, Policy

#: How a ``metadata.retired`` pass for a RETIRED model before its sunset date begins (the
#: audit reports such credentials as warnings).
IN_GRACE = "RETIRED since"


def in_grace(rule: str, outcome: str, detail: str) -> bool:
    """Did ``metadata.retired`` pass only because the model's sunset date is still ahead?"""
    return rule == "metadata.retired" and outcome == "pass" and detail.startswith(IN_GRACE)


def facts(entry: Entry) -> Lifecycle:
    """The lifecycle facts of an entry, from its status reports (``keyadmin.mds.model.lifecycle``:
    an entry indexed before MDS 3.1 support has no such members of its own)."""
    return lifecycle(entry.status_reports)


def _passed(sunset: str, at: datetime) -> bool:
    """The model may be used before its sunset date; from that day on (UTC) it may not."""
    return at.date() >= date.fromisoformat(sunset)


def retired_outcome(policy: Policy, entry: Entry | None, at: datetime) -> tuple[Outcome, str]:
    if entry is None:
        return "skip", "no metadata entry"
    f = facts(entry)
    sunset, retired = f.sunset_date, f.retired
    if retired is None:
        if sunset and _passed(sunset, at):
            return "fail", f"the model's sunset date {sunset} has passed"
        return "pass", "not retired" + (f" (sunset date {sunset})" if sunset else "")
    if policy.metadata.retired == "refuse":
        return "fail", f"the model is RETIRED since {retired} (metadata.retired = refuse)"
    if sunset is None:
        return "fail", (
            f"the model is RETIRED since {retired} and its report names no sunsetDate; "
            'metadata.retired = "until-sunset" refuses it'
        )
    if _passed(sunset, at):
        return "fail", f"the model is RETIRED since {retired}; its sunset date {sunset} has passed"
    return "pass", f"{IN_GRACE} {retired}, allowed until its sunset date {sunset} (until-sunset)"


def fips_outcome(policy: Policy, entry: Entry | None) -> tuple[Outcome, str]:
    floor = policy.metadata.fips_level_min
    if floor is None:
        return "skip", "the policy sets no FIPS 140 level"
    if entry is None:
        return "fail", f"no metadata entry shows FIPS 140 level {floor}"
    f = facts(entry)
    level = f.fips_level
    if level is None:
        return "fail", f"no FIPS140_CERTIFIED report; the policy needs FIPS 140 level {floor}"
    rev = f" (FIPS 140-{f.fips_revision})" if f.fips_revision else ""
    phys = f.fips_physical_security_level
    detail = f"FIPS140_CERTIFIED_L{level}{rev}" + (f", physical level {phys}" if phys else "")
    if level >= floor:
        return "pass", f"{detail} (needs L{floor})"
    return "fail", f"{detail} only; the policy needs FIPS 140 level {floor}"


def profile_outcome(policy: Policy, entry: Entry | None) -> tuple[Outcome, str]:
    allowed = policy.metadata.certification_profiles
    if not allowed:
        return "skip", "the policy names no certification profiles"
    if entry is None:
        return (
            "fail",
            f"no metadata entry shows a certification profile ({', '.join(sorted(allowed))})",
        )
    have = facts(entry).certification_profiles
    if not have:
        return "fail", (
            "no certification profile in the metadata; the policy admits "
            + ", ".join(sorted(allowed))
        )
    ok = sorted(set(have) & allowed)
    if ok:
        return "pass", f"certification profile {', '.join(ok)}"
    return "fail", (
        f"certification profile {', '.join(have)} is not one the policy admits "
        f"({', '.join(sorted(allowed))})"
    )
