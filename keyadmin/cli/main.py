"""The keyadmin command line: one app, one place that maps errors to exit codes.

Exit codes (docs/exit-codes.md):
  0 ok, 1 error, 2 usage, 3 refused by policy, 4 no/ambiguous/unreachable device,
  5 PIN or user-verification problem, 6 counter or replay violation,
  7 metadata missing, stale or untrusted.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

from keyadmin import __version__
from keyadmin.cli import attestation as attestation_cli
from keyadmin.cli import device as device_cli
from keyadmin.cli import doctor as doctor_cli
from keyadmin.cli import mds as mds_cli
from keyadmin.cli import policy as policy_cli
from keyadmin.cli import registry as registry_cli
from keyadmin.cli import sim as sim_cli
from keyadmin.errors import ExitCode, KeyadminError


class KeyadminGroup(TyperGroup):
    """The root command group: every error a command raises is reported here, once."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # typer's own: usage errors (exit 2), explicit exits
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
app.add_typer(device_cli.app, name="device")
app.command("doctor")(doctor_cli.doctor)
app.add_typer(mds_cli.app, name="mds")
app.add_typer(policy_cli.app, name="policy")
app.add_typer(attestation_cli.app, name="attestation")
app.command("enrol")(registry_cli.enrol)
app.add_typer(registry_cli.creds_app, name="creds")
app.add_typer(registry_cli.users_app, name="users")
app.add_typer(registry_cli.log_app, name="log")
app.add_typer(sim_cli.app, name="sim")

_state: dict[str, bool] = {"debug": False}


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"keyadmin {__version__}\n")
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
        sys.stderr.write("interrupted; nothing more was done\n")
        return 130
    if _state["debug"]:
        import traceback

        traceback.print_exception(exc)
    err = exc if isinstance(exc, KeyadminError) else _translate(exc)
    if err is None:
        sys.stderr.write(
            f"error: unexpected {type(exc).__name__}: {exc}\n"
            "hint: rerun with --debug for the traceback\n"
        )
        return int(ExitCode.ERROR)
    sys.stderr.write(f"error: {err.message}\n")
    if err.hint:
        sys.stderr.write(f"hint: {err.hint}\n")
    return int(err.exit_code)


def run(argv: list[str] | None = None) -> Any:
    """Entry point of the ``keyadmin`` console script."""
    app(args=argv, prog_name="keyadmin")
