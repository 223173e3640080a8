"""Find and open FIDO devices: USB HID, PC/SC readers, and the software key.

``--device`` takes ``hid:PATH``, ``nfc:READER`` (a substring of the reader
name) or ``sim:STATEFILE``. With no selector, the one device present is used;
several is an error that lists them; none is an error that points to doctor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

from keyadmin.errors import DeviceError, UsageError

if TYPE_CHECKING:
    from fido2.ctap import CtapDevice

log = logging.getLogger(__name__)

NO_DEVICE_HINT = (
    "plug in a FIDO2 key (or put it on the NFC reader) and retry; run 'keyadmin doctor' "
    "to check USB permissions (udev/70-keyadmin-fido.rules) and the PC/SC service"
)

Transport = Literal["hid", "nfc", "sim"]
TRANSPORTS: tuple[Transport, ...] = get_args(Transport)


@dataclass(frozen=True)
class DeviceRef:
    transport: Transport
    path: str
    product: str | None
    aaguid: str | None = None

    @property
    def selector(self) -> str:
        return f"{self.transport}:{self.path}"


@dataclass(frozen=True)
class Selector:
    """A parsed ``--device`` value: the transport and what names the key on it (a hidraw
    path, a substring of the reader's name, a software key's state file)."""

    transport: Transport
    target: str

    @classmethod
    def parse(cls, text: str) -> Selector:
        kind, sep, rest = text.partition(":")
        for transport in TRANSPORTS:
            if sep and rest and kind == transport:
                return cls(transport, rest)
        raise UsageError(
            f"bad --device value {text!r}",
            hint="use hid:PATH, nfc:READER or sim:STATEFILE (see 'keyadmin device list')",
        )

    def __str__(self) -> str:
        return f"{self.transport}:{self.target}"


Opened = tuple[DeviceRef, "CtapDevice"]


def open_device(selector: str | Selector | None) -> Opened:
    """Open the selected device and return python-fido2's CtapDevice for it."""
    if selector is None:
        selector = Selector.parse(_the_one_device().selector)
    elif isinstance(selector, str):
        selector = Selector.parse(selector)
    return OPENERS[selector.transport](selector.target)


def _the_one_device() -> DeviceRef:
    """The only FIDO device present; none, several, or one this user cannot open: an error."""
    found = list_devices()
    hidden = unreadable_fido_nodes()
    if hidden:
        # python-fido2 skips a FIDO node it cannot open: with one key readable and one
        # not, choosing "the one device" could act on the wrong key. Never guess.
        paths = ", ".join(hidden)
        raise DeviceError(
            f"a FIDO key at {paths} cannot be opened by this user"
            + (f", besides {len(found)} that can" if found else ""),
            hint="install the udev rule (keyadmin doctor says how), or choose a key with "
            "--device",
        )
    if not found:
        raise DeviceError("no FIDO device found", hint=NO_DEVICE_HINT)
    if len(found) > 1:
        names = "; ".join(f"{d.selector} ({d.product or 'unknown'})" for d in found)
        raise DeviceError(
            f"{len(found)} FIDO devices found: {names}",
            hint="choose one with --device",
        )
    return found[0]


def _open_sim(state_file: str) -> Opened:
    """The software key (keyadmin.sim) over its in-process CTAPHID transport."""
    from keyadmin.device.softkey import open_softkey

    return open_softkey(state_file)


def _open_hid(path: str) -> Opened:
    import os
    import stat

    from fido2.hid import open_device as open_hid_path

    try:  # a hidraw node is a character device; opening a fifo would wait for a writer
        if not stat.S_ISCHR(os.stat(path).st_mode):
            raise DeviceError(
                f"{path} is not a device node", hint="keyadmin device list shows the keys"
            )
    except OSError as e:
        raise DeviceError(f"cannot open {path}: {e.strerror}", hint=NO_DEVICE_HINT) from None
    try:
        dev = open_hid_path(path)
    except OSError as e:
        raise DeviceError(f"cannot open {path}: {e.strerror or e}", hint=NO_DEVICE_HINT) from None
    except ValueError:  # python-fido2: "Not a FIDO device" (a keyboard's node, say)
        raise DeviceError(
            f"{path} is not a FIDO security key", hint="keyadmin device list shows the keys"
        ) from None
    return DeviceRef("hid", path, dev.product_name), dev


def _open_nfc(reader: str) -> Opened:
    try:
        from fido2.pcsc import CtapPcscDevice
    except ImportError:
        raise DeviceError(
            "PC/SC support is not installed",
            hint="install the extra: pip install 'keyadmin[pcsc]' (needs pcscd and libpcsclite)",
        ) from None
    devs = list(CtapPcscDevice.list_devices(reader))
    if not devs:
        raise DeviceError(f"no FIDO card on a reader matching {reader!r}", hint=NO_DEVICE_HINT)
    if len(devs) > 1:
        raise DeviceError(f"several readers match {reader!r}", hint="give more of the reader name")
    dev = devs[0]
    name = getattr(dev, "_name", reader)
    return DeviceRef("nfc", name, None), dev


#: how each transport is opened, from the selector's target
OPENERS: dict[Transport, Callable[[str], Opened]] = {
    "hid": _open_hid,
    "nfc": _open_nfc,
    "sim": _open_sim,
}


def unreadable_fido_nodes() -> list[str]:
    """hidraw nodes whose report descriptor says FIDO but which this user cannot open."""
    from keyadmin.device import hidraw

    return [n.path for n in hidraw.scan() if n.is_fido and not n.accessible]


def list_devices() -> list[DeviceRef]:
    """Every FIDO device on USB HID and on PC/SC readers (software keys are opened by path)."""
    found: list[DeviceRef] = []
    from fido2.hid import list_descriptors

    for desc in list_descriptors():
        found.append(DeviceRef("hid", str(desc.path), desc.product_name))
    try:
        from fido2.pcsc import CtapPcscDevice
    except ImportError:
        return found
    try:
        for dev in CtapPcscDevice.list_devices():
            found.append(DeviceRef("nfc", getattr(dev, "_name", "?"), None))
            dev.close()
    except Exception as e:  # noqa: BLE001 - no PC/SC service means no NFC devices
        log.debug("PC/SC listing failed: %r", e)
    return found


def with_aaguid(ref: DeviceRef) -> DeviceRef:
    """The same reference with the AAGUID the device reports (None when it does not answer)."""
    from dataclasses import replace

    try:
        _, dev = open_device(ref.selector)
    except Exception as e:  # noqa: BLE001 - a listing never fails on one bad device
        log.debug("cannot open %s: %r", ref.selector, e)
        return ref
    try:
        from fido2.ctap2 import Ctap2

        return replace(ref, aaguid=str(Ctap2(dev).info.aaguid))
    except Exception as e:  # noqa: BLE001
        log.debug("getInfo failed on %s: %r", ref.selector, e)
        return ref
    finally:
        dev.close()
