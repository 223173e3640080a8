"""Refusals and errors at the desk (issue 16, item 4): one failing rule a line on stderr, and
under --json, for every command, a JSON error object on stdout (stderr unchanged for people)."""

from __future__ import annotations

import json

import click
import pytest

from tests.e2e.cli import invoke, run
from tests.e2e.test_cli_help import COMMANDS
from tests.support.lab import PIN, make_lab

FAILING = ("attestation.trusted", "attestation.type", "authenticator.allowed")


def _error(stdout: str) -> dict:
    doc = json.loads(stdout)
    assert set(doc) == {"error"}, doc
    body = doc["error"]
    assert {"code", "exit", "message", "hint", "reasons"} <= set(body), body
    return body


def test_a_refusal_prints_one_failing_rule_a_line(tmp_path) -> None:
    lab = make_lab(tmp_path / "self", f"sqlite:///{tmp_path / 'r.db'}",
                   key_options={"attestation": "self"})  # fmt: skip
    out = invoke(*lab.enrol_args("alice"), input=f"{PIN}\n")
    assert out.code == 3 and out.stdout == ""
    lines = out.stderr.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("error: "))
    assert lines[head].startswith("error: the policy refused this key: 3 rules failed")
    rules = lines[head + 1 : head + 4]
    for line, rule in zip(rules, FAILING, strict=True):
        assert line.startswith(f"  - {rule}: "), line
        assert sum(name in line for name in FAILING) == 1, line  # never two rules on a line
    assert all(len(line) < 200 for line in lines), max(lines, key=len)


def test_a_refusal_under_json_is_an_error_object_with_its_failing_rules(tmp_path) -> None:
    lab = make_lab(tmp_path / "self", f"sqlite:///{tmp_path / 'r.db'}",
                   key_options={"attestation": "self"})  # fmt: skip
    out = invoke(*lab.enrol_args("alice", "--json"), input=f"{PIN}\n")
    assert out.code == 3
    body = _error(out.stdout)
    assert body["code"] == "policy_refused" and body["exit"] == 3
    assert [r["rule"] for r in body["reasons"]] == list(FAILING)
    assert all(r["outcome"] == "fail" and r["detail"] for r in body["reasons"])
    assert "  - attestation.trusted: " in out.stderr  # people still read it on stderr
    assert PIN not in out.stdout + out.stderr


@pytest.mark.parametrize(
    ("args", "code", "name"),
    [
        (["log", "show", "--since", "yesterday", "--json"], 2, "usage"),
        (["sim", "show", "--state", "{tmp}/missing.json", "--json"], 1, "error"),
        (["device", "info", "--device", "sim:{tmp}/missing.json", "--json"], 4, "device"),
        (
            ["mds", "status", "--require-fresh", "--json"],
            7,
            "metadata",
        ),
        (["audit", "--policy", "{tmp}/missing.toml", "--format", "json"], 1, "error"),
        (["creds", "show", "--json", "--no-such-option"], 2, "usage"),
        (["creds", "show", "--json"], 2, "usage"),  # a missing argument
    ],
)
def test_errors_under_json_are_objects_on_stdout(tmp_path, args, code, name) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    out = run(*args, env={"KEYADMIN_HOME": str(tmp_path / "home")})
    assert out.code == code, out.stderr
    body = _error(out.stdout)
    assert body["code"] == name and body["exit"] == code and body["message"]
    assert out.stderr.strip(), "people still get the message on stderr"
    assert "Traceback" not in out.stderr


def test_without_json_stdout_stays_empty_on_error(tmp_path) -> None:
    out = run("log", "show", "--since", "yesterday", env={"KEYADMIN_HOME": str(tmp_path)})
    assert out.code == 2 and out.stdout == "" and "error: --since" in out.stderr


JSON_COMMANDS = [
    path for path, cmd in COMMANDS
    if not isinstance(cmd, click.Group) and any("--json" in p.opts for p in cmd.params)
]  # fmt: skip


def test_most_commands_take_json() -> None:
    assert len(JSON_COMMANDS) > 40


@pytest.mark.parametrize("path", JSON_COMMANDS, ids=[" ".join(p) for p in JSON_COMMANDS])
def test_every_json_command_reports_a_usage_error_as_json(tmp_path, path) -> None:
    out = invoke(*path, "--json", "--no-such-option", env={"KEYADMIN_HOME": str(tmp_path)})
    assert out.code == 2
    body = _error(out.stdout)
    assert body["code"] == "usage" and "--no-such-option" in body["message"]
