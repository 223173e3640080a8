"""keyadmin keys: the physical key inventory (import, list, show, lost/return/restock/destroy,
report). docs/inventory.md is the desk workflow."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from keyadmin.cli.authority import authorize_cli
from keyadmin.cli.dryrun import change, credential_change, emit_plan
from keyadmin.cli.options import (
    CoveragePolicyOpt,
    DbOpt,
    DryRunOpt,
    ForceOpt,
    FormatJsonOpt,
    FormatOpt,
    JsonOpt,
    OperatorDeviceOpt,
    OperatorOpt,
    ReasonOpt,
)
from keyadmin.cli.registry import _db
from keyadmin.cli.render import clean, emit_json, emit_kv, out, say

if TYPE_CHECKING:
    from keyadmin.flows.fleet import AdvisoryReport, KeysReport

app = typer.Typer(
    help="The physical key inventory: import a delivery, list, show, lost, return, restock, "
    "destroy, and the reconciliation report.\n\nExample: keyadmin keys import delivery.csv"
)

SerialArg = Annotated[
    str, typer.Argument(help="The key's serial (as printed on it, e.g. 23456789).")
]
SYNC_NOTE = (
    "run keyadmin sync to carry the suspension to the applications (until then they still "
    "accept the credential)"
)


@app.command("import")
def keys_import(
    file: Path = typer.Argument(..., help="CSV: serial, model and/or aaguid, batch, location."),
    operator: OperatorOpt = None,
    operator_device: OperatorDeviceOpt = None,
    db: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Add a delivery of keys to the inventory, in stock (one log row per key). One bad row
    imports nothing and is named by its line. Once an operator is bootstrapped, an operator
    with the lifecycle role authorizes it.

    Example: keyadmin keys import delivery-2026-114.csv --operator olivia
    --operator-device hid:/dev/hidraw4
    """
    import hashlib

    from keyadmin.flows.inventory import parse_delivery, read_delivery_bytes
    from keyadmin.store.db import transaction
    from keyadmin.store.inventory import import_keys

    url = _db(db, create=True)  # a delivery may come before the first enrolment
    raw = read_delivery_bytes(file)  # read once: the digest names exactly what was imported
    keys = parse_delivery(file, raw)
    digest = hashlib.sha256(raw).hexdigest()
    args = {"file_sha256": digest, "keys": len(keys)}
    authority = authorize_cli(url, "key.import", args, operator, operator_device)
    with transaction(url) as s:
        n = import_keys(s, keys, actor=authority.operator, authority=authority.evidence)
    result = {"imported": n, "file": str(file), "file_sha256": digest}
    if json_out:
        emit_json(result)
    else:
        emit_kv(f"Imported {n} key(s) in stock", list(result.items()))


@app.command("list")
def keys_list(
    state: str = typer.Option(
        None, "--state", help="in-stock, issued, lost, returned or destroyed."
    ),
    user: str = typer.Option(None, "--user", help="Only keys issued to this user."),
    db: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List the keys in the inventory.

    Example: keyadmin keys list --state issued --json
    """
    from keyadmin.store.db import transaction
    from keyadmin.store.inventory import list_keys

    with transaction(_db(db)) as s:
        keys = list_keys(s, state=state, user=user)
    if json_out:
        emit_json(keys)
        return
    if not keys:
        say("no keys match")
        return
    out(f"{'serial':<14} {'state':<10} {'user':<16} {'model':<22} {'firmware':<9} batch\n")
    for k in keys:
        out(
            f"{clean(k.serial):<14} {k.state:<10} {clean(k.user or '-'):<16} "
            f"{clean(k.model or k.aaguid or '-'):<22} {clean(k.firmware or '-'):<9} "
            f"{clean(k.batch or '-')}\n"
        )


@app.command("show")
def keys_show(serial: SerialArg, db: DbOpt = None, json_out: JsonOpt = False) -> None:
    """Show one key: its state, who holds it, and the credentials enrolled on it.

    Example: keyadmin keys show 23456789 --json
    """
    from keyadmin.store.db import transaction
    from keyadmin.store.inventory import credentials_on, get_key

    with transaction(_db(db)) as s:
        key = get_key(s, serial)
        creds = credentials_on(s, key.serial)
    shown: dict[str, object] = {
        **vars(key),
        "credentials": [
            {"id": c.id, "credential_id": c.credential_id, "user": c.user, "status": c.status}
            for c in creds
        ],
    }
    if json_out:
        emit_json(shown)
        return
    rows = [(k, v) for k, v in shown.items() if k != "credentials"]
    rows.append(
        ("credentials", [f"#{c.id} {c.user} {c.status} {c.credential_id[:16]}…" for c in creds])
    )
    emit_kv(f"Key {key.serial}", rows)


def _state_command(verb: str, command_name: str) -> None:
    """Register ``keyadmin keys COMMAND_NAME`` (the state change ``verb``)."""

    def command(
        serial: SerialArg,
        reason: ReasonOpt,
        force: ForceOpt = False,
        dry_run: DryRunOpt = False,
        operator: OperatorOpt = None,
        operator_device: OperatorDeviceOpt = None,
        db: DbOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        from keyadmin.cli.interact import confirm
        from keyadmin.store.db import transaction
        from keyadmin.store.inventory import change_state, get_key, plan_state_change

        url = _db(db)
        with transaction(url) as s:
            key = get_key(s, serial)
            if dry_run:
                key, after, creds = plan_state_change(s, key.serial, verb, reason)
        if dry_run:
            planned = [change(f"key.{verb}", f"Key {key.serial}", key.state, after)]
            emit_plan(planned + [credential_change(c, "suspend", "suspended") for c in creds],
                      json_out)  # fmt: skip
            return
        if not force:
            confirm(f"Mark key {key.serial} ({key.state}) {verb}?")
        args = {"serial": key.serial, "reason": reason}
        authority = authorize_cli(url, f"key.{verb}", args, operator, operator_device)
        with transaction(url) as s:
            changed, suspended = change_state(
                s, key.serial, verb, reason=reason, actor=authority.operator,
                authority=authority.evidence,
            )  # fmt: skip
        if suspended:
            say(f"suspended {len(suspended)} credential(s) on this key; {SYNC_NOTE}")
        result = {**vars(changed), "suspended": [c.credential_id for c in suspended]}
        if json_out:
            emit_json(result)
        else:
            emit_kv(f"Key {changed.serial} is now {changed.state}", list(result.items()))

    command.__doc__ = (
        f"Mark a key {verb} (asks first unless --force; logged). "
        + (
            "Its active credentials are suspended in the same transaction; keyadmin sync then "
            "carries that to the applications. "
            if verb in ("lost", "destroyed")
            else ""
        )
        + "Once an operator is bootstrapped, an operator with the lifecycle role authorizes it. "
        "--dry-run prints what would change (with the credentials it would suspend) and "
        "changes nothing."
        f"\n\nExamples: keyadmin keys {command_name} 23456789 --reason 'reported by the user'"
        f"\nkeyadmin keys {command_name} 23456789 --reason 'reported by the user' --dry-run"
    )
    app.command(command_name)(command)


for _verb, _name in (
    ("lost", "lost"),
    ("returned", "return"),
    ("restocked", "restock"),
    ("destroyed", "destroy"),
):
    _state_command(_verb, _name)


REPORT_COLUMNS = ["category", "serial", "user", "registry_id", "credential_id", "detail", "action"]


def output_format(output: str, json_out: bool) -> str:
    from keyadmin.errors import UsageError

    fmt = "json" if json_out else output
    if fmt not in ("table", "json", "csv"):
        raise UsageError(f"unknown --format {output!r}", hint="one of table, json, csv")
    return fmt


def emit_findings(
    fmt: str,
    result: KeysReport | AdvisoryReport,
    title: str,
    columns: list[str],
    label: str = "category",
) -> None:
    """Render a report whose ``findings`` are dataclasses with ``columns``; ``label`` names
    the attribute that heads each finding in the table."""
    from keyadmin.cli.render import emit_csv, to_jsonable

    rows = [[getattr(f, c) if getattr(f, c) is not None else "" for c in columns]
            for f in result.findings]  # fmt: skip
    if fmt == "json":
        emit_json({**to_jsonable(result), "ok": result.ok})
    elif fmt == "csv":
        emit_csv(columns, rows)
    else:
        out(title + "\n")
        if not rows:
            out("nothing needs action\n")
        for f in result.findings:
            who = " ".join(clean(str(v)) for v in (f.serial, f.user) if v)
            head = clean(str(getattr(f, label)))
            out(f"{head:<38} {who}\n    {clean(f.detail)}\n    -> {clean(f.action)}\n")


@app.command("report")
def keys_report(
    policy: CoveragePolicyOpt = None,
    output: FormatOpt = "table",
    json_out: FormatJsonOpt = False,
    db: DbOpt = None,
) -> None:
    """Reconcile the inventory with the registry: issued keys without an active credential,
    credentials on keys not in the inventory, lost or destroyed keys with active credentials,
    users below the policy's minimum of compliant keys. Exit 3 when anything needs action.

    Example: keyadmin keys report --policy policies/fido-certified-hardware.toml --format csv
    """
    from keyadmin.flows.fleet import ActionNeeded
    from keyadmin.flows.fleet import keys_report as run_report
    from keyadmin.policy.loader import load_policy

    fmt = output_format(output, json_out)
    loaded = load_policy(policy) if policy is not None else None
    result = run_report(_db(db), loaded)
    counts = ", ".join(f"{n} {c}" for c, n in result.counts.items() if n)
    emit_findings(
        fmt,
        result,
        f"Keys report: {result.keys} key(s), {result.credentials} credential(s)"
        + (f", minimum {result.minimum} per user ({result.policy})" if loaded else "")
        + f": {len(result.findings)} finding(s)",
        REPORT_COLUMNS,
    )
    if loaded is None:
        say("no --policy: users below the minimum of compliant keys were not checked")
    if not result.ok:
        raise ActionNeeded(f"keys report: {len(result.findings)} finding(s) need action ({counts})")
