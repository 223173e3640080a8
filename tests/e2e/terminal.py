"""Run the keyadmin console script through a real pseudo-terminal (os.openpty), as a person at
a terminal does, or through pipes, as a script does."""

from __future__ import annotations

import errno
import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass

EXE = os.path.join(os.path.dirname(sys.executable), "keyadmin")


@dataclass
class TtyOutcome:
    code: int
    terminal: str  # everything written to the terminal (stdout and/or stderr), raw
    stdout: str  # what went to the pipe when stdout was not the terminal


def run_tty(
    *args: str,
    env: dict[str, str] | None = None,
    columns: int = 80,
    stdout_tty: bool = True,
    answers: list[tuple[str, str]] = (),  # type: ignore[assignment]
    timeout: float = 120,
) -> TtyOutcome:
    """keyadmin with stdin and stderr (and stdout unless ``stdout_tty`` is False) on a
    pseudo-terminal of ``columns`` columns; each (prompt, text) in ``answers`` is typed when
    the prompt appears."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    full_env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns), **(env or {})}
    if "NO_COLOR" not in (env or {}):
        full_env.pop("NO_COLOR", None)  # the caller decides
    proc = subprocess.Popen(
        [EXE, *args],
        stdin=slave,
        stdout=slave if stdout_tty else subprocess.PIPE,
        stderr=slave,
        env=full_env,
        start_new_session=True,
        close_fds=True,
    )
    os.close(slave)
    seen = b""
    pending = list(answers)
    answered = 0  # answers look for their prompt after the previous answer
    deadline = time.monotonic() + timeout
    out_chunks: list[bytes] = []
    streams = [master] + ([proc.stdout.fileno()] if proc.stdout else [])
    while streams and time.monotonic() < deadline:
        ready, _, _ = select.select(streams, [], [], 0.2)
        for fd in ready:
            try:
                data = os.read(fd, 65536)
            except OSError as e:
                if e.errno != errno.EIO:
                    raise
                data = b""
            if not data:
                streams.remove(fd)
                continue
            if fd == master:
                seen += data
                while pending and pending[0][0].encode() in seen[answered:]:
                    answered = len(seen)
                    os.write(master, pending.pop(0)[1].encode() + b"\n")
            else:
                out_chunks.append(data)
        if proc.poll() is not None and not ready:
            break
    code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    os.close(master)
    return TtyOutcome(code, seen.decode("utf-8", "replace"), b"".join(out_chunks).decode())
