"""Debian's chromium, headless, driven over the DevTools protocol: a small client on a plain
websocket (RFC 6455, client side only: masked text frames out, unmasked frames in).

Only what tests/apps needs: start the browser on a private profile, open a page, call
protocol methods (WebAuthn virtual authenticator, Runtime.evaluate), and stop it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
from typing import Any


class CdpError(RuntimeError):
    pass


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[Any]) -> None:
    """End a process this test started: SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class WebSocket:
    """One websocket connection to ws://HOST:PORT/PATH."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        assert url.startswith("ws://")
        hostport, _, path = url[5:].partition("/")
        host, _, port = hostport.partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise CdpError("websocket handshake: connection closed")
            head += chunk
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status:
            raise CdpError(f"websocket handshake refused: {status!r}")
        self.buf = head.split(b"\r\n\r\n", 1)[1]

    def send(self, text: str) -> None:
        data = text.encode()
        n = len(data)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        mask = os.urandom(4)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise CdpError("websocket closed by the browser")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self) -> str:
        message = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", self._read(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", self._read(8))
            payload = self._read(n)
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise CdpError("websocket closed by the browser")
            if opcode in (0x9, 0xA):  # ping/pong: chromium does not send them to clients
                continue
            message += payload
            if b0 & 0x80:
                return message.decode()

    def close(self) -> None:
        self.sock.close()


class Browser:
    """A headless chromium with one page target, driven over DevTools."""

    def __init__(self, binary: str) -> None:
        self.profile = tempfile.mkdtemp(prefix="keyadmin-chromium-")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                binary,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                "--disable-background-networking",
                f"--remote-debugging-port={self.port}",
                "--remote-debugging-address=127.0.0.1",
                f"--user-data-dir={self.profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.ws: WebSocket | None = None
        self.next_id = 0
        try:
            self._attach()
        except BaseException:
            self.close()
            raise

    def _attach(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/json/list", timeout=2
                ) as r:
                    targets = json.load(r)
                pages = [t for t in targets if t.get("type") == "page"]
                if pages:
                    self.ws = WebSocket(pages[0]["webSocketDebuggerUrl"])
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise CdpError("chromium did not open its DevTools port")
            time.sleep(0.1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        assert self.ws is not None
        self.next_id += 1
        mine = self.next_id
        self.ws.send(json.dumps({"id": mine, "method": method, "params": params}))
        while True:  # events arrive between replies; this client does not need them
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mine:
                if "error" in msg:
                    raise CdpError(f"{method}: {msg['error']}")
                result: dict[str, Any] = msg.get("result", {})
                return result

    def navigate(self, url: str) -> None:
        self.call("Page.enable")
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + 20
        while self.evaluate("document.readyState") != "complete" or not str(
            self.evaluate("location.href")
        ).startswith(url):
            if time.monotonic() > deadline:
                raise CdpError(f"page {url} did not load")
            time.sleep(0.05)

    def evaluate(self, expression: str) -> Any:
        """Run JavaScript in the page (awaiting a promise); its JSON-able value."""
        r = self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise CdpError(f"page script failed: {d.get('exception', {}).get('description', d)}")
        return r.get("result", {}).get("value")

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
        stop(self.proc)
        shutil.rmtree(self.profile, ignore_errors=True)


class VirtualAuthenticator:
    """The WebAuthn domain's virtual authenticator (a CTAP2 USB key that verifies the user)."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        browser.call("WebAuthn.enable", enableUI=False)
        self.id = browser.call(
            "WebAuthn.addVirtualAuthenticator",
            options={
                "protocol": "ctap2",
                "ctap2Version": "ctap2_1",
                "transport": "usb",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            },
        )["authenticatorId"]

    def add(self, credential: dict[str, Any], **change: Any) -> None:
        """Hold a credential as ``keyadmin sim export-credentials`` prints it (WebAuthn
        domain's format), with fields changed (e.g. signCount)."""
        self.browser.call(
            "WebAuthn.addCredential", authenticatorId=self.id, credential={**credential, **change}
        )

    def close(self) -> None:
        self.browser.call("WebAuthn.removeVirtualAuthenticator", authenticatorId=self.id)

    def remove(self, credential_id: str) -> None:
        self.browser.call(
            "WebAuthn.removeCredential", authenticatorId=self.id, credentialId=credential_id
        )

    def sign_count(self, credential_id: str) -> int:
        """The counter the virtual authenticator holds (credential id in standard base64)."""
        creds = self.browser.call("WebAuthn.getCredentials", authenticatorId=self.id)
        for c in creds["credentials"]:
            if c["credentialId"] == credential_id:
                return int(c["signCount"])
        raise CdpError("the virtual authenticator does not hold that credential")
