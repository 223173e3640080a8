"""The one helper every privileged command calls.

Wiring a command: add ``operator: OperatorOpt = None, operator_device: OperatorDeviceOpt =
None`` (keyadmin.cli.options) to its parameters and call ``authorize_cli(url, ACTION, ARGS,
operator, operator_device)`` before it changes anything; put ``authority.evidence`` into its
log row's details under ``authority``. ``keyadmin.flows.authority.ROLE_FOR`` names the role
it needs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from keyadmin.cli.options import operator_name
from keyadmin.cli.render import say

if TYPE_CHECKING:
    from keyadmin.device.interaction import Interaction
    from keyadmin.device.session import DeviceSession
    from keyadmin.flows.authority import Authority

LAB_NOTICE = (
    "lab mode: no operator is bootstrapped, authority is not provable "
    "(keyadmin operator bootstrap USER)"
)


def _only_configured(operator_device: str) -> bool:
    """The device came from the configuration file, not the command line or environment."""
    from keyadmin.settings import load

    configured = load().operator_device
    return configured == operator_device and not os.environ.get("KEYADMIN_OPERATOR_DEVICE")


def authorize_cli(
    url: str,
    action: str,
    args: Mapping[str, object],
    operator: str | None,
    operator_device: str | None,
    interaction: Interaction | None = None,
) -> Authority:
    """Authorize ``action`` (keyadmin.flows.authority.authorize); says how on stderr.
    Pass one ``interaction`` to several calls of one command to ask the PIN once."""
    from keyadmin.cli.device import _session
    from keyadmin.cli.interact import CliInteraction
    from keyadmin.flows.authority import authorize

    name = operator_name(operator)
    args = dict(args)

    def open_device() -> DeviceSession:
        say(f"Operator {name}: authorize {action} with your own key (your PIN)")
        session: DeviceSession = _session(operator_device)
        return session

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
