"""tests/apps: real applications' own sign-in code, a real browser (Debian's chromium,
headless, over DevTools). Both installed by scripts/setup-apps.sh; missing ones skip locally
and FAIL in CI (missing_component)."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.apps.cdp import Browser, VirtualAuthenticator, chromium_path, stop
from tests.integration.conftest import missing_component

ROOT = Path(__file__).resolve().parents[2]
APPS_VENV = ROOT / ".venv-apps"


def app_python(name: str) -> Path:
    """The Python of an application's own virtual environment (or the test fails in CI)."""
    python = APPS_VENV / name / "bin" / "python"
    if not python.exists():
        missing_component(f"{python} is missing: run scripts/setup-apps.sh")
    return python


class Server:
    """An application's web server, in its own venv and process, until stopped."""

    def __init__(self, argv: list[str], port: int, env: dict[str, str] | None = None) -> None:
        self.port = port
        # its request log goes to a file: a pipe nobody reads would block the server
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env={**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, **(env or {})},
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            self.stop()
            self.log.seek(0)
            raise RuntimeError(f"the application did not start: {line!r} {self.log.read()[-2000:]}")
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the application's port did not open")

    @property
    def origin(self) -> str:
        return f"http://localhost:{self.port}"

    def stop(self) -> None:
        stop(self.proc)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    binary = chromium_path()
    if binary is None:
        missing_component("chromium is not installed: run scripts/setup-apps.sh")
    b = Browser(binary)  # type: ignore[arg-type]
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def authenticator(browser: Browser) -> Iterator[VirtualAuthenticator]:
    """A fresh virtual authenticator in the session's browser, removed after the test."""
    va = VirtualAuthenticator(browser)
    try:
        yield va
    finally:
        va.close()
