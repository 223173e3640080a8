"""How the desk names a key, and the next step after a lifecycle command.

A credential is named by its user, nickname, enrolment date and last use (never by its
registry number alone); the number follows in brackets for exactness. Next steps go to
stderr (``say``), so stdout stays the command's result.
"""

from __future__ import annotations

from typing import Any

from keyadmin.cli.render import say


def day(iso: str | None) -> str:
    return iso[:10] if iso else "never"


def describe(c: Any) -> str:
    """e.g. ``alice's key "primary" (enrolled 2026-12-01, last used never) [id 3]``."""
    return str(c.label())


def ref_of(c: Any) -> str:
    """The shortest reference a command accepts back: USER/NICKNAME, else the id."""
    return f"{c.user}/{c.nickname}" if c.nickname and "/" not in c.user else str(c.id)


def configured_minimum() -> int | None:
    """keys_per_user.minimum of the configured policy (KEYADMIN_POLICY or the file), if any."""
    from keyadmin.settings import value

    path = value("policy")
    if not path:
        return None
    from keyadmin.policy.loader import load_policy

    try:
        return int(load_policy(path).keys_per_user.minimum)
    except Exception:  # noqa: BLE001 - advice only: a broken policy is reported where it is used
        return None


def coverage_steps(db_url: str, user: str, minimum: int | None) -> list[str]:
    """What the user still holds, and what to enrol next."""
    from keyadmin.flows.lost import coverage

    cov, active = coverage(db_url, user, minimum)
    steps = []
    if active:
        held = "; ".join(describe(c) for c in active)
        say(f"{user} still holds {len(active)} active key(s): {held}")
    else:
        say(f"{user} holds NO active key: they cannot sign in with a security key")
    if minimum is not None and cov.active < minimum:
        steps.append(
            f"enrol a replacement ({user} has {cov.active} of the policy's minimum "
            f"{minimum}): keyadmin enrol {user} --nickname NAME"
        )
    elif not active:
        steps.append(f"enrol a replacement: keyadmin enrol {user} --nickname NAME")
    return steps


def sync_step() -> str:
    from keyadmin.settings import load

    if load().targets:
        return "the application sees this only after: keyadmin sync"
    return "the application sees this only after: keyadmin sync --target URL"


def print_next(steps: list[str]) -> None:
    for step in steps:
        say(f"next: {step}")
