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

from keyadmin import __version__
from keyadmin.cli import sim as sim_cli
from keyadmin.errors import ExitCode, KeyadminError

app = typer.Typer(
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


def _report(err: KeyadminError) -> None:
    sys.stderr.write(f"error: {err.message}\n")
    if err.hint:
        sys.stderr.write(f"hint: {err.hint}\n")


def run(argv: list[str] | None = None) -> Any:
    """Entry point of the ``keyadmin`` console script.

    typer handles usage errors (exit 2) and ``typer.Exit``; everything a command
    raises lands here and is reported once, without a traceback unless --debug.
    """
    try:
        app(args=argv, prog_name="keyadmin")
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    except KeyadminError as e:
        if _state["debug"]:
            import traceback

            traceback.print_exc()
        _report(e)
        sys.exit(e.exit_code)
    except Exception as e:  # noqa: BLE001 - the one place that catches everything
        if _state["debug"]:
            import traceback

            traceback.print_exc()
        mapped = _translate(e)
        if mapped is not None:
            _report(mapped)
            sys.exit(mapped.exit_code)
        sys.stderr.write(
            f"error: unexpected {type(e).__name__}: {e}\n"
            "hint: rerun with --debug for the traceback\n"
        )
        sys.exit(ExitCode.ERROR)
