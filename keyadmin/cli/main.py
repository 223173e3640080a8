"""The keyadmin command line: one app, one place that maps errors to exit codes.

Exit codes (docs/exit-codes.md):
  0 ok, 1 error, 2 usage, 3 refused by policy, 4 no/ambiguous/unreachable device,
  5 PIN or user-verification problem, 6 counter or replay violation,
  7 metadata missing, stale or untrusted.
"""

from __future__ import annotations

from typing import Any

import click
import typer
from click.exceptions import ClickException
from typer.core import TyperGroup

from keyadmin import __version__
from keyadmin.cli.render import clean, err, out, say
from keyadmin.errors import ExitCode, KeyadminError

# The command groups, loaded only when invoked: name -> (module, attribute, one-line help).
# Building every group's click commands costs ~100 ms a start; a command pays for its own.
LAZY: dict[str, tuple[str, str, str]] = {
    "doctor": (
        "keyadmin.cli.doctor",
        "doctor",
        "Check USB access (udev), pcscd, database, metadata.",
    ),
    "device": ("keyadmin.cli.device", "app", "See a FIDO2 key and bring it to a known state."),
    "enrol": (
        "keyadmin.cli.registry",
        "enrol",
        "Enrol a key for a user, kept only if the policy approves.",
    ),
    "step-up": (
        "keyadmin.cli.stepup",
        "step_up",
        "Step-up for a privileged action: a fresh UV assertion, strict counter, a receipt.",
    ),
    "receipt": ("keyadmin.cli.stepup", "receipt_app", "Step-up receipts: make the key, verify."),
    "creds": (
        "keyadmin.cli.registry",
        "creds_app",
        "Registry credentials: list, show, revoke, suspend.",
    ),
    "users": (
        "keyadmin.cli.registry",
        "users_app",
        "Users in the registry and their key coverage.",
    ),
    "log": ("keyadmin.cli.registry", "log_app", "The tamper-evident log: show, verify."),
    "operator": (
        "keyadmin.cli.operator",
        "app",
        "Operators: bootstrap, roles, sessions, verify the log's authority evidence.",
    ),
    "sync": (
        "keyadmin.cli.sync",
        "sync",
        "Write approved credentials into the application's credential table.",
    ),
    "audit": (
        "keyadmin.cli.sync",
        "audit",
        "Re-check every credential against today's policy and metadata.",
    ),
    "mds": (
        "keyadmin.cli.mds",
        "app",
        "FIDO metadata (MDS3): update, import, status, show, search, diff.",
    ),
    "policy": (
        "keyadmin.cli.policy",
        "app",
        "Policy files: check, explain, the models they admit.",
    ),
    "attestation": (
        "keyadmin.cli.attestation",
        "app",
        "Verify a recorded registration against a policy.",
    ),
    "sim": (
        "keyadmin.cli.sim",
        "app",
        "The SOFTWARE security key (not hardware) for tests and demos.",
    ),
}


def _load(name: str) -> Any:
    import importlib

    module, attr, _ = LAZY[name]
    obj = getattr(importlib.import_module(module), attr)
    if not isinstance(obj, typer.Typer):  # a plain command function
        single = typer.Typer(add_completion=False, rich_markup_mode=None)
        single.command(name)(obj)
        cmd = typer.main.get_command(single)
    else:  # a command group, even when it has a single command
        obj.rich_markup_mode = None
        obj._add_completion = False  # completion is not offered per group
        cmd = typer.main.get_group(obj)
    cmd.name = name
    return cmd


class KeyadminGroup(TyperGroup):
    """The root command group: loads subcommands lazily and reports every error, once."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *LAZY]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in LAZY:
            return _load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = [(name, short) for name, (_, _, short) in LAZY.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        for arg in args:  # a NUL or undecodable bytes would fail deep inside, or be stored
            if "\x00" in arg or any("\ud800" <= ch <= "\udfff" for ch in arg):
                raise click.UsageError(
                    f"the argument {clean(arg[:80])!r} is not text: it holds a NUL byte or bytes "
                    "that are not UTF-8",
                    ctx,
                )
        return list(super().parse_args(ctx, args))

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, ClickException):
            raise  # click's own: usage errors (exit 2), explicit exits
        except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - the one place for all
            raise typer.Exit(exit_code_for(e)) from None


app = typer.Typer(
    cls=KeyadminGroup,
    name="keyadmin",
    help=(
        "Enrol, verify and audit FIDO2 hardware security keys.\n\n"
        "Examples:\n\n"
        "  keyadmin sim init --state lab.key      # create a software key for tests\n\n"
        "  keyadmin sim selftest --state lab.key  # register + authenticate with it\n\n"
        "Exit codes: 0 ok, 1 error, 2 usage, 3 refused by policy, 4 device, 5 PIN/UV,\n"
        "6 counter/replay, 7 metadata."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)
_state: dict[str, bool] = {"debug": False}


def _version(value: bool) -> None:
    if value:
        out(f"keyadmin {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def main(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    _state["debug"] = debug


def _translate(exc: BaseException) -> KeyadminError | None:
    """Map exceptions from the libraries below us to keyadmin errors."""
    mod = type(exc).__module__ or ""
    if mod.startswith("fido2"):
        from keyadmin.device.errors import from_fido2

        return from_fido2(exc)
    if mod.startswith(("sqlalchemy", "sqlite3", "psycopg")):
        from keyadmin.store.db import database_failure

        return database_failure(exc)
    if mod.startswith("smartcard"):
        from keyadmin.errors import DeviceError

        return DeviceError(
            f"the card or reader stopped answering ({type(exc).__name__}: {exc})",
            hint="keep the key on the reader until the command finishes, then run it again",
        )
    return None


def exit_code_for(exc: BaseException) -> int:
    """Report an exception on stderr, once, and return its exit code (the published table)."""
    if isinstance(exc, KeyboardInterrupt):
        say("interrupted; nothing more was done")
        return 130
    if _state["debug"]:
        import traceback

        err("".join(traceback.format_exception(exc)))
    error = exc if isinstance(exc, KeyadminError) else _translate(exc)
    if error is None:
        say(
            f"error: unexpected {type(exc).__name__}: {exc}\n"
            "hint: rerun with --debug for the traceback"
        )
        return int(ExitCode.ERROR)
    say(f"error: {error.message}")
    if error.hint:
        say(f"hint: {error.hint}")
    return int(error.exit_code)


def run(argv: list[str] | None = None) -> Any:
    """Entry point of the ``keyadmin`` console script."""
    app(args=argv, prog_name="keyadmin")
