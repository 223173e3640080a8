"""Opening the software key (keyadmin.sim) as a device: the one module of device/ that
imports it, and only when a ``sim:`` selector is opened."""

from __future__ import annotations

from typing import TYPE_CHECKING

from keyadmin.errors import DeviceError, StateFileError

if TYPE_CHECKING:
    from keyadmin.device.discovery import Opened


def open_softkey(state_file: str) -> Opened:
    """The software key kept in ``state_file``, over its in-process CTAPHID transport."""
    from keyadmin.device.discovery import DeviceRef
    from keyadmin.sim.authenticator import SoftKey
    from keyadmin.sim.hid import open_hid

    try:
        key = SoftKey.open(state_file)
    except StateFileError as e:
        raise DeviceError(e.message, hint=e.hint) from None
    return DeviceRef("sim", state_file, key.product_name), open_hid(key, state_file)
