"""Terminal interaction for flows: PIN entry and touch prompts, on stderr.

PINs come from a hidden prompt, or from one line of stdin when stdin is not a
terminal (for scripts). Never from argv, never logged.
"""

from __future__ import annotations

import getpass
import sys
from typing import Any

from fido2.client import UserInteraction

from keyadmin.errors import PinError


def read_pin(prompt: str = "PIN: ") -> str:
    if sys.stdin is not None and sys.stdin.isatty():
        pin = getpass.getpass(prompt, stream=sys.stderr)
    else:
        line = sys.stdin.readline() if sys.stdin is not None else ""
        pin = line.rstrip("\r\n")
    if not pin:
        raise PinError("no PIN given", hint="type it at the prompt, or pipe it on stdin")
    return pin


class CliInteraction(UserInteraction):
    """python-fido2's UserInteraction for the terminal; the PIN is read once and reused."""

    def __init__(self, pin: str | None = None) -> None:
        self._pin = pin

    def prompt_up(self) -> None:
        sys.stderr.write("Touch your security key...\n")
        sys.stderr.flush()

    def request_pin(self, permissions: Any, rp_id: str | None) -> str | None:
        if self._pin is None:
            self._pin = read_pin("Security key PIN: ")
        return self._pin

    def request_uv(self, permissions: Any, rp_id: str | None) -> bool:
        return True
