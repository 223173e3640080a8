"""Run a function in a process forked from one started before any test ran.

keyadmin lowers its own RLIMIT_CORE to (0, 0) before reading a PIN, and in-process CLI tests
(CliRunner) do that to the pytest process itself; without CAP_SYS_RESOURCE nothing raises a
hard limit again, so every later child would start with cores already off. A forkserver
started at collection (tests/e2e/conftest.py) keeps the limits the session began with.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from multiprocessing import forkserver
from typing import Any

_CTX = multiprocessing.get_context("forkserver")


def start() -> None:
    forkserver.ensure_running()


def call(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a child of the early forkserver; its result (picklable) returned."""
    with _CTX.Pool(1) as pool:
        return pool.apply(fn, args)
