"""Run python-fido2's own device test suite against `keyadmin sim serve --transport pcsc`.

The suite is `tests/device` of the fido2 source distribution whose version matches the
installed fido2; it runs UNMODIFIED, in a child pytest, over the real pcscd + vpcd with its
`--reader` option (NFC mode). Its NFC mode asks once for the card to be taken off the reader
and put back; :class:`PowerController` answers its `--controller URL` HTTP interface by
stopping and restarting the `keyadmin sim serve` process. Touch requests need nothing.

The sdist is kept in a cache directory (``.venv/fido2-device-suite/`` of the checkout, or
``$KEYADMIN_FIDO2_SUITE_CACHE``): ``scripts/fetch-fido2-suite.sh`` (run by bootstrap) fills it,
so test runs need no network.

Run by hand (inside a private namespace, e.g. ``/work/bin/isotest --cmd``)::

    .venv/bin/python -m pytest tests/integration/test_fido2_device_suite.py -s
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import threading
import time
import xml.etree.ElementTree as ET  # noqa: S405 - our own child's JUnit report
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version as installed_version
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "software-key.md"
SUITE_RUN_TIMEOUT = 1200.0


class SuiteUnavailable(Exception):
    """The fido2 sdist is not in the cache and cannot be downloaded."""


def cache_dir() -> Path:
    override = os.environ.get("KEYADMIN_FIDO2_SUITE_CACHE")
    return Path(override) if override else REPO / ".venv" / "fido2-device-suite"


def fido2_version() -> str:
    return installed_version("fido2")


def suite_root(version: str | None = None, *, download: bool = True) -> Path:
    """The unpacked fido2-VERSION source tree (holding tests/device), fetched if missing."""
    version = version or fido2_version()
    cache = cache_dir()
    root = cache / f"fido2-{version}"
    if (root / "tests" / "device" / "conftest.py").is_file():
        return root
    archive = cache / f"fido2-{version}.tar.gz"
    if not archive.is_file():
        if not download:
            raise SuiteUnavailable(f"{archive} is missing")
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:"]
        cmd += ["--no-deps", "-d", str(cache), f"fido2=={version}"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)  # noqa: S603
        if done.returncode != 0 or not archive.is_file():
            raise SuiteUnavailable(
                f"pip download of the fido2 {version} sdist failed "
                f"(run scripts/fetch-fido2-suite.sh with network): {done.stderr.strip()[-300:]}"
            )
    with tarfile.open(archive) as tar:
        tar.extractall(cache, filter="data")  # noqa: S202 - the data filter refuses escapes
    if not (root / "tests" / "device" / "conftest.py").is_file():
        raise SuiteUnavailable(f"{archive} holds no tests/device")
    return root


# ----------------------------------------------------------------- the key as a process
class SimServe:
    """`keyadmin sim serve --transport pcsc` as a child process: the card on the reader."""

    def __init__(self, state: Path, port: int, reader: str, log: Path) -> None:
        self.state, self.port, self.reader, self.log = state, port, reader, log
        self._proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.stops = 0

    def start(self) -> None:
        from keyadmin.sim.pcscd import wait_for_card

        if self._proc is not None:
            return
        cmd = [sys.executable, "-m", "keyadmin", "sim", "serve", "--state", str(self.state)]
        cmd += ["--transport", "pcsc", "--host", "127.0.0.1", "--port", str(self.port)]
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=log)  # noqa: S603
        self.starts += 1
        wait_for_card(self.reader, 15.0)

    def stop(self) -> None:
        from keyadmin.sim.pcscd import wait_for_card

        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        self.stops += 1
        wait_for_card(self.reader, 15.0, present=False)


class PowerController:
    """The suite's `--controller URL` interface: power off/on stop and restart `sim serve`.

    Answers GET / (the suite's reachability check), /usbN/power/off, /usbN/power/on and
    /usbN/touch/on|off (touch needs no action from a software key), and records each call.
    """

    def __init__(self, serve: SimServe) -> None:
        self.serve = serve
        self.calls: list[str] = []
        controller = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                status = controller.handle(self.path)
                body = b"ok\n" if status == 200 else b"not found\n"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def handle(self, path: str) -> int:
        with self._lock:
            self.calls.append(path)
            if path == "/":
                return 200
            m = re.fullmatch(r"/usb\d+/(power|touch)/(on|off)", path)
            if m is None:
                return 404
            if m.group(1) == "power":
                if m.group(2) == "off":
                    self.serve.stop()
                else:
                    self.serve.start()
            return 200

    def __enter__(self) -> PowerController:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


# ----------------------------------------------------------------- results
@dataclass
class SuiteResult:
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    xfailed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # test id -> reason

    def summary(self) -> str:
        return (
            f"{len(self.passed)} passed, {len(self.failed)} failed, {len(self.errors)} errors, "
            f"{len(self.skipped)} skipped, {len(self.xfailed)} xfailed"
        )


def _test_id(case: ET.Element) -> str:
    module = case.get("classname", "").rsplit(".", 1)[-1]
    return f"{module}.py::{case.get('name', '')}"


def _skip_reason(message: str) -> str:
    # pytest's JUnit report writes "file:line: reason" for a skip raised in a fixture
    return re.sub(r"^[^ ]+\.py:\d+: ", "", message).strip()


def parse_junit(path: Path) -> SuiteResult:
    result = SuiteResult()
    for case in ET.parse(path).getroot().iter("testcase"):  # noqa: S314 - our child's report
        test = _test_id(case)
        if case.find("error") is not None:
            result.errors.append(test)
        elif case.find("failure") is not None:
            result.failed.append(test)
        elif (skip := case.find("skipped")) is not None:
            message = skip.get("message", "")
            if skip.get("type") == "pytest.xfail":
                result.xfailed[test] = message
            else:
                result.skipped[test] = _skip_reason(message)
        else:
            result.passed.append(test)
    return result


def run_suite(
    root: Path,
    reader: str,
    controller_url: str,
    workdir: Path,
    extra: tuple[str, ...] = (),
) -> tuple[SuiteResult, str]:
    """Run ``root``/tests/device against the card on ``reader``; return results and output."""
    junit = workdir / "fido2-device-suite.xml"
    cmd = [sys.executable, "-m", "pytest", "tests/device", "--reader", reader]
    cmd += ["--controller", controller_url, "-p", "no:cacheprovider", "-rfEsxX"]
    cmd += ["--junitxml", str(junit), "-o", "junit_family=xunit2", "--timeout", "180"]
    cmd += list(extra)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    started = time.monotonic()
    done = subprocess.run(  # noqa: S603
        cmd,
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUITE_RUN_TIMEOUT,
        check=False,
    )
    output = done.stdout + done.stderr
    output += f"\n[suite exit status {done.returncode} after {time.monotonic() - started:.0f} s]"
    if not junit.is_file():
        raise AssertionError(f"the device suite wrote no report:\n{output[-4000:]}")
    return parse_junit(junit), output


# ----------------------------------------------------------------- the documented skips
SKIP_TABLE_HEADING = "### Skipped tests of python-fido2's device suite"


def documented_skips(doc: Path = DOC) -> dict[str, tuple[str, str]]:
    """The table under SKIP_TABLE_HEADING: `| test id | the suite's skip message | why |`."""
    text = doc.read_text()
    start = text.find(SKIP_TABLE_HEADING)
    if start < 0:
        return {}
    rows: dict[str, tuple[str, str]] = {}
    in_table = False
    for line in text[start:].splitlines()[1:]:
        if line.startswith("#"):
            break
        if not line.startswith("|"):
            if in_table:
                break
            continue
        in_table = True
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
        if len(cells) < 3 or set(cells[0]) <= {"-", " "} or cells[0] == "test":
            continue
        rows[cells[0].strip("`")] = (cells[1].replace("\\|", "|"), cells[2])
    return rows


def _pattern(row: str) -> re.Pattern[str]:
    """A table row names one test, or several with `*` (any characters; nothing else special)."""
    return re.compile(".*".join(re.escape(part) for part in row.split("*")))


def compare_skips(skipped: dict[str, str], documented: dict[str, tuple[str, str]]) -> list[str]:
    """Every skip matched by a documented row with the same message, every row used once at
    least, every row with a written reason: the list of what is not so (empty = match)."""
    problems: list[str] = []
    used: set[str] = set()
    for test, message in sorted(skipped.items()):
        rows = [r for r in documented if _pattern(r).fullmatch(test)]
        if not rows:
            problems.append(f"{test}: skipped ({message!r}) but not in the table")
        elif documented[rows[0]][0] != message:
            problems.append(f"{test}: skipped with {message!r}, the table says {rows[0]!r}")
        used.update(rows[:1])
    for row, (_, why) in documented.items():
        if row not in used:
            problems.append(f"{row}: in the table but no test was skipped so")
        if not why.strip() or why.strip() == "TODO":
            problems.append(f"{row}: no reason written")
    return problems


def skip_table(skipped: dict[str, str], why: dict[str, tuple[str, str]]) -> str:
    """The markdown table for ``skipped`` (keeping the documented reasons), for the docs."""
    lines = ["| test | the suite's skip message | why |", "|---|---|---|"]
    for test, message in sorted(skipped.items()):
        cell = message.replace("|", "\\|")
        lines.append(f"| `{test}` | {cell} | {why.get(test, ('', 'TODO'))[1]} |")
    return "\n".join(lines)
