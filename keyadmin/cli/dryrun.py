"""--dry-run for the lifecycle commands: what would change, and nothing changed.

A command resolves its credential or key through the same store function the real change
starts with (keyadmin.store.registry.plan_status_change / plan_set_counter,
keyadmin.store.inventory.plan_state_change), so a dry run fails exactly where the real one
would; it then hands the planned changes here instead of asking, authorizing and writing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keyadmin.cli.render import emit_json, out, say

if TYPE_CHECKING:
    from keyadmin.settings import Target
    from keyadmin.store.registry import CredentialRecord


def change(
    action: str, name: str, before: object, after: object, **more: object
) -> dict[str, object]:
    """One planned change: the log action it would write, what it names (as the real command
    names it), and the value before and after (a status, a state, a counter)."""
    return {"action": action, "name": name, "from": before, "to": after, **more}


def credential_change(record: CredentialRecord, verb: str, after: str) -> dict[str, object]:
    from keyadmin.cli.naming import describe

    return change(
        f"credential.{verb}",
        describe(record),
        record.status,
        after,
        credential_id=record.credential_id,
    )


def push(target: Target) -> dict[str, object]:
    """A sync target the real command would push to (a --target's name is its URL: both are
    shown without a password)."""
    from keyadmin.store.appstore import redact

    return change("sync", redact(target.name), None, None, target=redact(target.url))


def emit_plan(changes: list[dict[str, object]], json_out: bool) -> None:
    """Print the plan (a list under --json) and say that nothing was changed."""
    if json_out:
        emit_json(changes)
    else:
        out("Dry run: the command would make these changes:\n")
        for c in changes:
            if c["action"] == "sync":
                out(f"  push to {c['name']} ({c['target']})\n")
            else:
                out(f"  {c['action']:<22} {c['name']}: {c['from']} -> {c['to']}\n")
    say("dry run: nothing was changed, nothing was asked")
