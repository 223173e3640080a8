"""`keyadmin mds update` against a real slow HTTP server on localhost.

The server answers at once and then trickles the body one byte at a time, each byte well
inside any per-read timeout: only an overall deadline ($KEYADMIN_MDS_DEADLINE) ends it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.fuzz.conftest import STDIN, Lab
from tests.fuzz.runner import run_cli


class Trickle(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        try:
            for _ in range(100000):
                self.wfile.write(b"e")
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass  # the client gave up: what the test wants

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def slow_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/blob.jwt"
    finally:
        server.shutdown()
        server.server_close()


def test_mds_update_stops_at_its_deadline(lab: Lab, slow_url: str) -> None:
    where, env = lab.example(KEYADMIN_MDS_DEADLINE="2")
    try:
        out = run_cli(["mds", "update", "--url", slow_url], env=env, cwd=str(where), stdin=STDIN)
    finally:
        lab.discard(where)
    assert not out.problems(), out.describe()
    assert out.code == 7 and "KEYADMIN_MDS_DEADLINE" in out.stderr, out.describe()
    assert out.seconds < 10, out.describe()


def test_http_get_stops_at_its_deadline(slow_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from keyadmin.mds.errors import DownloadFailed
    from keyadmin.mds.fetch import http_get

    monkeypatch.setenv("KEYADMIN_MDS_DEADLINE", "1.5")
    start = time.monotonic()
    with pytest.raises(DownloadFailed) as e:
        http_get(slow_url, timeout=5)
    assert time.monotonic() - start < 4 and "1.5" in e.value.message


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1", "1e9", "soon"])
def test_a_bad_deadline_is_a_config_error(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from keyadmin.errors import ConfigError
    from keyadmin.mds.fetch import configured_deadline

    monkeypatch.setenv("KEYADMIN_MDS_DEADLINE", value)
    with pytest.raises(ConfigError):
        configured_deadline()
