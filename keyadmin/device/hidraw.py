"""Linux hidraw nodes, checked one by one.

python-fido2 silently skips hidraw nodes it cannot open, so a key without the
udev rule looks like "no key". This module finds every FIDO node (HID usage
page 0xF1D0 in its report descriptor) and says which ones this user cannot open.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

FIDO_USAGE_PAGE_ITEM = bytes([0x06, 0xD0, 0xF1])  # Usage Page (0xF1D0), 2-byte form


@dataclass(frozen=True)
class HidrawNode:
    path: str
    is_fido: bool
    accessible: bool
    descriptor_readable: bool


def is_fido_descriptor(descriptor: bytes) -> bool:
    return FIDO_USAGE_PAGE_ITEM in descriptor


def scan(
    sys_root: Path = Path("/sys/class/hidraw"), dev_root: Path = Path("/dev")
) -> list[HidrawNode]:
    nodes: list[HidrawNode] = []
    if not sys_root.is_dir():
        return nodes
    for entry in sorted(sys_root.iterdir()):
        desc_file = entry / "device" / "report_descriptor"
        try:
            descriptor = desc_file.read_bytes()
            readable = True
        except OSError:
            descriptor, readable = b"", False
        dev = dev_root / entry.name
        nodes.append(
            HidrawNode(
                path=str(dev),
                is_fido=is_fido_descriptor(descriptor),
                accessible=os.access(dev, os.R_OK | os.W_OK),
                descriptor_readable=readable,
            )
        )
    return nodes
