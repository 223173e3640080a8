"""A reference web step-up: a dangerous action ("delete tenant 42") that runs only after the
signed-in administrator proves, in the browser, that they hold their enrolled key and its PIN.

Standard library web server plus keyadmin's own step-up API (keyadmin.stepup.begin/finish):
the same registry as the CLI, so web and CLI step-ups share one counter and one log. After a
step-up the page renders the signed receipt, which `keyadmin receipt verify` checks.

    KEYADMIN_RECEIPT_PASSPHRASE=… python examples/webstepup/app.py \\
        --db sqlite:///registry.db --policy policies/prod.toml --user alice \\
        --receipt-key receipt-key.pem --port 8080

The page must be served from one of the policy's [relying_party] origins (the browser signs
the origin it shows). Sign-in is the application's own business: this example treats
--user as the administrator already signed in (call begin only for an authenticated user).
See README.md beside this file.
"""

from __future__ import annotations

import argparse
import html
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from keyadmin.errors import KeyadminError
from keyadmin.policy import load_policy
from keyadmin.stepup import (
    ChallengeRefused,
    ReceiptSigner,
    StepUpRefused,
    UserVerificationMissing,
    begin,
    finish,
)

ACTION = "delete tenant 42"
MAX_BODY = 64 * 1024

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>Tenant administration</title>
<h1>Tenant 42</h1>
<p>Signed in as <b>%(user)s</b>.</p>
<button id="go" onclick="stepUp()">Delete tenant 42</button>
<pre id="out"></pre>
<script>
const ACTION = %(action)s;
const post = (url, body) => fetch(url, {method: "POST",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
// Asks the key (UV: its PIN), then keyadmin verifies; returns what the server said.
async function stepUp() {
  const out = document.getElementById("out");
  const b = await post("/stepup/begin", {action: ACTION});
  const ch = await b.json();
  if (!b.ok) { out.textContent = "refused: " + ch.error; return {status: b.status, body: ch}; }
  const cred = await navigator.credentials.get(
      {publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(ch.options)});
  const credential = cred.toJSON();
  const f = await post("/stepup/finish",
      {challenge_id: ch.challenge_id, action: ACTION, credential: credential});
  const done = await f.json();
  out.textContent = f.ok
      ? "Tenant 42 deleted. Receipt (keyadmin receipt verify):\\n" + done.receipt
      : "refused: " + done.error;
  return {status: f.status, body: done, challenge_id: ch.challenge_id, credential: credential};
}
</script>
"""


class StepUpApp:
    def __init__(self, db: str, policy: Path, user: str, receipt_key: Path) -> None:
        self.db = db
        self.policy = load_policy(policy)
        self.user = user
        passphrase = os.environ.get("KEYADMIN_RECEIPT_PASSPHRASE")
        self.signer = ReceiptSigner.load(
            receipt_key, passphrase.encode("utf-8") if passphrase is not None else None
        )
        # A policy that requires metadata re-checks the key's model against it at every
        # step-up: finish() needs the registry's metadata index then, or it refuses.
        self.metadata = None
        if self.policy.metadata.required:
            from keyadmin.policy.metadata import IndexMetadata
            from keyadmin.store.mds_index import MdsIndex

            self.metadata = IndexMetadata(MdsIndex(db))

    def page(self) -> str:
        return PAGE % {"user": html.escape(self.user), "action": json.dumps(ACTION)}

    def begin(self, body: dict[str, Any], origin: str) -> dict[str, Any]:
        ch = begin(self.db, self.policy, user=self.user, action=str(body.get("action", "")),
                   origin=origin)  # fmt: skip
        return {"challenge_id": ch.challenge_id, "options": ch.options}

    def finish(self, body: dict[str, Any]) -> dict[str, Any]:
        action = str(body.get("action", ""))
        result = finish(
            self.db,
            self.policy,
            challenge_id=str(body.get("challenge_id", "")),
            action=action,
            response=body.get("credential") or {},
            metadata=self.metadata,
            actor=f"web:{self.user}",
        )
        # The dangerous action runs here, only now that the step-up is committed.
        lifetime = self.policy.step_up.receipt_lifetime_seconds
        receipt = self.signer.issue_for(result, lifetime_seconds=lifetime)
        return {"done": action, "counter": result.counter, "receipt": receipt}


def handler(app: StepUpApp, origin: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: str, kind: str = "application/json") -> None:
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", kind + "; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path != "/":
                self._send(404, json.dumps({"error": "not found"}))
                return
            self._send(200, app.page(), "text/html")

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._send(413, json.dumps({"error": "request too large"}))
                return
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("not an object")
            except ValueError:
                self._send(400, json.dumps({"error": "not JSON"}))
                return
            try:
                if self.path == "/stepup/begin":
                    out = app.begin(body, origin)
                elif self.path == "/stepup/finish":
                    out = app.finish(body)
                else:
                    self._send(404, json.dumps({"error": "not found"}))
                    return
            except ChallengeRefused as e:  # replayed, used, expired; a cloned key
                self._send(409, json.dumps({"error": e.message, "exit_code": e.exit_code}))
                return
            except (StepUpRefused, UserVerificationMissing) as e:
                self._send(403, json.dumps({"error": e.message, "exit_code": e.exit_code}))
                return
            except KeyadminError as e:  # every other declared refusal
                self._send(400, json.dumps({"error": e.message, "exit_code": e.exit_code}))
                return
            self._send(200, json.dumps(out))

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # no request log: the registry's log is the record

    return Handler


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True, help="the registry URL (the CLI's --db)")
    p.add_argument("--policy", required=True, type=Path)
    p.add_argument("--user", required=True, help="the signed-in administrator")
    p.add_argument("--receipt-key", required=True, type=Path)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--origin", help="the origin the page is served at (default: the "
                   "policy's first)")  # fmt: skip
    a = p.parse_args()
    app = StepUpApp(a.db, a.policy, a.user, a.receipt_key)
    origin = a.origin or app.policy.relying_party.origins[0]
    server = ThreadingHTTPServer((a.host, a.port), handler(app, origin))
    print(f"ready {origin}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
