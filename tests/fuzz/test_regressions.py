"""One test per class of failure the fuzz suite found, each seen failing before its fix.

Each runs the CLI as the fuzz suite does (forked, time- and memory-bounded, its own copy of
the lab) and asserts the declared exit code and message, not just "no traceback".
"""

from __future__ import annotations

import pytest

from tests.fuzz.conftest import STDIN, Lab
from tests.fuzz.runner import Outcome, run_cli


def cli(lab: Lab, *argv: str) -> Outcome:
    where, env = lab.example()
    try:
        return run_cli(list(argv), env=env, cwd=str(where), stdin=STDIN)
    finally:
        lab.discard(where)


def declared(outcome: Outcome, code: int, *words: str) -> None:
    assert not outcome.problems(), outcome.describe()
    assert outcome.code == code, outcome.describe()
    for word in words:
        assert word in outcome.stderr, outcome.describe()


# -- files that are not regular files, or too large: refused before they are read ---------------
@pytest.mark.parametrize(
    "argv",
    [
        ["sim", "show", "--state", "h/fifo"],
        ["policy", "check", "h/fifo"],
        ["policy", "check", "h/to-fifo"],
        ["mds", "diff", "h/fifo", "blob2.jwt"],
        ["log", "verify", "--anchor", "h/fifo", "--log-public-key", "log-key.pub.pem"],
        ["device", "info", "--device", "sim:h/fifo"],
    ],
    ids=lambda a: " ".join(a),
)
def test_a_fifo_is_refused_not_waited_on(lab: Lab, argv: list[str]) -> None:
    declared(cli(lab, *argv), 4 if "sim:h/fifo" in argv else 1, "not a regular file")


@pytest.mark.parametrize(
    "argv",
    [
        ["policy", "check", "/dev/zero"],
        ["log", "verify", "--anchor", "/dev/zero", "--log-public-key", "log-key.pub.pem"],
        ["log", "verify", "--log-public-key", "/dev/zero", "--anchor", "h/empty"],
        ["receipt", "verify", "x.y.z", "--no-action-check", "--public-key", "/dev/zero"],
        ["attestation", "verify", "--attestation-object", "@/dev/zero", "--client-data", "@att.cd",
         "--policy", "lab/policy/lab-softkey.toml"],
    ],
    ids=lambda a: " ".join(a),
)  # fmt: skip
def test_a_device_file_is_refused_not_read_forever(lab: Lab, argv: list[str]) -> None:
    out = cli(lab, *argv)
    assert not out.problems(), out.describe()
    assert out.code in (1, 2) and "not a regular file" in out.stderr, out.describe()


def test_a_huge_file_is_refused_by_its_size(lab: Lab) -> None:
    declared(cli(lab, "mds", "import", "h/huge"), 1, "bytes; at most")
    declared(cli(lab, "sim", "show", "--state", "h/huge"), 1, "bytes; at most")


# -- arguments that are not text --------------------------------------------------------------
@pytest.mark.parametrize(
    "value", ["\x00", "a\x00b", "\udcff"], ids=["nul", "nul-inside", "bad-utf8"]
)
def test_an_argument_that_is_not_text_is_a_usage_error(lab: Lab, value: str) -> None:
    declared(cli(lab, "sim", "show", "--state", value), 2)
    declared(cli(lab, "users", "list", "--policy", value), 2)
    declared(cli(lab, "creds", "show", value), 2)


# -- database URLs ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    ["@h/deep.toml", "sqlite:///h/nul", "postgresql://127.0.0.1:1/x", "sqlite:///h/dir"],
)
def test_a_bad_database_url_is_a_declared_error(lab: Lab, url: str) -> None:
    declared(cli(lab, "mds", "status", "--db", url), 1, "database")
    declared(cli(lab, "creds", "list", "--db", url), 1)


# -- deep nesting ------------------------------------------------------------------------------
def test_a_deeply_nested_state_file_is_damaged_not_a_crash(lab: Lab) -> None:
    declared(cli(lab, "sim", "show", "--state", "h/deep-obj.json"), 1, "h/deep-obj.json")
    declared(cli(lab, "device", "info", "--device", "sim:h/deep.json"), 4)


@pytest.mark.parametrize("name", ["h/deep.toml", "h/deep-inline.toml"])
def test_a_deeply_nested_policy_is_a_config_error(lab: Lab, name: str) -> None:
    declared(cli(lab, "policy", "check", name), 1, name)
    declared(cli(lab, "device", "prepare", "--policy", name, "--device", "sim:alice.key"), 1)
