"""The shared operator options and the one helper every privileged command calls.

Wiring a command: add ``operator: str = OPERATOR_OPT, operator_device: str =
OPERATOR_DEVICE_OPT`` to its parameters and call ``authorize_cli(url, ACTION, ARGS, operator,
operator_device)`` before it changes anything; put ``authority.evidence`` into its log row's
details under ``authority``. ``keyadmin.flows.authority.ROLE_FOR`` names the role it needs.
"""

from __future__ import annotations

import getpass
import os
from typing import TYPE_CHECKING, Any

import typer

from keyadmin.cli.render import say

if TYPE_CHECKING:
    from keyadmin.device.interaction import Interaction
    from keyadmin.device.session import DeviceSession

OPERATOR_OPT = typer.Option(
    None,
    "--operator",
    envvar="KEYADMIN_OPERATOR",
    help="The operator acting (default: the login name); proven by --operator-device or a "
    "session (keyadmin operator login), never by the name alone.",
)
OPERATOR_DEVICE_OPT = typer.Option(
    None,
    "--operator-device",
    envvar="KEYADMIN_OPERATOR_DEVICE",
    help="The operator's own key (hid:, nfc:, sim:): its UV assertion authorizes this command.",
)

LAB_NOTICE = (
    "lab mode: no operator is bootstrapped, authority is not provable "
    "(keyadmin operator bootstrap USER)"
)


def operator_name(operator: str | None) -> str:
    """The claimed name: --operator, else $KEYADMIN_OPERATOR, else the login name."""
    return operator or os.environ.get("KEYADMIN_OPERATOR") or getpass.getuser()


def _only_configured(operator_device: str) -> bool:
    """The device came from the configuration file, not the command line or environment."""
    from keyadmin.settings import load

    configured = load().operator_device
    return configured == operator_device and not os.environ.get("KEYADMIN_OPERATOR_DEVICE")


def authorize_cli(
    url: str,
    action: str,
    args: dict[str, Any],
    operator: str | None,
    operator_device: str | None,
    interaction: Interaction | None = None,
) -> Any:
    """Authorize ``action`` (keyadmin.flows.authority.authorize); says how on stderr.
    Pass one ``interaction`` to several calls of one command to ask the PIN once."""
    from keyadmin.cli.device import _session
    from keyadmin.cli.interact import CliInteraction
    from keyadmin.flows.authority import authorize

    name = operator_name(operator)

    def open_device() -> DeviceSession:
        say(f"Operator {name}: authorize {action} with your own key (your PIN)")
        return _session(operator_device)

    authority = None
    if operator_device and _only_configured(operator_device) and action != "operator.login":
        # the configuration file's operator_device is for logging in: a live session is used
        # first (the key is asked for when there is none)
        from keyadmin.flows.authority import NotAuthorized, session_file

        if session_file(url).is_file():
            try:
                authority = authorize(url, action, args, operator=name, open_device=None,
                                      interaction=None)  # fmt: skip
            except NotAuthorized:
                authority = None
    if authority is None:
        authority = authorize(
            url,
            action,
            args,
            operator=name,
            open_device=open_device if operator_device else None,
            interaction=interaction or CliInteraction(),
        )
    if authority.lab:
        say(LAB_NOTICE)
    else:
        how = f"session {authority.session}" if authority.session else "key"
        say(f"Authorized by operator {authority.operator} ({how})")
    return authority
