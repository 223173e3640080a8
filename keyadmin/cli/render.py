"""One renderer for every command: a table or key/value view for people, JSON for pipes.

Results go to stdout; prompts, progress and errors go to stderr. Everything written for
people passes through ``clean``: text from keys (user and display names, transports),
from operators (nicknames, reasons) and from the registry may hold terminal escape
sequences, C1 controls, bidi overrides or zero-width characters; each character that
``str.isprintable`` rejects is shown as a Python-style escape (``\x1b``, ``\u202e``) instead
of reaching the terminal. JSON output is exact JSON (``ensure_ascii``: it escapes them itself).
No other module of keyadmin writes to stdout or stderr (tests/unit/test_render_central.py).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from enum import Enum
from typing import Any


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def clean(value: Any, *, lines: bool = False) -> str:
    """``value`` as text safe for a terminal: every character that is not printable (controls,
    C1, format characters such as bidi overrides and zero-width spaces, line separators,
    unassigned code points; newlines too unless ``lines``) becomes an escape."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or (lines and ch == "\n") else _escape(ch) for ch in text)


def out(text: str) -> None:
    """Write text for people on stdout (escaped; its own newlines kept)."""
    sys.stdout.write(clean(text, lines=True))


def err(text: str) -> None:
    """Write text for people on stderr (escaped; its own newlines kept)."""
    sys.stderr.write(clean(text, lines=True))
    sys.stderr.flush()


def ask_hidden(prompt: str) -> str:
    """A hidden prompt on stderr (getpass); the typed text is not echoed."""
    import getpass

    return getpass.getpass(clean(prompt), stream=sys.stderr)


def emit_csv(header: list[str], rows: list[list[Any]]) -> None:
    """CSV on stdout; each cell escaped like every other text for people."""
    import csv

    w = csv.writer(sys.stdout)
    w.writerow(header)
    for row in rows:
        w.writerow([clean(c) if isinstance(c, str) else c for c in row])


#: Cell values shown in colour at a terminal (rich styles); nothing else is coloured.
STYLES = {
    "active": "green", "ok": "green", "pass": "green",
    "suspended": "yellow", "warn": "yellow", "WARN": "yellow",
    "revoked": "red", "quarantined": "bold red", "fail": "bold red", "FAIL": "bold red",
    "BELOW MINIMUM": "bold red", "BLOCKED": "bold red", "REVOKED": "red",
}  # fmt: skip


def colour_wanted(stream: Any) -> bool:
    """Colour only for a terminal, never with NO_COLOR set (any value) or TERM=dumb."""
    import os

    if os.environ.get("NO_COLOR") is not None or os.environ.get("TERM") == "dumb":
        return False
    return bool(getattr(stream, "isatty", None) and stream.isatty())


def emit_table(header: list[str], rows: list[list[Any]], *, fmt: str = "table") -> None:
    """A list for people, with a header row; ``fmt`` "csv" writes CSV instead.

    At a terminal the table is drawn by rich to the terminal's width (long cells wrap inside
    their column) with status words in colour, unless NO_COLOR is set; in a pipe it is plain
    text, columns aligned, every value whole, no control sequences."""
    if fmt == "csv":
        emit_csv(header, rows)
        return
    cells = [["-" if c is None else clean(c) for c in row] for row in rows]
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        colour = colour_wanted(sys.stdout)
        table = Table(box=None, pad_edge=False, header_style="bold" if colour else "")
        for name in header:
            table.add_column(name, overflow="fold")
        for row in cells:
            table.add_row(*(Text(c, style=STYLES.get(c, "") if colour else "") for c in row))
        console = Console(
            file=sys.stdout, no_color=not colour, highlight=False, emoji=False, markup=False,
            color_system="auto" if colour else None,
        )  # fmt: skip
        console.print(table)
        return
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    lines = []
    for row in [list(header), *cells]:
        padded = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=False)]
        lines.append("  ".join([*padded, row[-1]]).rstrip())
    sys.stdout.write("\n".join(lines) + "\n")


def list_format(json_out: bool, csv_out: bool) -> str:
    """The --json / --csv pair of a list command: "json", "csv" or "table"."""
    if json_out and csv_out:
        from keyadmin.errors import UsageError

        raise UsageError("--json and --csv exclude each other")
    return "json" if json_out else "csv" if csv_out else "table"


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value if isinstance(value.value, (str, int)) else value.name
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


_json_written = [False]  # one JSON document per run: an error after a result adds none


def emit_json(value: Any) -> None:
    _json_written[0] = True
    sys.stdout.write(json.dumps(to_jsonable(value), indent=2, sort_keys=False) + "\n")


def json_written(reset: bool = False) -> bool:
    """Has this run written its JSON document to stdout? (``reset``: a new run starts.)"""
    written = _json_written[0]
    if reset:
        _json_written[0] = False
    return written


def emit_kv(title: str, rows: list[tuple[str, Any]], *, stderr: bool = False) -> None:
    """Print a titled key/value block for people (every key and value escaped); on stderr
    when stdout carries the command's one result (step-up's receipt)."""
    keys = [clean(k) for k, _ in rows]
    width = max((len(k) for k in keys), default=0)
    lines = [clean(title)]
    for key, (_, val) in zip(keys, rows, strict=True):
        if isinstance(val, (list, tuple)):
            val = ", ".join(str(v) for v in val) if val else "-"
        elif isinstance(val, dict):
            val = ", ".join(f"{k}={v}" for k, v in val.items()) if val else "-"
        elif isinstance(val, bytes):
            val = val.hex()
        elif val is None:
            val = "-"
        lines.append(f"  {key.ljust(width)}  {clean(val)}")
    (sys.stderr if stderr else sys.stdout).write("\n".join(lines) + "\n")


class TerminalProgress:
    """Draws keyadmin.progress reports on one stderr line ("audit: checked 1200/5000"), at most
    ten times a second; only made when stderr is a terminal (``for_stderr``)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.last = 0.0
        self.drawn = False

    @classmethod
    def for_stderr(cls) -> TerminalProgress | None:
        import os

        stream = sys.stderr
        if stream is None or not stream.isatty() or os.environ.get("TERM") == "dumb":
            return None
        return cls(stream)

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        import time

        now = time.monotonic()
        if self.drawn and now - self.last < 0.1 and done != total:
            return
        self.last, self.drawn = now, True
        count = f"{done}/{total}" if total else str(done)
        self.stream.write(f"\r\x1b[K{clean(stage)} {count}")
        self.stream.flush()

    def close(self) -> None:
        """Erase the progress line (results and errors follow on a clean line)."""
        if self.drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.drawn = False


def say(message: str) -> None:
    """Progress and prompts: stderr, so stdout stays machine-readable (escaped)."""
    err(message + "\n")
