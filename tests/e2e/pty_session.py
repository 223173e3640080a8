"""Drive a keyadmin process through a real pseudo-terminal, as an operator at a desk does."""

from __future__ import annotations

import os
import pty
import select
import signal
import sys
import time


class PtyProcess:
    """``keyadmin ARGS`` with a pty as its controlling terminal (stdin, stdout, stderr)."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        exe = os.path.join(os.path.dirname(sys.executable), "keyadmin")
        full_env = {**os.environ, **(env or {}), "TERM": "xterm", "COLUMNS": "100"}
        pid, fd = pty.fork()
        if pid == 0:  # the child: becomes keyadmin at once
            try:
                os.execve(exe, [exe, *args], full_env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.seen = ""
        self.pos = 0  # where the next expect() starts looking: each match is new output
        self.code: int | None = None

    def expect(self, text: str, timeout: float = 60) -> str:
        """Read until ``text`` appears after the previous match (everything read so far is
        kept in ``seen``): a prompt asked twice is waited for twice."""
        deadline = time.monotonic() + timeout
        while text not in self.seen[self.pos :]:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} not seen within {timeout}s; got:\n{self.seen}")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # EIO: the child closed the terminal
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"{text!r} not seen before the end; got:\n{self.seen}")
                self.seen += chunk.decode("utf-8", "replace")
        self.pos = self.seen.index(text, self.pos) + len(text)
        return self.seen

    def send(self, line: str) -> None:
        os.write(self.fd, (line + "\n").encode())

    def wait(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while True:
            try:  # drain, so the child never blocks on a full terminal
                ready, _, _ = select.select([self.fd], [], [], 0.1)
                if ready:
                    chunk = os.read(self.fd, 4096)
                    self.seen += chunk.decode("utf-8", "replace")
            except OSError:
                pass
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.code = os.waitstatus_to_exitcode(status)
                os.close(self.fd)
                return self.code
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                raise AssertionError(f"still running after {timeout}s:\n{self.seen}")
