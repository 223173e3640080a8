"""Terminal interaction for flows: PIN entry and touch prompts, on stderr.

PINs come from a hidden prompt, or from one line of stdin when stdin is not a
terminal (for scripts). Never from argv, never logged. Before one is read the process is
made non-dumpable with no core dumps (``protect_secrets``). PINs stay Python ``str``:
python-fido2 takes the PIN as ``str`` and encodes it itself, and a ``str`` cannot be wiped,
so a PIN lives in memory until the garbage collector reuses it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from fido2.client import UserInteraction

from keyadmin.cli.render import ask_hidden, err, say
from keyadmin.errors import KeyadminError, PinError

if TYPE_CHECKING:
    from fido2.ctap2 import ClientPin


class Cancelled(KeyadminError):
    """The operator said no."""


def protect_secrets() -> None:
    """Before a PIN or passphrase is read: this process never writes a core dump (RLIMIT_CORE
    0, hard limit too, so it cannot be raised again) and, on Linux, is not dumpable
    (PR_SET_DUMPABLE 0: no core, and other processes of the same user cannot ptrace it or
    read its memory through /proc). Fails closed when the kernel refuses."""
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_dumpable = 4
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(pr_set_dumpable, 0, 0, 0, 0) != 0:
            raise KeyadminError(
                "cannot make this process non-dumpable (prctl PR_SET_DUMPABLE failed); "
                "no secret was read"
            )


#: how often a terminal asks again for a PIN shorter than the key's minimum
MAX_ASKS = 5


def _key_facts() -> tuple[int | None, int | None]:
    """(minimum PIN length, attempts left) of the key this prompt is for, if one is open."""
    from keyadmin.device.session import current_session

    session = current_session()
    return session.pin_facts() if session is not None else (None, None)


def _label(prompt: str, minimum: int | None, retries: int | None) -> str:
    facts = []
    if minimum is not None:
        facts.append(f"at least {minimum} characters")
    if retries is not None:
        facts.append(f"{retries} attempts left")
    base = prompt.rstrip().rstrip(":")
    return f"{base} ({'; '.join(facts)}): " if facts else f"{base}: "


def read_pin(prompt: str = "PIN: ", *, new: bool = False) -> str:
    """A PIN for the open key: a hidden prompt that states the key's minimum length and the
    attempts left and asks again for a PIN shorter than the minimum (never sent to the key),
    or one line of stdin (a short one is refused, no attempt spent)."""
    protect_secrets()
    minimum, retries = _key_facts()
    if new:
        retries = None
    if retries is not None and retries <= 3:
        say(f"warning: only {retries} PIN attempts left before the key locks for good")
    tty = sys.stdin is not None and sys.stdin.isatty()
    for _ in range(MAX_ASKS):
        if tty:
            pin = ask_hidden(_label(prompt, minimum, retries))
        else:
            line = sys.stdin.readline() if sys.stdin is not None else ""
            pin = line.rstrip("\r\n")
        if not pin:
            raise PinError("no PIN given", hint="type it at the prompt, or pipe it on stdin")
        pin = _text(pin)
        if minimum is None or len(pin) >= minimum:
            return pin
        if not tty:
            raise PinError(
                f"the PIN given is shorter than this key's minimum of {minimum} characters; "
                "it was not sent to the key (no attempt was spent)",
                hint="check the PIN that is piped in",
            )
        say(
            f"too short: this key's PINs have at least {minimum} characters "
            "(nothing was sent to the key); type it again"
        )
    raise PinError(f"no PIN of at least {minimum} characters was typed; nothing was sent")


def _text(pin: str) -> str:
    """A PIN must be text (CTAP sends its UTF-8): bytes the terminal's encoding could not
    decode are refused here, without showing any of them."""
    try:
        pin.encode("utf-8")
    except UnicodeEncodeError:
        raise PinError(
            "the PIN is not valid text in this terminal's encoding",
            hint="check the terminal's locale (e.g. LANG=C.UTF-8), then retry",
        ) from None
    return pin


def read_new_pin() -> str:
    """A new PIN: typed twice at a terminal (asked again when shorter than the key's minimum),
    or one line of stdin."""
    protect_secrets()
    if sys.stdin is not None and sys.stdin.isatty():
        first = read_pin("New PIN: ", new=True)
        if ask_hidden("New PIN again: ") != first:
            raise PinError("the two PINs differ; nothing was changed")
        return first
    return read_pin(new=True)


def confirm(question: str) -> None:
    """Ask yes/no on stderr; anything but yes aborts with nothing done."""
    err(f"{question} [y/N] ")
    answer = sys.stdin.readline() if sys.stdin is not None else ""
    if answer.strip().lower() not in ("y", "yes"):
        raise Cancelled("cancelled; nothing was changed")


class CliInteraction(UserInteraction):
    """The terminal's keyadmin.device.interaction.Interaction (and python-fido2's
    UserInteraction): the PIN is read once and reused."""

    def __init__(self, pin: str | None = None) -> None:
        self._pin = pin

    def known_pin(self) -> str | None:
        """The PIN already typed in this command, if any (never prompts)."""
        return self._pin

    def prompt_up(self) -> None:
        err("Touch your security key...\n")

    def request_pin(self, permissions: ClientPin.PERMISSION, rp_id: str | None) -> str | None:
        if self._pin is None:
            self._pin = read_pin("Security key PIN: ")
        return self._pin

    def request_uv(self, permissions: ClientPin.PERMISSION, rp_id: str | None) -> bool:
        return True
