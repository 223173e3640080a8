"""keyadmin doctor: check that this station can reach keys, readers, the database and metadata."""

from __future__ import annotations

import typer

from keyadmin.cli.options import DbOpt, JsonOpt
from keyadmin.cli.render import emit_json, out


def doctor(
    db: DbOpt = None,
    transport: str = typer.Option(
        "all",
        "--transport",
        help="usb (a USB-only station: pcscd is not checked), nfc (PC/SC only), or all.",
    ),
    json_out: JsonOpt = False,
) -> None:
    """Check USB HID access (udev), pcscd and readers, the database and the metadata.

    Each problem comes with the exact command that fixes it. Exit 1 when a check fails.
    A station that only uses USB keys passes --transport usb: pcscd is then not checked.

    Example: keyadmin doctor --transport usb --json
    """
    from keyadmin.config import database_url
    from keyadmin.errors import UsageError
    from keyadmin.flows.doctor import run_doctor

    if transport not in ("usb", "nfc", "all"):
        raise UsageError(f"unknown --transport {transport!r}", hint="one of usb, nfc, all")
    report = run_doctor(database_url(db, create=True), transport=transport)  # it says if missing
    if json_out:
        emit_json({"ok": report.ok, "checks": report.checks})
    else:
        marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
        for c in report.checks:
            out(f"[{marks[c.status]}] {c.name}: {c.detail}\n")
            if c.fix:
                out(f"       fix: {c.fix}\n")
    if not report.ok:
        raise typer.Exit(1)
