"""keyadmin doctor: is this station able to talk to keys, metadata and the database?

Every check returns a Check with a status and, when it is not ok, the exact fix.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

UDEV_RULE = "udev/70-keyadmin-fido.rules"
UDEV_FIX = (
    f"sudo install -m 0644 {UDEV_RULE} /etc/udev/rules.d/ && "
    "sudo udevadm control --reload-rules && sudo udevadm trigger --subsystem-match=hidraw"
)
PCSCD_SOCKET = Path("/run/pcscd/pcscd.comm")


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok", "warn" or "fail"
    detail: str
    fix: str | None = None


@dataclass(frozen=True)
class DoctorReport:
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)


def check_hidraw() -> list[Check]:
    from keyadmin.device.hidraw import scan

    nodes = scan()
    fido = [n for n in nodes if n.is_fido]
    if not nodes:
        return [
            Check("usb-hid", "warn", "no hidraw devices on this machine (no USB key plugged in)")
        ]
    blocked = [n.path for n in fido if not n.accessible]
    checks = []
    if blocked:
        checks.append(
            Check(
                "usb-hid",
                "fail",
                f"FIDO device(s) this user cannot open: {', '.join(blocked)} "
                "(python-fido2 skips them silently)",
                fix=UDEV_FIX,
            )
        )
    elif fido:
        checks.append(Check("usb-hid", "ok", f"{len(fido)} FIDO HID device(s), all accessible"))
    else:
        checks.append(Check("usb-hid", "warn", f"{len(nodes)} hidraw device(s), none is FIDO"))
    unknown = [n.path for n in nodes if not n.descriptor_readable]
    if unknown:
        checks.append(
            Check("usb-hid-descriptors", "warn", f"cannot read report descriptors of {unknown}")
        )
    return checks


def check_pcsc() -> list[Check]:
    try:
        from smartcard.System import readers
    except ImportError:
        return [
            Check(
                "pcsc",
                "warn",
                "PC/SC support (pyscard) is not installed: NFC readers are invisible",
                fix="pip install 'keyadmin[pcsc]' (needs: apt-get install swig libpcsclite-dev)",
            )
        ]
    socket_path = Path(os.environ.get("PCSCLITE_CSOCK_NAME", str(PCSCD_SOCKET)))
    if not _socket_answers(socket_path):
        return [
            Check(
                "pcsc",
                "fail",
                f"pcscd is not running (no answer on {socket_path})",
                fix="sudo apt-get install pcscd && sudo systemctl enable --now pcscd.socket",
            )
        ]
    try:
        names = [str(r) for r in readers()]
    except Exception as e:  # noqa: BLE001 - any PC/SC failure is reported, not raised
        return [Check("pcsc", "fail", f"pcscd answered but listing readers failed: {e}")]
    if not names:
        return [Check("pcsc", "warn", "pcscd runs but no reader is connected")]
    return [Check("pcsc", "ok", f"pcscd runs; readers: {', '.join(names)}")]


def _socket_answers(path: Path) -> bool:
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def check_database(url: str) -> list[Check]:
    from keyadmin.store.mds_index import sqlite_path

    path = sqlite_path(url)
    if path is None:
        try:
            from keyadmin.store.db import ping

            ping(url)
        except Exception as e:  # noqa: BLE001
            return [Check("database", "fail", f"cannot connect to {_redact(url)}: {e}")]
        return [Check("database", "ok", f"connected to {_redact(url)}")]
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o022:
            return [
                Check(
                    "database",
                    "fail",
                    f"{path} is writable by others (mode {mode:o}); keyadmin refuses it",
                    fix=f"check it was not changed, then chmod 600 {path}",
                )
            ]
        if mode & 0o077:
            return [
                Check(
                    "database",
                    "warn",
                    f"{path} is readable by others (mode {mode:o})",
                    fix=f"chmod 600 {path}",
                )
            ]
        return [Check("database", "ok", f"SQLite registry at {path}")]
    if os.access(path.parent, os.W_OK) or not path.parent.exists():
        return [Check("database", "ok", f"SQLite registry will be created at {path}")]
    return [Check("database", "fail", f"cannot create {path}: directory not writable")]


def check_metadata(url: str) -> list[Check]:
    from keyadmin.store.mds_index import MdsIndex

    try:
        snap = MdsIndex(url).current_snapshot()
    except Exception as e:  # noqa: BLE001
        return [Check("metadata", "fail", f"cannot read the metadata index: {e}")]
    if snap is None:
        return [
            Check(
                "metadata",
                "fail",
                "no FIDO metadata loaded",
                fix="keyadmin mds update (online) or keyadmin mds import FILE (offline)",
            )
        ]
    from datetime import UTC, datetime

    from keyadmin.mds.freshness import configured_grace, evaluate

    fresh = evaluate(snap, datetime.now(UTC), configured_grace())
    what = (
        f"no. {snap.no} from {snap.source}, {snap.entry_count} entries "
        f"({snap.skipped_count} skipped), {'signed' if snap.signed else 'UNSIGNED'}, "
        f"nextUpdate {snap.next_update}"
    )
    if not fresh.fresh:
        return [
            Check(
                "metadata",
                "fail",
                f"metadata is stale ({fresh.overdue_days} day(s) past its grace): {what}",
                fix="keyadmin mds update (online) or keyadmin mds import FILE (offline)",
            )
        ]
    status = "ok" if snap.signed else "warn"
    return [Check("metadata", status, what)]


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def run_doctor(database_url: str, transport: str = "all") -> DoctorReport:
    """``transport``: "usb" checks USB HID only, "nfc" PC/SC only, "all" both."""
    checks: list[Check] = []
    if transport in ("usb", "all"):
        checks += check_hidraw()
    if transport in ("nfc", "all"):
        checks += check_pcsc()
    checks += check_database(database_url)
    checks += check_metadata(database_url)
    return DoctorReport(checks)
