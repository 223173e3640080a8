"""Run the keyadmin CLI as a user does: through typer's CliRunner, or as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

from typer.testing import CliRunner

from keyadmin.cli.main import app


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Outcome:
    """In-process, through CliRunner (stdout and stderr kept apart)."""
    result = CliRunner().invoke(app, list(args), input=input, env=env, catch_exceptions=False)
    return Outcome(result.exit_code, result.stdout, result.stderr)


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Outcome:
    """The installed console script in a fresh process."""
    exe = os.path.join(os.path.dirname(sys.executable), "keyadmin")
    proc = subprocess.run(
        [exe, *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr)
