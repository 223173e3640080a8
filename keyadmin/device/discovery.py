"""Find and open FIDO devices: USB HID, PC/SC readers, and the software key.

``--device`` takes ``hid:PATH``, ``nfc:READER`` (a substring of the reader
name) or ``sim:STATEFILE``. With no selector, the one device present is used;
several is an error that lists them; none is an error that points to doctor.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from keyadmin.errors import DeviceError, UsageError

log = logging.getLogger(__name__)

NO_DEVICE_HINT = (
    "plug in a FIDO2 key (or put it on the NFC reader) and retry; run 'keyadmin doctor' "
    "to check USB permissions (udev/70-keyadmin-fido.rules) and the PC/SC service"
)


@dataclass(frozen=True)
class DeviceRef:
    transport: str  # "hid", "nfc" or "sim"
    path: str
    product: str | None
    aaguid: str | None = None

    @property
    def selector(self) -> str:
        return f"{self.transport}:{self.path}"


def parse_selector(selector: str) -> tuple[str, str]:
    kind, sep, rest = selector.partition(":")
    if not sep or kind not in ("hid", "nfc", "sim") or not rest:
        raise UsageError(
            f"bad --device value {selector!r}",
            hint="use hid:PATH, nfc:READER or sim:STATEFILE (see 'keyadmin device list')",
        )
    return kind, rest


def open_device(selector: str | None) -> tuple[DeviceRef, Any]:
    """Open the selected device and return python-fido2's CtapDevice for it."""
    if selector is None:
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
        selector = found[0].selector
    kind, rest = parse_selector(selector)
    if kind == "sim":
        from keyadmin.errors import StateFileError
        from keyadmin.sim.authenticator import SoftKey
        from keyadmin.sim.hid import open_hid

        try:
            key = SoftKey.open(rest)
        except StateFileError as e:
            raise DeviceError(e.message, hint=e.hint) from None
        return DeviceRef("sim", rest, key.product_name), open_hid(key, rest)
    if kind == "hid":
        import os
        import stat

        from fido2.hid import open_device as open_hid_path

        try:  # a hidraw node is a character device; opening a fifo would wait for a writer
            if not stat.S_ISCHR(os.stat(rest).st_mode):
                raise DeviceError(
                    f"{rest} is not a device node", hint="keyadmin device list shows the keys"
                )
        except OSError as e:
            raise DeviceError(f"cannot open {rest}: {e.strerror}", hint=NO_DEVICE_HINT) from None
        try:
            dev = open_hid_path(rest)
        except OSError as e:
            raise DeviceError(
                f"cannot open {rest}: {e.strerror or e}", hint=NO_DEVICE_HINT
            ) from None
        except ValueError:  # python-fido2: "Not a FIDO device" (a keyboard's node, say)
            raise DeviceError(
                f"{rest} is not a FIDO security key", hint="keyadmin device list shows the keys"
            ) from None
        return DeviceRef("hid", rest, dev.product_name), dev
    return _open_nfc(rest)


def _open_nfc(reader: str) -> tuple[DeviceRef, Any]:
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
