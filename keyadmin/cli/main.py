"""The keyadmin command line: one app, one place that maps errors to exit codes.

Exit codes (docs/exit-codes.md):
  0 ok, 1 error, 2 usage, 3 refused by policy, 4 no/ambiguous/unreachable device,
  5 PIN or user-verification problem, 6 counter or replay violation,
  7 metadata missing, stale or untrusted.
"""

from __future__ import annotations

from typing import Any, NoReturn

import click
import typer
from click.exceptions import ClickException
from typer.core import TyperGroup

from keyadmin import __version__
from keyadmin.cli.helpfmt import Context as HelpContext
from keyadmin.cli.render import clean, err, json_written, out, say
from keyadmin.errors import ExitCode, KeyadminError, UsageError

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
    "keys": (
        "keyadmin.cli.keys",
        "app",
        "The physical key inventory: import, list, show, lost, report.",
    ),
    "advisories": (
        "keyadmin.cli.advisories",
        "advisories",
        "Keys a vendor advisory affects (firmware), per user; metadata status changes.",
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
    "config": (
        "keyadmin.cli.config",
        "app",
        "The configuration file: each setting and where it came from.",
    ),
    "sim": (
        "keyadmin.cli.sim",
        "app",
        "The SOFTWARE security key (not hardware) for tests and demos.",
    ),
}


# Other spellings people type for a command (not listed; `keyadmin enroll` runs `enrol`).
ALIASES = {"enroll": "enrol"}


def _finish(cmd: Any) -> Any:
    """Every command: keyadmin's help formatter; groups suggest a typo's fix once (click's)."""
    cmd.context_class = SettingsContext
    if isinstance(cmd, TyperGroup):
        cmd.suggest_commands = False
    for sub in getattr(cmd, "commands", {}).values():
        if not sub.short_help and sub.help:  # its first sentence, wrapped, never cut with "..."
            from keyadmin.cli.helpfmt import first_sentence

            sub.short_help = first_sentence(sub.help)
        _finish(sub)
    return cmd


def _load(name: str) -> Any:
    import importlib

    if name == "completion":
        return _finish(_completion_command())
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
    return _finish(cmd)


def _completion_command() -> Any:
    import click

    @click.command(
        "completion",
        help=(
            "Print the shell completion script for bash, zsh or fish.\n\n"
            "Load it in the current shell, or save it where your shell reads completions.\n\n"
            "Examples:\n\n"
            "  keyadmin completion bash > ~/.local/share/bash-completion/completions/keyadmin\n\n"
            '  eval "$(keyadmin completion zsh)"\n\n'
            "  keyadmin completion fish > ~/.config/fish/completions/keyadmin.fish"
        ),
    )
    @click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
    def completion(shell: str) -> None:
        from click.shell_completion import get_completion_class

        cls = get_completion_class(shell)
        if cls is None:  # pragma: no cover - click ships all three
            raise UsageError(f"no completion for {shell}")
        root = typer.main.get_command(app)
        out(cls(root, {}, "keyadmin", COMPLETE_VAR).source() + "\n")

    return completion


COMPLETE_VAR = "_KEYADMIN_COMPLETE"


class SettingsContext(HelpContext):
    """keyadmin's help formatter, and defaults from the configuration file
    (keyadmin.settings) under the command line and each option's environment variable
    (click's order)."""

    def lookup_default(self, name: str, call: bool = True) -> Any:
        found = super().lookup_default(name, call=call)  # type: ignore[call-overload]
        if found is not None:
            return found
        from keyadmin.settings import default_for

        return default_for(name, self.command_path, self.params)


class KeyadminGroup(TyperGroup):
    """The root command group: loads subcommands lazily and reports every error, once."""

    context_class = HelpContext

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *LAZY, "completion"]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        cmd_name = ALIASES.get(cmd_name, cmd_name)
        if cmd_name in LAZY or cmd_name == "completion":
            # click asks twice per invocation (resolve_command below, then its own): build once
            loaded = ctx.meta.setdefault("keyadmin.loaded", {})
            if cmd_name not in loaded:
                loaded[cmd_name] = _load(cmd_name)
            return loaded[cmd_name]
        return super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        from click.exceptions import NoSuchCommand

        cmd = self.get_command(ctx, args[0])
        if cmd is None and not ctx.resilient_parsing and not args[0].startswith("-"):
            raise NoSuchCommand(args[0], possibilities=self.list_commands(ctx), ctx=ctx)
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = [(name, short) for name, (_, _, short) in LAZY.items()]
        rows.append(("completion", "Print the shell completion script (bash, zsh, fish)."))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def _main_shell_completion(
        self, ctx_args: Any, prog_name: str, complete_var: Any = None
    ) -> None:
        """click's own completion (bash, zsh, fish); the script comes from `keyadmin completion`."""
        import os
        import sys

        from click.shell_completion import shell_complete

        instruction = os.environ.get(COMPLETE_VAR)
        if instruction:
            sys.exit(shell_complete(self, ctx_args, prog_name, COMPLETE_VAR, instruction))

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        for arg in args:  # a NUL or undecodable bytes would fail deep inside, or be stored
            if "\x00" in arg or any("\ud800" <= ch <= "\udfff" for ch in arg):
                raise click.UsageError(
                    f"the argument {clean(arg[:80])!r} is not text: it holds a NUL byte or bytes "
                    "that are not UTF-8",
                    ctx,
                )
        try:
            return list(super().parse_args(ctx, args))
        except ClickException as e:  # `keyadmin --bogus --json`: the top level's own usage
            _state["json"] = _wants_json(args)
            json_written(reset=True)
            _usage_error(e)

    def invoke(self, ctx: Any) -> Any:
        _state["json"] = _wants_json([*getattr(ctx, "_protected_args", ()), *ctx.args])
        json_written(reset=True)
        from keyadmin import progress
        from keyadmin.cli.render import TerminalProgress

        bar = TerminalProgress.for_stderr()
        progress.set_sink(bar)
        try:
            return super().invoke(ctx)
        except ClickException as e:  # click's own usage errors (exit 2)
            _usage_error(e)
        except (typer.Exit, typer.Abort):
            raise  # explicit exits
        except BrokenPipeError:
            _quiet_broken_pipe()
            raise typer.Exit(EXIT_BROKEN_PIPE) from None
        except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - the one place for all
            if bar is not None:
                bar.close()
            raise typer.Exit(exit_code_for(e)) from None
        finally:
            progress.set_sink(None)
            if bar is not None:
                bar.close()


def _wants_json(args: list[str]) -> bool:
    """--json (or audit's --format json) among the options, before any ``--``."""
    opts = args[: args.index("--") if "--" in args else len(args)]
    return (
        "--json" in opts
        or "--format=json" in opts
        or any(a == "--format" and b == "json" for a, b in zip(opts, opts[1:], strict=False))
    )


def _usage_error(e: ClickException) -> NoReturn:
    """A usage error found by the parser: as click reports it, and under --json also the
    JSON error object on stdout (docs/exit-codes.md)."""
    if not _state["json"]:
        raise e
    e.show()  # the usual text on stderr for people
    _report_json(code="usage", exit_code=e.exit_code, message=e.format_message(), hint=None)
    raise typer.Exit(e.exit_code) from None


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
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)
_state: dict[str, bool] = {"debug": False, "json": False}


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
        if _state["json"]:
            _report_json(code="interrupted", exit_code=130, message="interrupted", hint=None)
        return 130
    if _state["debug"]:
        import traceback

        err("".join(traceback.format_exception(exc)))
    error = exc if isinstance(exc, KeyadminError) else _translate(exc)
    if error is None:
        error = KeyadminError(
            f"unexpected {type(exc).__name__}: {exc}", hint="rerun with --debug for the traceback"
        )
    reasons = failing_rules(error)
    say(f"error: {error.message}" + (":" if reasons and not error.message.endswith(":") else ""))
    for rule in reasons:  # one failing rule a line, never joined into one long line
        say(f"  - {rule}")
    if error.hint:
        say(f"hint: {error.hint}")
    if _state["json"]:
        _report_json(
            code=ExitCode(error.exit_code).name.lower(),
            exit_code=int(error.exit_code),
            message=error.message,
            hint=error.hint,
            reasons=[r for r in _reasons(error) if _failed(r)],
            retries_left=error.data.get("retries_left"),
        )
    return int(error.exit_code)


def _reasons(error: KeyadminError) -> list[Any]:
    reasons = error.data.get("reasons")
    return reasons if isinstance(reasons, list) else []


def _failed(reason: Any) -> bool:
    return not isinstance(reason, dict) or reason.get("outcome", "fail") == "fail"


def failing_rules(error: KeyadminError) -> list[str]:
    """The rules an error names as failed, as "rule: detail" lines (data["reasons"])."""
    return [
        f"{r.get('rule', '?')}: {r.get('detail', '')}" if isinstance(r, dict) else str(r)
        for r in _reasons(error)
        if _failed(r)
    ]


def _report_json(
    *, code: str, exit_code: int, message: str, hint: str | None, **extra: Any
) -> None:
    """Under --json an error is also a JSON object on stdout (docs/exit-codes.md), unless the
    command already wrote its result there (`audit --json` that fails: one document only)."""
    from keyadmin.cli.render import emit_json

    if json_written():
        return
    body: dict[str, Any] = {"code": code, "exit": exit_code, "message": message, "hint": hint}
    reasons = extra.get("reasons")
    body["reasons"] = reasons if isinstance(reasons, list) else []
    if extra.get("retries_left") is not None:
        body["retries_left"] = extra["retries_left"]
    try:
        emit_json({"error": body})
    except BrokenPipeError:
        _quiet_broken_pipe()


def _quiet_broken_pipe() -> None:
    """The reader went away (`keyadmin … | head`): nothing more to say, and no error at exit."""
    import os
    import sys

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


#: The exit code when the reader of stdout went away (`keyadmin log show | head`): a
#: process killed by SIGPIPE reports 128 + 13 in the shell; keyadmin says nothing.
EXIT_BROKEN_PIPE = 141


def run(argv: list[str] | None = None) -> Any:
    """Entry point of the ``keyadmin`` console script."""
    import sys

    try:
        app(args=argv, prog_name="keyadmin", standalone_mode=True)
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_broken_pipe()
        sys.exit(EXIT_BROKEN_PIPE)
    except SystemExit:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _quiet_broken_pipe()
            sys.exit(EXIT_BROKEN_PIPE)
        raise
