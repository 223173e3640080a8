"""Run one keyadmin command line in a forked child with a time and memory bound.

Each example of the fuzz suite runs here: the child gets its own session (no controlling
terminal, so a prompt reads the given stdin and never waits for a person), its own
environment and working directory, ``RLIMIT_AS`` set to what it already maps plus
``FUZZ_MEMORY_MB``, and stdout/stderr in files. The parent kills the child's process group
when ``FUZZ_TIMEOUT`` seconds pass: a hanging input is a failure that names the input, not a
hung suite. Forking keeps the imports already made (a fresh interpreter per example would
spend most of the budget starting Python).
"""

from __future__ import annotations

import io
import os
import re
import resource
import signal
import sys
import tempfile
import time
from dataclasses import dataclass

#: Seconds one command line may take (the whole command, prompts answered from stdin).
FUZZ_TIMEOUT = float(os.environ.get("KEYADMIN_FUZZ_TIMEOUT", "20"))
#: Address space a child may add to what it maps when forked.
FUZZ_MEMORY_MB = int(os.environ.get("KEYADMIN_FUZZ_MEMORY_MB", "768"))

#: How keyadmin reports an exception it did not expect (keyadmin/cli/main.py).
UNEXPECTED = re.compile(r"error: unexpected [A-Za-z_][\w.]*: ")

#: The exit codes docs/exit-codes.md declares (130 is Ctrl-C, which the suite never sends).
DECLARED = {0, 1, 2, 3, 4, 5, 6, 7}
#: The code the child reports when an exception escaped the CLI (not a keyadmin code).
ESCAPED = 99


@dataclass
class Outcome:
    argv: list[str]
    code: int | None  # None: killed at the deadline
    stdout: str
    stderr: str
    seconds: float

    def problems(self) -> list[str]:
        """What is wrong with this outcome (empty when it ended in a declared way)."""
        found = []
        if self.code is None:
            found.append(f"no answer within {FUZZ_TIMEOUT:g} s (killed)")
        elif self.code not in DECLARED:
            found.append(f"exit code {self.code} is not in docs/exit-codes.md")
        both = self.stdout + self.stderr
        if "Traceback (most recent call last)" in both:
            found.append("a traceback was printed")
        if UNEXPECTED.search(both):  # main.exit_code_for: "error: unexpected TypeName: ..."
            found.append("an 'unexpected' error")
        if "MemoryError" in both:
            found.append("memory ran out")
        return found

    def describe(self) -> str:
        shown = [a if len(a) <= 200 else a[:200] + f"...<{len(a)} chars>" for a in self.argv]
        return (
            f"keyadmin {shown!r}\n  -> code {self.code} in {self.seconds:.1f} s: "
            f"{'; '.join(self.problems()) or 'ok'}\n"
            f"  stderr: {self.stderr[-1500:]!r}\n  stdout: {self.stdout[-500:]!r}"
        )


def _mapped_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _child(argv: list[str], env: dict[str, str], cwd: str, fds: tuple[int, int, int]) -> int:
    os.setsid()  # no controlling terminal: getpass reads stdin, never /dev/tty
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    limit = _mapped_bytes() + FUZZ_MEMORY_MB * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from keyadmin.cli.main import app

    try:
        app(args=argv, prog_name="keyadmin")
    except SystemExit as e:
        if e.code is None:
            return 0
        return e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 - what the fuzz suite looks for
        import traceback

        traceback.print_exc()
        return ESCAPED
    return 0


def run_cli(argv: list[str], *, env: dict[str, str], cwd: str, stdin: str = "") -> Outcome:
    """``keyadmin *argv`` in a forked child; killed (code None) after FUZZ_TIMEOUT seconds."""
    with (
        tempfile.TemporaryFile() as i,
        tempfile.TemporaryFile() as o,
        tempfile.TemporaryFile() as e,
    ):
        i.write(stdin.encode())
        i.seek(0)
        sys.stdout.flush()
        sys.stderr.flush()
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                code = _child(argv, env, cwd, (i.fileno(), o.fileno(), e.fileno()))
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code & 0xFF)
        code: int | None = None
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                code = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() - start > FUZZ_TIMEOUT:
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.01)
        seconds = time.monotonic() - start
        try:  # whatever the child started in its session goes with it
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        o.seek(0)
        e.seek(0)
        return Outcome(
            argv,
            code,
            o.read().decode("utf-8", "replace"),
            e.read().decode("utf-8", "replace"),
            seconds,
        )


def report(outcome: Outcome) -> None:
    """Fail on a problem; with KEYADMIN_FUZZ_COLLECT=FILE, append it there and go on (to see
    every class of failure in one run while hardening)."""
    if not outcome.problems():
        return
    collect = os.environ.get("KEYADMIN_FUZZ_COLLECT")
    if collect:
        with open(collect, "a") as f:
            f.write(outcome.describe() + "\n\n")
        return
    raise AssertionError(outcome.describe())
