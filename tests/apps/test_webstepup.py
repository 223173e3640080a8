"""The reference web step-up (examples/webstepup) in headless chromium: the page's own
script asks the virtual authenticator (holding the software key's credential) and keyadmin's
step-up API verifies; accepted once, a replay refused, a receipt `keyadmin receipt verify`
accepts, and the counter and log shared with the CLI."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.apps.cdp import Browser, VirtualAuthenticator, free_port
from tests.apps.conftest import ROOT, Server
from tests.apps.site import RECEIPT_PASS, Site, localhost_lab
from tests.e2e.cli import invoke
from tests.support.lab import PIN

APP = ROOT / "examples" / "webstepup" / "app.py"
ACTION = "delete tenant 42"
# The same assertion again, with the page's own post(): for its own (used) challenge, and
# for a fresh one.
REPLAY = """
(async () => {
  const again = await post("/stepup/finish", {challenge_id: %(id)s, action: %(action)s,
                                              credential: %(cred)s});
  const b = await post("/stepup/begin", {action: %(action)s});
  const fresh = (await b.json()).challenge_id;
  const other = await post("/stepup/finish", {challenge_id: fresh, action: %(action)s,
                                              credential: %(cred)s});
  return [again.status, await again.json(), other.status, await other.json()];
})()
"""


@pytest.fixture
def site(tmp_path: Path, browser: Browser) -> Iterator[Site]:
    port = free_port()
    lab = localhost_lab(tmp_path / "lab", f"sqlite:///{tmp_path / 'registry.db'}", port)
    out = invoke(*lab.enrol_args("alice"), input=f"{PIN}\n")
    assert out.code == 0, out.stderr
    key = tmp_path / "receipt-key.pem"
    made = invoke("receipt", "keygen", "--receipt-key", str(key), input=f"{RECEIPT_PASS}\n")
    assert made.code == 0, made.stderr
    server = Server(
        [
            sys.executable, str(APP), "--db", lab.db, "--policy", str(lab.policy),
            "--user", "alice", "--receipt-key", str(key), "--port", str(port),
        ],
        port,
        env={"KEYADMIN_RECEIPT_PASSPHRASE": RECEIPT_PASS},
    )  # fmt: skip
    try:
        yield Site(lab, "", Path(), server, browser, tmp_path, "alice")
    finally:
        server.stop()


def test_web_step_up_once_replay_refused_receipt_verifies(
    site: Site, authenticator: VirtualAuthenticator
) -> None:
    cred = site.exported()
    authenticator.add(cred)
    enrolled = site.registry_count()

    done = site.page("stepUp()")  # the page's own button handler
    assert done["status"] == 200, done
    assert done["body"]["done"] == ACTION and done["body"]["counter"] == enrolled + 1
    shown = site.browser.evaluate("document.getElementById('out').textContent")
    receipt = done["body"]["receipt"]
    assert shown.startswith("Tenant 42 deleted.") and receipt in shown

    ok = invoke(
        "receipt", "verify", receipt, "--action", ACTION,
        "--receipt-key", str(site.tmp / "receipt-key.pem"), "--json",
    )  # fmt: skip
    assert ok.code == 0, ok.stderr
    assert json.loads(ok.stdout)["counter"] == enrolled + 1

    replay = REPLAY % {
        "id": json.dumps(done["challenge_id"]),
        "action": json.dumps(ACTION),
        "cred": json.dumps(done["credential"]),
    }
    used_status, used, other_status, other = site.browser.evaluate(replay)
    assert used_status == 409 and used["exit_code"] == 6, used
    assert other_status == 409 and other["exit_code"] == 6, other
    assert site.registry_count() == enrolled + 1  # nothing more was accepted

    # one counter and one log with the CLI: the software key (same credential) steps up next
    site.adopt_counter(authenticator.sign_count(cred["credentialId"]))
    step = site.step_up()
    assert step.code == 0, step.stderr
    assert json.loads(step.stdout)["previous_counter"] == enrolled + 1
    log = json.loads(invoke("log", "show", "--json", "--db", site.lab.db).stdout)
    actions = [(r["action"], r["actor"]) for r in log if r["action"].startswith("stepup.")]
    assert ("stepup.ok", "web:alice") in actions
    assert any(a == "stepup.replay" for a, _ in actions), actions
    assert [a for a, _ in actions].count("stepup.ok") == 2
