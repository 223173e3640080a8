"""Hostile values on every option and argument of every keyadmin command.

The commands and their parameters come from the click app itself, so a command added later
is fuzzed without touching this file. Each example runs one command line in a forked child
(tests/fuzz/runner.py) with a time and memory bound, from its own copy of the lab, and must
end with an exit code from docs/exit-codes.md, no traceback and no "unexpected" error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import click
import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import EXAMPLES, STDIN, Lab, budget
from tests.fuzz.hostile import (
    HOSTILE_FILES,
    URLS,
    number_values,
    path_values,
    text_values,
)
from tests.fuzz.runner import report, run_cli

#: Examples of the CLI fuzz test in CI (about 0.5 s each), and pytest's limit for the test.
CLI_EXAMPLES = 250
TIMEOUT = max(300, 3 * (EXAMPLES or CLI_EXAMPLES))

#: Commands the suite does not run, and why.
SKIPPED = {
    ("sim", "serve"): "a server: it runs until stopped (tests/integration covers it)",
    ("device", "list"): "lists every attached key: the suite never touches real devices",
}

UUID = "6b657961-646d-4e00-8000-736f66746b79"
#: A working value for each parameter (by command and name, else by name).
BASELINE: dict[str, str] = {
    "--policy": "lab/policy/lab-softkey.toml",
    "--device": "sim:alice.key",
    "--state": "alice.key",
    "--receipt-key": "receipt-key.pem",
    "--public-key": "receipt-key.pub.pem",
    "--log-key": "log-key.pem",
    "--target": "sqlite:///app.db",
    "--url": "http://127.0.0.1:9/blob.jwt",
    "--action": "deploy",
    "--reason": "fuzzing",
    "--role": "enrol",
    "user": "alice",
    "token": "eyJhIjoxfQ.eyJhIjoxfQ.AAAA",
    "ref": "1",
    "value": "5",
    "state": "on",
    "length": "6",
    "credential_id": "00" * 16,
    "identifier": UUID,
    "aaguid": UUID,
    "file": "lab/policy/lab-softkey.toml",
    "old": "blob.jwt",
    "new": "blob2.jwt",
    "--attestation-object": "@att.ao",
    "--client-data": "@att.cd",
}
BY_COMMAND = {("mds import", "file"): "blob.jwt"}


@dataclass(frozen=True)
class Param:
    name: str  # "--opt" or the argument's name
    kind: str  # "path", "number", "text", "flag", "url", "device"
    required: bool
    positional: bool


@dataclass(frozen=True)
class Command:
    words: tuple[str, ...]
    params: tuple[Param, ...]


def _kind(p: click.Parameter) -> str:
    if getattr(p, "is_flag", False):
        return "flag"
    name = p.opts[0] if isinstance(p, click.Option) else (p.name or "")
    if name == "--device" or name.endswith("-device"):
        return "device"
    if name in ("--db", "--target", "--url"):
        return "url"
    if isinstance(p.type, click.Path) or name in ("file", "old", "new"):
        return "path"
    if isinstance(p.type, (click.types.IntParamType, click.types.FloatParamType)):
        return "number"
    return "text"


def commands() -> list[Command]:
    """Every leaf command of the app, with its parameters, read from click."""
    from keyadmin.cli.main import app

    root = typer.main.get_command(app)
    ctx = click.Context(root)
    found: list[Command] = []

    def walk(cmd: click.Command, words: tuple[str, ...]) -> None:
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None
                walk(sub, (*words, name))
            return
        params = tuple(
            Param(
                p.opts[0] if isinstance(p, click.Option) else (p.name or ""),
                _kind(p),
                bool(p.required),
                isinstance(p, click.Argument),
            )
            for p in cmd.params
            if p.name != "help"
        )
        found.append(Command(words, params))

    walk(root, ())
    return found


COMMANDS = [c for c in commands() if c.words not in SKIPPED]


def test_every_command_is_fuzzed() -> None:
    """The enumeration sees the whole app (a broken walk would fuzz nothing)."""
    names = {" ".join(c.words) for c in COMMANDS}
    assert {"enrol", "step-up", "receipt verify", "mds update", "policy check", "sim init"} <= names
    assert len(names) >= 50


def hostile(p: Param) -> st.SearchStrategy[str]:
    if p.kind == "path":
        return path_values()
    if p.kind == "number":
        return number_values()
    if p.kind == "url":
        return st.one_of(st.sampled_from(URLS), text_values())
    if p.kind == "device":
        return st.one_of(
            st.sampled_from(["sim:" + f for f in HOSTILE_FILES]),
            st.sampled_from(["hid:/dev/zero", "hid:/dev/null", "hid:h/fifo", "hid:h/dir",
                             "hid:h/missing", "nfc:", "nfc:\x00", "sim:", "usb:x", ":"]),
            text_values(),
        )  # fmt: skip
    return text_values()


def baseline(cmd: Command, p: Param) -> str | None:
    return BY_COMMAND.get((" ".join(cmd.words), p.name), BASELINE.get(p.name))


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    cmd = draw(st.sampled_from(COMMANDS))
    values = [p for p in cmd.params if p.kind != "flag"]
    chosen = (
        set(draw(st.sets(st.sampled_from(values), min_size=1, max_size=3))) if values else set()
    )
    flags = [p for p in cmd.params if p.kind == "flag"]
    on = set(draw(st.sets(st.sampled_from(flags)))) if flags else set()
    argv = list(cmd.words)
    positional: list[str] = []
    for p in cmd.params:
        if p.kind == "flag":
            if p in on:
                argv.append(p.name)
            continue
        value = draw(hostile(p)) if p in chosen else baseline(cmd, p)
        if value is None or (p not in chosen and not p.required and p.kind != "device"):
            continue
        if p.positional:
            positional.append(value)
        else:
            argv += [p.name, value]
    return [*argv, *positional]


@pytest.fixture(scope="module")
def att_lab(lab: Lab) -> Lab:
    record = json.loads((lab.template / "att.json").read_text())
    (lab.template / "att.ao").write_text(record["attestationObject"])
    (lab.template / "att.cd").write_text(record["clientDataJSON"])
    return lab


def check(lab: Lab, argv: list[str]) -> None:
    where, env = lab.example()
    try:
        outcome = run_cli(argv, env=env, cwd=str(where), stdin=STDIN)
    finally:
        lab.discard(where)
    report(outcome)


@pytest.mark.timeout(TIMEOUT)
@budget(CLI_EXAMPLES)
@given(argv=command_lines())
def test_hostile_values_end_in_a_declared_error(att_lab: Lab, argv: list[str]) -> None:
    check(att_lab, argv)


def test_baseline_command_lines_work(att_lab: Lab) -> None:
    """The baseline is a real set-up: a few of its command lines succeed (so the fuzzer's
    hostile value, not a broken lab, is what each example tests)."""
    for words in (["sim", "show"], ["creds", "list"], ["policy", "check"], ["receipt", "verify"]):
        cmd = next(c for c in COMMANDS if list(c.words) == words)
        argv = list(cmd.words)
        for p in cmd.params:
            if p.required and p.kind != "flag":
                value = baseline(cmd, p)
                assert value is not None, p
                argv += [value] if p.positional else [p.name, value]
        if words == ["receipt", "verify"]:
            argv.append("--no-action-check")
        if words == ["policy", "check"]:  # FILE is optional (the configured policy)
            argv.append(baseline(cmd, next(p for p in cmd.params if p.positional)))
        where, env = att_lab.example()
        try:
            outcome = run_cli(argv, env=env, cwd=str(where), stdin=STDIN)
        finally:
            att_lab.discard(where)
        expected = 1 if words == ["receipt", "verify"] else 0  # a forged token is refused
        assert outcome.code == expected and not outcome.problems(), outcome.describe()
