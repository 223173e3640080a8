"""A time and memory bound for one in-process call (the library fuzz tests)."""

from __future__ import annotations

import os
import signal
import tracemalloc
from collections.abc import Callable
from typing import Any

from keyadmin.errors import KeyadminError
from tests.fuzz.runner import DECLARED

#: Seconds and traced megabytes one library call may take.
CALL_SECONDS = float(os.environ.get("KEYADMIN_FUZZ_CALL_SECONDS", "10"))
CALL_MEMORY_MB = int(os.environ.get("KEYADMIN_FUZZ_CALL_MEMORY_MB", "64"))


class Hung(BaseException):
    """Raised in the call when its time is up (a BaseException: no ``except Exception`` in
    the code under test can swallow it)."""


def _alarm(_sig: int, _frame: Any) -> None:
    raise Hung(f"no answer within {CALL_SECONDS:g} s")


def declared_or_ok(fn: Callable[[], Any], shown: Any) -> Any:
    """Call ``fn``: it returns, or raises a KeyadminError with a declared exit code, within
    CALL_SECONDS and CALL_MEMORY_MB of new allocations. Anything else fails, naming ``shown``."""
    text = repr(shown)
    text = text if len(text) < 400 else text[:400] + f"...<{len(text)} chars>"
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, CALL_SECONDS)
    tracemalloc.start()
    try:
        return fn()
    except KeyadminError as e:
        assert int(e.exit_code) in DECLARED, f"{text}: exit code {e.exit_code}"
        return e
    except Hung as e:
        raise AssertionError(f"{text}: {e}") from None
    except Exception as e:  # noqa: BLE001 - what the fuzz tests look for
        raise AssertionError(f"{text}: undeclared {type(e).__name__}: {e}") from e
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < CALL_MEMORY_MB << 20, f"{text}: {peak >> 20} MB allocated"
