"""The key inventory's use cases: read a delivery file, and the policy's [inventory] rule at
enrolment (is this physical key ours, in stock, and nobody else's?).

A delivery file is CSV with a header row naming its columns, in any order:
``serial`` (required), ``model`` and/or ``aaguid`` (one of them on every row), ``batch`` (or
``order``), ``location``. Every row is checked before anything is stored: one bad row imports
nothing and is named by its line.
"""

from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path
from typing import Any

from keyadmin.errors import UsageError
from keyadmin.store.inventory import LIVE, MAX_FIELD, NewKey, normal_serial

COLUMNS = {
    "serial": "serial",
    "model": "model",
    "aaguid": "aaguid",
    "batch": "batch",
    "order": "batch",
    "location": "location",
}
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_ROWS = 1_000_000
RULE = "inventory"


def _bad(path: Path, line: int, problem: str) -> UsageError:
    return UsageError(
        f"{path} line {line}: {problem}; nothing was imported",
        hint="columns: serial, model and/or aaguid, batch (or order), location (docs/inventory.md)",
    )


def _field(path: Path, line: int, name: str, value: str | None) -> str | None:
    text = (value or "").strip()
    if not text:
        return None
    if len(text) > MAX_FIELD or not text.isprintable():
        raise _bad(path, line, f"{name} must be 1..{MAX_FIELD} printable characters")
    return text


def read_delivery(path: Path) -> list[NewKey]:
    """Parse and check a delivery CSV (UTF-8, optional BOM)."""
    return parse_delivery(path, read_delivery_bytes(path))


def read_delivery_bytes(path: Path) -> bytes:
    """The delivery file's bytes (a regular file of at most MAX_FILE_BYTES: a fifo, a device
    or a larger file is a declared error, never a wait)."""
    from keyadmin.files import read_input

    try:
        return read_input(path, MAX_FILE_BYTES)
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None


def parse_delivery(path: Path, raw: bytes) -> list[NewKey]:
    """Parse and check a delivery CSV's bytes (``path`` names it in errors)."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UsageError(f"{path} is not UTF-8 text: {e}") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise UsageError(f"{path} is empty", hint="the first line names the columns")
        names = [h.strip().lower() for h in header]
        unknown = [n for n in names if n not in COLUMNS]
        if unknown:
            raise _bad(path, 1, f"unknown column {unknown[0]!r}")
        if "serial" not in names:
            raise _bad(path, 1, "there is no serial column")
        if len(set(names)) != len(names) or len({COLUMNS[n] for n in names}) != len(names):
            raise _bad(path, 1, "a column is named twice")
        keys: list[NewKey] = []
        first_line: dict[str, int] = {}
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(keys) >= MAX_ROWS:
                raise _bad(path, line, f"more than {MAX_ROWS} keys in one file")
            if len(cells) != len(names):
                raise _bad(path, line, f"{len(cells)} cells, the header names {len(names)}")
            row = {COLUMNS[n]: c for n, c in zip(names, cells, strict=True)}
            keys.append(_key(path, line, row, first_line))
    except csv.Error as e:
        raise _bad(path, reader.line_num, f"not valid CSV ({e})") from None
    return keys


def _key(path: Path, line: int, row: dict[str, str], first_line: dict[str, int]) -> NewKey:
    try:
        serial = normal_serial(row.get("serial", ""))
    except UsageError:
        raise _bad(path, line, "the serial is missing or not printable") from None
    if serial in first_line:
        raise _bad(
            path, line, f"serial {serial} appears twice (first at line {first_line[serial]})"
        )
    first_line[serial] = line
    model = _field(path, line, "model", row.get("model"))
    aaguid = _field(path, line, "aaguid", row.get("aaguid"))
    if aaguid is not None:
        try:
            aaguid = str(uuid.UUID(aaguid))
        except ValueError:
            raise _bad(path, line, f"{aaguid!r} is not an AAGUID (a UUID)") from None
    if model is None and aaguid is None:
        raise _bad(path, line, "each key needs a model or aaguid")
    return NewKey(
        serial=serial,
        model=model,
        aaguid=aaguid,
        batch=_field(path, line, "batch", row.get("batch")),
        location=_field(path, line, "location", row.get("location")),
    )


def check_enrolment(
    session: Any, policy: Any, serial: str | None, user: str
) -> tuple[dict[str, str] | None, list[str]]:
    """The rule ``inventory`` for a key whose serial enrolment proved (None: no serial, no
    rule) and the warnings to flag (``serial_reuse = "flag"``)."""
    from keyadmin.store.inventory import credentials_on, find_key

    if serial is None:
        return None, []
    rules = policy.inventory
    key = find_key(session, serial)
    flags: list[str] = []

    if key is None:
        if rules.required:
            return _reason(
                "fail", f"key {serial} is not in the inventory (keyadmin keys import)"
            ), []
    elif key.state != "in-stock" and not (key.state == "issued" and key.user == user):
        held = f" to {key.user}" if key.user else ""
        problem = f"key {serial} is {key.state}{held} in the inventory, not in-stock"
        if rules.required:
            return _reason("fail", problem), []
        if key.state != "issued":  # issued to another user: the reuse check below says it
            flags.append(problem)
    others = {c.user for c in credentials_on(session, serial) if c.status in LIVE}
    if key is not None and key.state == "issued" and key.user:
        others.add(key.user)
    others.discard(user)
    if others:
        problem = f"key {serial} is already enrolled for {', '.join(sorted(others))}"
        if rules.serial_reuse == "refuse":
            return _reason("fail", problem), flags
        flags.append(problem)
    where = "not in the inventory" if key is None else f"in the inventory ({key.state})"
    detail = f"key {serial} {where}" + (f"; flagged: {'; '.join(flags)}" if flags else "")
    return _reason("pass", detail), flags


def _reason(outcome: str, detail: str) -> dict[str, str]:
    return {"rule": RULE, "outcome": outcome, "detail": detail}
