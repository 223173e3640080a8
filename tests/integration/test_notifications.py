"""Notifications (issue 16, item 12): quarantine, counter anomalies and detected tampering go
to syslog (a real unix datagram socket bound where the test says) and, when configured, to a
webhook (JSON, retried, never blocking the decision): a real local HTTP server that answers,
fails first, is slow, or is down."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tests.integration.test_stepup_support import ACTION, PIN, Lab, clone, make_lab, stored


def invoke(*args: str, input: str | None = None):
    from keyadmin.cli import main

    app: typer.Typer = main.app
    return CliRunner().invoke(app, list(args), input=input, catch_exceptions=False)


class Syslog:
    """A syslog daemon's socket: unix datagrams at ``path``."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)

    def messages(self, wait_for: str | None = None, timeout: float = 10) -> list[str]:
        got: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                got.append(self.sock.recv(65536).decode())
            except TimeoutError:
                if wait_for is None or any(wait_for in m for m in got):
                    break
        return got


class Hook:
    """An HTTP server that records POSTed JSON; ``fail_first`` answers 500 that often,
    ``delay`` seconds before each answer; ``on_request`` runs when a request arrives."""

    def __init__(self, fail_first: int = 0, delay: float = 0.0, on_request=None) -> None:
        self.bodies: list[dict] = []
        self.attempts = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                hook.attempts += 1
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if on_request is not None:
                    on_request(body)
                time.sleep(delay)
                if hook.attempts <= fail_first:
                    self.send_response(500)
                    self.end_headers()
                    return
                hook.bodies.append(body)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return make_lab(tmp_path, f"sqlite:///{tmp_path / 'registry.db'}")


@pytest.fixture
def syslog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Syslog:
    path = tmp_path / "log.sock"
    server = Syslog(path)
    monkeypatch.setenv("KEYADMIN_SYSLOG_SOCKET", str(path))
    monkeypatch.setenv("KEYADMIN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KEYADMIN_WEBHOOK_URL", raising=False)
    return server


@pytest.fixture
def receipt_key(tmp_path: Path) -> Path:
    path = tmp_path / "receipt-key.pem"
    assert invoke("receipt", "keygen", "--receipt-key", str(path), "--no-passphrase").exit_code == 0
    return path


def _quarantine(lab: Lab, key: Path, tmp_path: Path):
    """A cloned key at step-up: the counter does not advance, the credential is quarantined."""
    copy = clone(lab.keys["alice"], tmp_path / "copy.key")

    def step_up(state: Path):
        return invoke(
            "step-up", "alice", "--action", ACTION, "--policy", str(lab.policy_path),
            "-d", f"sim:{state}", "--receipt-key", str(key), "--db", lab.db_url,
            input=f"{PIN}\n",
        )  # fmt: skip

    assert step_up(lab.keys["alice"]).exit_code == 0
    return step_up(copy)


def test_quarantine_and_counter_anomaly_go_to_syslog(lab, syslog, receipt_key, tmp_path) -> None:
    out = _quarantine(lab, receipt_key, tmp_path)
    assert out.exit_code == 6, out.stderr
    got = syslog.messages(wait_for="counter-anomaly")
    quarantine = [m for m in got if "keyadmin" in m and "quarantine" in m]
    assert quarantine, got
    assert quarantine[0].startswith("<")  # a syslog priority: authpriv facility
    pri = int(quarantine[0][1 : quarantine[0].index(">")])
    assert pri >> 3 == 10  # LOG_AUTHPRIV
    assert any("counter-anomaly" in m and "alice" in m for m in got), got
    assert PIN not in "".join(got)


def test_webhook_gets_json_and_is_retried(lab, syslog, receipt_key, tmp_path, monkeypatch):
    hook = Hook(fail_first=1)
    monkeypatch.setenv("KEYADMIN_WEBHOOK_URL", hook.url)
    try:
        out = _quarantine(lab, receipt_key, tmp_path)
        assert out.exit_code == 6, out.stderr
        deadline = time.monotonic() + 20
        while not any(b["event"] == "quarantine" for b in hook.bodies):
            assert time.monotonic() < deadline, (hook.attempts, hook.bodies)
            time.sleep(0.1)
    finally:
        hook.close()
    body = next(b for b in hook.bodies if b["event"] == "quarantine")
    assert body["user"] == "alice" and body["credential_id"] and body["log_seq"] > 0
    assert hook.attempts >= 2  # the first answer was a 500: retried


def test_a_slow_webhook_never_holds_up_the_decision(
    lab, syslog, receipt_key, tmp_path, monkeypatch
):
    seen_status: list[str] = []
    hook = Hook(delay=3.0, on_request=lambda body: seen_status.append(stored(lab.db_url).status))
    monkeypatch.setenv("KEYADMIN_WEBHOOK_URL", hook.url)
    try:
        out = _quarantine(lab, receipt_key, tmp_path)
        assert out.exit_code == 6
        deadline = time.monotonic() + 30
        while not seen_status:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        hook.close()
    assert seen_status[0] == "quarantined"  # committed before the webhook was called


def test_a_webhook_that_is_down_is_reported_to_syslog(
    lab, syslog, receipt_key, tmp_path, monkeypatch
):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))  # a port nobody listens on
    port = dead.getsockname()[1]
    dead.close()
    monkeypatch.setenv("KEYADMIN_WEBHOOK_URL", f"http://127.0.0.1:{port}/hook")
    out = _quarantine(lab, receipt_key, tmp_path)
    assert out.exit_code == 6, out.stderr
    assert stored(lab.db_url).status == "quarantined"
    got = syslog.messages(wait_for="webhook", timeout=30)
    assert any("webhook" in m and "failed" in m for m in got), got


def test_tampering_found_by_log_verify_goes_to_syslog(lab, syslog) -> None:
    from sqlalchemy import text

    from keyadmin.store.db import get_engine

    with get_engine(lab.db_url).begin() as conn:
        conn.execute(text("UPDATE ka_credential SET sign_count = sign_count + 7"))
    out = invoke("log", "verify", "--db", lab.db_url)
    assert out.exit_code == 1
    got = syslog.messages(wait_for="tampering")
    assert any("tampering" in m for m in got), got


def test_no_socket_and_no_webhook_change_nothing(lab, receipt_key, tmp_path, monkeypatch):
    monkeypatch.setenv("KEYADMIN_SYSLOG_SOCKET", str(tmp_path / "nobody-listens.sock"))
    monkeypatch.delenv("KEYADMIN_WEBHOOK_URL", raising=False)
    monkeypatch.setenv("KEYADMIN_HOME", str(tmp_path / "home"))
    out = _quarantine(lab, receipt_key, tmp_path)
    assert out.exit_code == 6 and "Traceback" not in out.stderr


def test_tampering_found_by_sync_goes_to_syslog(tmp_path, syslog) -> None:
    """The application's table edited behind keyadmin's back: sync finds it (exit 3), and
    the sync.tamper row is announced once it is committed."""
    import sqlite3

    from tests.support.lab import PIN as LAB_PIN
    from tests.support.lab import make_lab as make_enrol_lab

    lab = make_enrol_lab(tmp_path / "lab", f"sqlite:///{tmp_path / 'reg.db'}")
    assert invoke(*lab.enrol_args("alice"), input=f"{LAB_PIN}\n").exit_code == 0
    app = tmp_path / "app.db"
    target = f"sqlite:///{app}"
    first = invoke("sync", "--target", target, "--create-table", "--db", lab.db)
    assert first.exit_code == 0, first.stderr
    con = sqlite3.connect(app)
    con.execute("UPDATE webauthn_credentials SET public_key = x'00112233'")
    con.commit()
    con.close()
    out = invoke("sync", "--target", target, "--full", "--db", lab.db)
    assert out.exit_code == 3, out.stderr
    got = syslog.messages(wait_for="tampering")
    assert any("tampering" in m and "sync.tamper" in m for m in got), got
