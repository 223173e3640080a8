"""docs/operator-guide.md, run as written: every ```sh block of the guide, in order, each
logical line as a real shell command (the installed console script), against the software
key and a SQLite registry and application database.

The harness plays the physical world only: which key is plugged in for a block
(``<!-- guide-test: key=NAME -->`` sets KEYADMIN_DEVICE, the documented override), what the
person types on stdin (``stdin=pin``: the key's PIN, several lines), the desk's configuration
file (the guide's TOML names production hosts; the harness writes the same settings for the
lab) and $OFFLINE. A block marked ``skip`` names hardware (USB, pcscd, hidraw paths)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.lab import LAB_POLICY, PIN, ROOT

GUIDE = ROOT / "docs" / "operator-guide.md"
KEYS = ("olivia", "alice-primary", "alice-backup", "bob-primary")
MARK = re.compile(r"<!--\s*guide-test:\s*(.*?)\s*-->")


def blocks(text: str) -> list[tuple[dict[str, str], list[str]]]:
    """(annotation, logical command lines) of each ```sh block."""
    found = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```sh":
            j = i + 1
            body = []
            while lines[j].strip() != "```":
                body.append(lines[j])
                j += 1
            mark = MARK.match(lines[i - 1].strip()) if i else None
            notes: dict[str, str] = {}
            if mark:
                for token in mark.group(1).split():
                    key, _, value = token.partition("=")
                    notes.setdefault(key, value)
            found.append((notes, _logical(body)))
            i = j
        i += 1
    return found


def _logical(body: list[str]) -> list[str]:
    out: list[str] = []
    pending = ""
    for line in body:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full and not full.startswith("#"):
            out.append(full)
    return out


def test_the_guide_has_runnable_blocks_for_each_part_of_the_day() -> None:
    found = blocks(GUIDE.read_text())
    text = GUIDE.read_text()
    for part in ("station check", "delivery of keys", "queue of enrolments", "lost key",
                 "leaver", "audit before a certification"):  # fmt: skip
        assert part in text.lower(), part
    run = [b for b in found if "skip" not in b[0]]
    assert len(run) >= 10 and sum(len(cmds) for _, cmds in run) >= 25
    assert all(b[0] for b in found), "every sh block says how the test runs it"


@pytest.fixture
def desk(tmp_path: Path) -> dict[str, str]:
    from fido2.ctap2 import ClientPin, Ctap2

    from keyadmin.sim.authenticator import SoftKey
    from keyadmin.sim.hid import open_hid

    desk = tmp_path / "desk"
    desk.mkdir()
    roots = []
    for name in KEYS:
        key = SoftKey.create(desk / f"{name}.json")
        (desk / f"{name}-root.pem").write_text(key.root_certificate_pem())
        roots.append(f'"{name}-root.pem"')
        if name == "olivia":  # the operator's own key: in use for years, it has a PIN
            ClientPin(Ctap2(open_hid(key))).set_pin(PIN)
    policy = LAB_POLICY.read_text().replace(
        'extra_roots = ["lab-root.pem"]', f"extra_roots = [{', '.join(roots)}]"
    )
    (desk / "desk-policy.toml").write_text(policy)
    config = desk / "config.toml"
    config.write_text(
        'policy = "desk-policy.toml"\n'
        f'registry = "sqlite:///{desk / "registry.db"}"\n'
        'operator = "olivia"\noperator_device = "sim:olivia.json"\n\n'
        f'[[sync.targets]]\nname = "portal"\nurl = "sqlite:///{desk / "portal.db"}"\n'
    )
    config.chmod(0o600)
    (tmp_path / "offline").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYADMIN_")}
    env.update(
        KEYADMIN_HOME=str(tmp_path / "home"),
        KEYADMIN_CONFIG=str(config),
        KEYADMIN_SYSLOG_SOCKET="off",
        OFFLINE=str(tmp_path / "offline"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        CWD=str(desk),
    )
    return env


def test_the_desks_day_runs_as_written(desk: dict[str, str]) -> None:
    cwd = desk.pop("CWD")
    ran = skipped = 0
    transcript: list[str] = []
    for notes, commands in blocks(GUIDE.read_text()):
        if "skip" in notes:
            skipped += 1
            continue
        env = dict(desk)
        if notes.get("key"):
            env["KEYADMIN_DEVICE"] = f"sim:{Path(cwd) / (notes['key'] + '.json')}"
        stdin = f"{PIN}\n" * 4 if notes.get("stdin") == "pin" else ""
        for command in commands:
            proc = subprocess.run(  # noqa: S603 - the guide's own commands
                ["bash", "-o", "pipefail", "-c", command],
                cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=180,
            )  # fmt: skip
            transcript.append(f"$ {command}\n{proc.stdout}{proc.stderr}[exit {proc.returncode}]")
            expected = int(notes.get("exit", "0"))
            assert proc.returncode == expected, "\n".join(transcript[-3:])
            assert PIN not in proc.stdout + proc.stderr
            ran += 1
    assert ran >= 25 and skipped <= 6, (ran, skipped)
    text = "\n".join(transcript)
    # what the day did, seen from outside: alice's primary suspended, bob revoked, all pushed
    assert "is now suspended" in text and "is now revoked" in text
    assert "The log verifies and extends the anchor" in text
    # the configured operator key logged in once; the morning's session authorized the rest
    assert "Authorized by operator olivia (session" in text
