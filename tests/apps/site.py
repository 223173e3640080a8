"""What every tests/apps application test does on keyadmin's side: a lab whose policy names
rpId localhost and the application's origin, `keyadmin sync` with the application's preset,
the software key's credential exported for the browser, a step-up with the software key."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.apps.cdp import Browser
from tests.apps.conftest import Server, app_python
from tests.e2e.cli import invoke
from tests.support.lab import PIN, Lab, make_lab

RECEIPT_PASS = "receipt-pass-1"
PASSWORD = "lab password 4821"
#: The page scripts' helper: POST a JSON body to the application, asking for JSON.
POST_JSON = """
const post = (url, body) => fetch(url, {method: "POST",
    headers: {"Content-Type": "application/json", "Accept": "application/json"},
    body: JSON.stringify(body)});
"""


def localhost_lab(tmp: Path, db: str, port: int, name: str = "softkey.json") -> Lab:
    """The lab policy for rpId localhost and the application's origin http://localhost:PORT."""
    return make_lab(
        tmp,
        db,
        policy_edit={
            'rp_id = "example.com"': 'rp_id = "localhost"',
            'origins = ["https://example.com"]': f'origins = ["http://localhost:{port}"]',
        },
        name=name,
    )


def run_app(app: str, script: Path, *args: str) -> str:
    """One command of an application's lab script, in the application's own venv."""
    done = subprocess.run(
        [str(app_python(app)), str(script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


@dataclass
class Site:
    lab: Lab
    target: str
    preset: Path
    server: Server
    browser: Browser
    tmp: Path
    user: str

    def sync(self) -> dict[str, Any]:
        out = invoke(
            "sync", "--target", self.target, "--mapping", str(self.preset), "--db", self.lab.db,
            "--json",
        )  # fmt: skip
        assert out.code == 0, out.stderr
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    def exported(self) -> dict[str, Any]:
        """The software key's credential for localhost, private key included (lab only)."""
        out = invoke(
            "sim", "export-credentials", "--state", str(self.lab.key_path), "--rp-id", "localhost"
        )
        assert out.code == 0, out.stderr
        assert "lab use only" in out.stderr
        creds: list[dict[str, Any]] = json.loads(out.stdout)
        assert len(creds) == 1
        return creds[0]

    def page(self, script: str) -> dict[str, Any]:
        """Run a sign-in script in a page of the application's origin."""
        self.browser.navigate(self.server.origin + "/")
        result: dict[str, Any] = self.browser.evaluate(script)
        return result

    def registry_count(self) -> int:
        rows = self.lab.registry_rows()
        assert len(rows) == 1
        return int(rows[0]["sign_count"])

    def adopt_counter(self, count: int) -> None:
        """The browser's virtual authenticator and the software key are one key in this lab:
        the counter the browser advanced is the software key's too (lab-only state edit)."""
        from keyadmin.sim.authenticator import SoftKey
        from keyadmin.sim.state import save_state

        key = SoftKey.open(self.lab.key_path)
        (cred,) = key.state.credentials
        cred.uses = cred.counter = count
        save_state(self.lab.key_path, key.state)

    def step_up(self) -> Any:
        key = self.tmp / "receipt-key.pem"
        if not key.exists():
            made = invoke("receipt", "keygen", "--receipt-key", str(key), input=f"{RECEIPT_PASS}\n")
            assert made.code == 0, made.stderr
        return invoke(
            "step-up", self.user, "--action", "wire-transfer", "--policy", str(self.lab.policy),
            "-d", self.lab.device, "--receipt-key", str(key), "--db", self.lab.db, "--json",
            input=f"{RECEIPT_PASS}\n{PIN}\n",
        )  # fmt: skip
