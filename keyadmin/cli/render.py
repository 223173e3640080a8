"""One renderer for every command: a table or key/value view for people, JSON for pipes.

Results go to stdout; prompts, progress and errors go to stderr.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from enum import Enum
from typing import Any


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


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(value), indent=2, sort_keys=False) + "\n")


def emit_kv(title: str, rows: list[tuple[str, Any]]) -> None:
    """Print a titled key/value block for people."""
    width = max((len(k) for k, _ in rows), default=0)
    out = [title]
    for key, val in rows:
        if isinstance(val, (list, tuple)):
            val = ", ".join(str(v) for v in val) if val else "-"
        elif isinstance(val, dict):
            val = ", ".join(f"{k}={v}" for k, v in val.items()) if val else "-"
        elif isinstance(val, bytes):
            val = val.hex()
        elif val is None:
            val = "-"
        out.append(f"  {key.ljust(width)}  {val}")
    sys.stdout.write("\n".join(out) + "\n")


def say(message: str) -> None:
    """Progress and prompts: stderr, so stdout stays machine-readable."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
