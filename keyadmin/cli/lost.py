"""keyadmin creds lost: the lost-key runbook as one command (keyadmin.flows.lost)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from keyadmin.cli.authority import authorize_cli
from keyadmin.cli.dryrun import credential_change, emit_plan, push
from keyadmin.cli.options import (
    CoveragePolicyOpt,
    DbOpt,
    DryRunOpt,
    ForceOpt,
    JsonOpt,
    OperatorDeviceOpt,
    OperatorOpt,
    ReasonOpt,
)
from keyadmin.cli.render import emit_json, emit_kv, say

if TYPE_CHECKING:
    from keyadmin.flows.authority import Authority


def lost(
    ref: Annotated[
        str, typer.Argument(help="The lost key: USER/NICKNAME (alice/primary) or its id.")
    ],
    reason: ReasonOpt,
    revoke: bool = typer.Option(
        False, "--revoke", help="Revoke for good instead of suspending (stolen, destroyed)."
    ),
    push_to: list[str] = typer.Option(
        None,
        "--target",
        help="Push to this application database URL (repeatable); default: "
        "every [[sync.targets]] of the configuration file.",
    ),
    no_push: bool = typer.Option(False, "--no-push", help="Change the registry only."),
    policy: CoveragePolicyOpt = None,
    force: ForceOpt = False,
    dry_run: DryRunOpt = False,
    operator: OperatorOpt = None,
    operator_device: OperatorDeviceOpt = None,
    db: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """A key was reported lost: suspend it (or --revoke), push the change to the application's
    databases at once, and show what the user still holds and what to enrol next.

    The status change and each push are authorized and logged exactly like `creds suspend`
    (or `revoke`) and `sync` (lifecycle and sync roles; the PIN is asked once). Asks first
    unless --force. Exit 1 when a push failed (the registry change stands; the message says
    which application still accepts the key).

    --dry-run prints the status change and the targets it would push to, and changes nothing.

    Examples: keyadmin creds lost alice/primary --reason 'left on a train'
    keyadmin creds lost alice/primary --reason 'left on a train' --dry-run
    """
    from keyadmin.cli.interact import CliInteraction, confirm
    from keyadmin.cli.naming import describe, print_next, ref_of, sync_step
    from keyadmin.cli.registry import _db
    from keyadmin.errors import KeyadminError
    from keyadmin.flows.lost import report_lost
    from keyadmin.settings import Target, load
    from keyadmin.store import registry
    from keyadmin.store.db import transaction

    url = _db(db)
    with transaction(url) as s:
        c = registry.get_credential(s, ref)
    targets: tuple[Target, ...] = ()
    if not no_push:
        from keyadmin.store.appstore import redact

        # a --target is named by its URL without the password (never printed or logged)
        targets = tuple(Target(redact(u), u) for u in push_to) if push_to else load().targets
    verb = "revoke" if revoke else "suspend"
    minimum = _minimum(policy)
    if dry_run:
        with transaction(url) as s:
            c, after = registry.plan_status_change(s, c.id, verb, reason)
        emit_plan([credential_change(c, verb, after)] + [push(t) for t in targets], json_out)
        return
    if not force:
        where = ", ".join(t.name for t in targets) or "no application (none configured)"
        confirm(f"{describe(c)} is lost: {verb} it and push to {where}?")
    interaction = CliInteraction()

    def authorize(action: str, args: dict[str, object]) -> Authority:
        return authorize_cli(url, action, args, operator, operator_device, interaction)

    result = report_lost(
        url, str(c.id), reason=reason, revoke=revoke, targets=targets, minimum=minimum,
        authorize=authorize,
    )  # fmt: skip
    steps: list[str] = []
    failed = [p for p in result.pushed if not p.ok]
    if not targets:
        say("warning: NOT pushed: no sync target is configured; the application still accepts "
            "this key until it is synced")  # fmt: skip
        steps.append(sync_step())
    for p in failed:
        say(f"warning: NOT pushed to {p.target}: {p.error}; it may still accept this key")
        steps.append(f"push again: keyadmin sync --target '{p.url}'")
    if result.credential.status == "suspended":
        steps.append(f"found again: keyadmin creds reinstate {ref_of(c)} --reason found")
        steps.append(f"gone for good: keyadmin creds revoke {ref_of(c)} --reason REASON")
    from keyadmin.cli.naming import coverage_steps

    steps += coverage_steps(url, c.user, minimum)
    if json_out:
        emit_json({"credential": result.credential, "reason": reason, "pushed": result.pushed,
                   "coverage": result.coverage, "remaining": result.remaining,
                   "next": steps})  # fmt: skip
    else:
        cov, pushed = result.coverage, result.pushed
        emit_kv(
            f"Lost: {describe(result.credential)} is now {result.credential.status}",
            [
                ("reason", reason),
                ("pushed to", [f"{p.target} ({'ok' if p.ok else 'FAILED'})" for p in pushed]),
                ("active keys left", f"{cov.active}" + (f" of minimum {cov.minimum}"
                                                        if cov.minimum is not None else "")),
            ],
        )  # fmt: skip
    print_next(steps)
    if failed:
        raise KeyadminError(
            f"the key is {result.credential.status} in the registry but "
            f"{len(failed)} application database(s) were not updated",
            hint="run the 'push again' step above",
        )


def _minimum(policy: Path | None) -> int | None:
    if policy is None:
        from keyadmin.cli.naming import configured_minimum

        return configured_minimum()
    from keyadmin.policy.loader import load_policy

    return int(load_policy(policy).keys_per_user.minimum)
