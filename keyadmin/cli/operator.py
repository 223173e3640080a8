"""keyadmin operator: bootstrap, roles, sessions, and the offline check of authority evidence."""

from __future__ import annotations

import typer

from keyadmin.cli.authority import authorize_cli
from keyadmin.cli.options import (
    CsvOpt,
    DbOpt,
    JsonOpt,
    OperatorDeviceOpt,
    OperatorOpt,
    operator_name,
)
from keyadmin.cli.registry import _db
from keyadmin.cli.render import emit_json, emit_kv, say
from keyadmin.errors import UsageError

app = typer.Typer(
    help="Operators: bootstrap, roles, sessions; verify the authority evidence in the log.\n\n"
    "Example: keyadmin operator login --operator olivia --operator-device hid:/dev/hidraw4"
)

ROLE_OPT = typer.Option(
    ...,
    "--role",
    help="enrol, lifecycle, device, metadata, sync, audit, operator-admin (repeatable).",
)


def _show(change: object, json_out: bool, title: str) -> None:
    if json_out:
        emit_json(change)
    else:
        emit_kv(title, list(vars(change).items()))


@app.command("bootstrap")
def bootstrap(
    user: str = typer.Argument(..., help="The registry user who becomes the first operator."),
    device: str = typer.Option(
        None, "--device", "-d", envvar="KEYADMIN_DEVICE", help="USER's own enrolled key."
    ),
    db: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Make USER the first operator, with every role (once per registry; logged).

    USER must hold an active enrolled credential and proves it now with a UV assertion on
    their key (PIN). Until then the registry runs in lab mode. Refused (exit 3) once any
    operator exists.
    Example: keyadmin operator bootstrap olivia -d hid:/dev/hidraw4
    """
    from keyadmin.cli.device import _session
    from keyadmin.cli.interact import CliInteraction
    from keyadmin.flows.operators import bootstrap as run

    url = _db(db, create=True)
    with _session(device) as session:
        say(f"Bootstrap: {user}, prove it is you with your own key (your PIN)")
        change = run(url, user, session, CliInteraction())
    _show(change, json_out, f"{user} is the first operator (log row {change.audit_seq})")


def _change(
    user: str,
    roles: list[str],
    add: bool,
    operator: str | None,
    operator_device: str | None,
    db: str | None,
    json_out: bool,
) -> None:
    from keyadmin.flows.operators import change_roles
    from keyadmin.store.operators import check_roles

    url = _db(db)
    wanted = check_roles(roles)
    action = "operator.add" if add else "operator.remove"
    authority = authorize_cli(
        url, action, {"user": user, "roles": wanted}, operator, operator_device
    )
    change = change_roles(url, authority, user, wanted, add=add)
    _show(change, json_out, f"{user}: roles now {', '.join(change.roles) or '(none)'}")


@app.command("add")
def add(
    user: str = typer.Argument(..., help="A registry user with an active enrolled key."),
    role: list[str] = ROLE_OPT,
    operator: OperatorOpt = None,
    operator_device: OperatorDeviceOpt = None,
    db: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Give USER operator roles (needs an operator-admin's authorization; logged).

    Example: keyadmin operator add bob --role enrol --role lifecycle --operator olivia
    --operator-device hid:/dev/hidraw4
    """
    _change(user, role, True, operator, operator_device, db, json_out)


@app.command("remove")
def remove(
    user: str = typer.Argument(..., help="The operator."),
    role: list[str] = ROLE_OPT,
    operator: OperatorOpt = None,
    operator_device: OperatorDeviceOpt = None,
    db: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Take roles from USER (needs operator-admin; the last operator-admin stays; logged).
    An operator left with no role loses their sessions.

    Example: keyadmin operator remove bob --role lifecycle --operator olivia
    """
    _change(user, role, False, operator, operator_device, db, json_out)


@app.command("list")
def list_cmd(
    db: DbOpt = None,
    json_out: JsonOpt = False,
    csv_out: CsvOpt = False,
) -> None:
    """List operators and their roles (none: the registry is in lab mode).

    Example: keyadmin operator list --json
    """
    from keyadmin.cli.render import emit_table, list_format
    from keyadmin.flows.operators import list_operators

    fmt = list_format(json_out, csv_out)
    rows = list_operators(_db(db))
    if fmt == "json":
        emit_json(rows)
        return
    if not rows and fmt == "table":
        say("no operators: the registry runs in lab mode (keyadmin operator bootstrap USER)")
        return
    emit_table(["operator", "roles"], [[r.user, " ".join(r.roles)] for r in rows], fmt=fmt)


@app.command("login")
def login(
    minutes: int = typer.Option(10, "--minutes", help="Session length (1 to 60 minutes)."),
    operator: OperatorOpt = None,
    operator_device: OperatorDeviceOpt = None,
    db: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Start a short operator session with a UV assertion of your key: the commands you run
    until it expires (or you log out) are authorized by it, without your key.

    The secret is kept in a 0600 file in keyadmin's data directory; the registry stores
    only its SHA-256.

    Example: keyadmin operator login --operator olivia
    --operator-device hid:/dev/hidraw4 --minutes 10
    """
    from keyadmin.cli.device import _session
    from keyadmin.cli.interact import CliInteraction
    from keyadmin.flows.operators import login as run

    if not operator_device:
        raise UsageError("login needs your key: --operator-device DEV")
    name = operator_name(operator)
    url = _db(db)
    with _session(operator_device) as session:
        say(f"Operator {name}: log in with your own key (your PIN)")
        info = run(url, name, minutes, session, CliInteraction())
    _show(info, json_out, f"Session for {name} until {info.expires_at}")


@app.command("logout")
def logout(db: DbOpt = None, json_out: JsonOpt = False) -> None:
    """End the operator session for this registry (revoked in the registry, file deleted).

    Example: keyadmin operator logout
    """
    from keyadmin.flows.operators import logout as run

    info = run(_db(db))
    _show(info, json_out, f"Session {info.session} ended")


@app.command("verify-log")
def verify_log(db: DbOpt = None, json_out: JsonOpt = False) -> None:
    """Check every log row's authority evidence offline: assertions verify under the logged
    (registry) public key over SHA-256 of a statement that matches the row; session rows lie
    inside a verified login; no lab-mode row after the bootstrap. Exit 1 on any problem.

    Example: keyadmin operator verify-log --json
    """
    from keyadmin.flows.authority_log import verify_log as run

    report = run(_db(db))
    if json_out:
        emit_json(report)
    elif report.ok:
        emit_kv(
            "The log's authority evidence verifies",
            [
                ("rows with evidence", report.rows_checked),
                ("assertions verified", report.assertions_verified),
                ("session rows", report.session_rows),
                ("lab-mode rows", report.lab_rows),
            ],
        )
    else:
        emit_kv(
            "AUTHORITY EVIDENCE DOES NOT VERIFY",
            [(f"row {p['seq']} {p['action']}", p["problem"]) for p in report.problems],
        )
    if not report.ok:
        raise typer.Exit(1)
