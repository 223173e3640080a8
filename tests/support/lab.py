"""A lab for enrolment tests: a software key with a PIN, the lab policy trusting its root, a
registry URL. Everything through the real CLI and the real flows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keyadmin.sim.authenticator import SoftKey

ROOT = Path(__file__).resolve().parents[2]
LAB_POLICY = ROOT / "policies" / "lab-softkey.toml"
PIN = "4821-lab"


@dataclass
class Lab:
    dir: Path
    db: str
    key_path: Path
    policy: Path

    @property
    def device(self) -> str:
        return f"sim:{self.key_path}"

    def key(self) -> SoftKey:
        return SoftKey.open(self.key_path)

    def credentials_on_key(self) -> int:
        return len(self.key().state.credentials)

    def enrol_args(self, user: str, *extra: str) -> list[str]:
        return [
            "enrol",
            user,
            "--policy",
            str(self.policy),
            "-d",
            self.device,
            "--db",
            self.db,
            *extra,
        ]

    def registry_rows(self) -> list[dict[str, Any]]:
        from keyadmin.store.db import sqlite_file
        from tests.e2e.cli import invoke

        path = sqlite_file(self.db)
        if path is not None and not path.exists():
            return []  # never made: nothing stored (a read command would refuse it)
        out = invoke("creds", "list", "--json", "--db", self.db)
        assert out.code == 0, out.stderr
        rows: list[dict[str, Any]] = json.loads(out.stdout)
        return rows


def make_lab(
    tmp: Path,
    db: str,
    *,
    key_options: dict[str, Any] | None = None,
    policy_edit: dict[str, str] | None = None,
    pin: str | None = PIN,
    name: str = "softkey.json",
) -> Lab:
    """A software key (with PIN) and a copy of the lab policy that trusts its root."""
    from fido2.ctap2 import ClientPin, Ctap2

    from keyadmin.sim.hid import open_hid

    tmp.mkdir(parents=True, exist_ok=True)
    key_path = tmp / name
    key = SoftKey.create(key_path, **(key_options or {}))
    if pin:
        ClientPin(Ctap2(open_hid(key))).set_pin(pin)
    (tmp / "lab-root.pem").write_text(key.root_certificate_pem())
    text = LAB_POLICY.read_text()
    for old, new in (policy_edit or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    policy = tmp / "lab-softkey.toml"
    policy.write_text(text)
    return Lab(tmp, db, key_path, policy)
