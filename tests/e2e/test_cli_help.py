"""Help and shell (issue 16, item 9): every help page has an example that is a real command,
no markup reaches the page, nothing is wrapped mid-word, -h works, `enroll` finds `enrol`,
a typo's suggestion is printed once, and `keyadmin completion bash|zsh|fish` works."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from typing import Any

import click
import pytest
import typer
from typer.testing import CliRunner

from keyadmin.cli.main import app
from tests.e2e.cli import run

BIN = os.path.dirname(sys.executable)


def _commands() -> list[tuple[list[str], Any]]:
    root = typer.main.get_command(app)
    found: list[tuple[list[str], Any]] = []

    def walk(cmd: Any, path: list[str], ctx: click.Context) -> None:
        found.append((path, cmd))
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                walk(sub, [*path, name], click.Context(sub, info_name=name, parent=ctx))

    walk(root, [], click.Context(root, info_name="keyadmin"))
    return found


COMMANDS = _commands()
IDS = [" ".join(p) or "keyadmin" for p, _ in COMMANDS]


def _help(path: list[str], width: int) -> str:
    result = CliRunner().invoke(
        app, [*path, "--help"], terminal_width=width, max_content_width=width
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def _examples(page: str) -> list[str]:
    """The command lines of a help page's example blocks."""
    cmds, inside = [], False
    for line in page.splitlines():
        stripped = line.strip()
        if re.match(r"^Examples?\b[^:]*:$", stripped):
            inside = True
        elif inside and line.startswith("    ") and stripped:
            cmds.append(stripped)
        elif stripped:
            inside = False
    return cmds


def test_the_whole_tree_is_walked() -> None:
    assert len(COMMANDS) > 60 and ["creds", "list"] in [p for p, _ in COMMANDS]


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=IDS)
def test_help_has_an_example_no_markup_and_no_mid_word_wrap(path, cmd) -> None:
    wide = _help(path, 4000)
    examples = _examples(wide)
    assert examples, f"no example in the help of keyadmin {' '.join(path)}"
    assert "\\[" not in wide and "\x1b" not in wide
    assert not re.search(r"\[/?(bold|red|green|yellow|cyan|dim|b|i|italic)\]", wide)
    for width in (40, 60, 80):
        narrow = _help(path, width)
        # wrapping may move words to other lines, never cut one
        assert narrow.split() == wide.split(), width
        # an example is one line on every width (a copy is the exact command)
        assert _examples(narrow) == examples, width


def _resolve(words: list[str]) -> tuple[Any, list[str]]:
    cmd: Any = typer.main.get_command(app)
    ctx = click.Context(cmd, info_name="keyadmin")
    rest = list(words)
    while isinstance(cmd, click.Group) and rest and not rest[0].startswith("-"):
        sub = cmd.get_command(ctx, rest[0])
        assert sub is not None, f"no command {rest[0]!r} in {words}"
        ctx = click.Context(sub, info_name=rest[0], parent=ctx)
        cmd, rest = sub, rest[1:]
    return cmd, rest


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=IDS)
def test_examples_name_real_commands_and_options(path, cmd) -> None:
    for example in _examples(_help(path, 4000)):
        for part in re.split(r"\|\||&&|\||;", example.split("#")[0]):
            words = shlex.split(part.replace("$(", "(").replace(">", " > "))
            if ">" in words:
                words = words[: words.index(">")]
            if not words or words[0] != "keyadmin":
                continue
            target, rest = _resolve(words[1:])
            known = {opt for p in target.params for opt in (*p.opts, *p.secondary_opts)}
            for word in rest:
                if word.startswith("-") and not word.startswith("--)"):
                    assert word.split("=")[0] in known | {"-h", "--help"}, (example, word)


def test_dash_h_is_help_everywhere() -> None:
    for args in (["-h"], ["creds", "-h"], ["creds", "list", "-h"], ["enrol", "-h"]):
        out = run(*args)
        assert out.code == 0 and out.stdout.startswith("Usage: keyadmin"), (args, out.stderr)


def test_enroll_is_enrol_and_a_typo_is_suggested_once() -> None:
    us = run("enroll", "--help")
    assert us.code == 0 and "Enrol a key for USER" in us.stdout
    typo = run("creds", "lis")
    assert typo.code == 2 and typo.stderr.count("Did you mean") == 1, typo.stderr
    root_typo = run("enrl")
    assert root_typo.code == 2 and root_typo.stderr.count("Did you mean 'enrol'?") == 1


def _bash_complete(line: list[str]) -> list[str]:
    script = (
        "source <(keyadmin completion bash)\n"
        f"COMP_WORDS=({' '.join(shlex.quote(w) for w in line)})\n"
        f"COMP_CWORD={len(line) - 1}\nCOMPREPLY=()\n"
        "_keyadmin_completion keyadmin\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"]}
    proc = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_bash_completion_completes_commands_and_options() -> None:
    assert _bash_complete(["keyadmin", "cre"]) == ["creds"]
    assert _bash_complete(["keyadmin", "creds", "li"]) == ["list"]
    assert _bash_complete(["keyadmin", "creds", "l"]) == ["list", "lost"]
    assert "--status" in _bash_complete(["keyadmin", "creds", "list", "--st"])


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(shell) -> None:
    out = run("completion", shell)
    assert out.code == 0, out.stderr
    assert "_KEYADMIN_COMPLETE" in out.stdout and "not supported" not in out.stdout + out.stderr
    checker = shutil.which(shell)
    if checker is not None and shell != "fish":
        syntax = subprocess.run(
            [checker, "-n"], input=out.stdout, capture_output=True, text=True, timeout=30
        )
        assert syntax.returncode == 0, syntax.stderr


def test_completion_refuses_other_shells() -> None:
    assert run("completion", "tcsh").code == 2
