"""Flask-Security-Too's own sign-in code accepts what keyadmin approved and synced.

The application is Flask-Security-Too 5.9.x, unmodified (its fsqla_v3 models on SQLite, its
own /wan-signin endpoints), in its own venv (.venv-apps/flask). Its users are created through
its own datastore API. keyadmin enrols the software key for that user (with the user's own
WebAuthn user handle), `keyadmin sync --mapping policies/apps/flask-security.toml` writes the
credential, and headless chromium signs in through the application's endpoints with the
DevTools virtual authenticator holding the same credential (the software key's private key,
exported with the lab-only `keyadmin sim export-credentials`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.apps.cdp import Browser, VirtualAuthenticator, free_port
from tests.apps.conftest import ROOT, Server, app_python
from tests.apps.site import PASSWORD, POST_JSON, Site, localhost_lab, run_app
from tests.e2e.cli import invoke
from tests.support.lab import PIN

APP = Path(__file__).with_name("flask_app.py")
PRESET = ROOT / "policies" / "apps" / "flask-security.toml"
EMAIL = "alice@example.org"

SIGN_IN = (
    POST_JSON
    + """
(async () => {
  await post("/logout", {});  // a fresh session: each run signs in anew
  const begin = await post("/wan-signin", {identity: %(identity)s});
  const b = await begin.json();
  if (!begin.ok) return {stage: "begin", status: begin.status, body: b};
  let opts = b.response.credential_options;
  if (typeof opts === "string") opts = JSON.parse(opts);
  const cred = await navigator.credentials.get(
      {publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(opts)});
  const done = await post("/wan-signin/" + b.response.wan_state,
                          {credential: JSON.stringify(cred.toJSON())});
  return {stage: "finish", status: done.status, body: await done.json()};
})()
"""
)


class FlaskSite(Site):
    def app_row(self) -> tuple[Any, ...] | None:
        with sqlite3.connect(self.app_db) as c:
            row = c.execute(
                "SELECT w.sign_count, w.usage, w.name, w.user_id, u.email FROM web_authn w "
                "JOIN user u ON u.id = w.user_id"
            ).fetchone()
        return tuple(row) if row is not None else None

    @property
    def app_db(self) -> Path:
        return Path(self.target.removeprefix("sqlite:///"))

    def sign_in(self, identity: str = EMAIL) -> dict[str, Any]:
        return self.page(SIGN_IN % {"identity": json.dumps(identity)})


def _app(*args: str) -> str:
    return run_app("flask", APP, *args)


@pytest.fixture
def site(tmp_path: Path, browser: Browser) -> Iterator[FlaskSite]:
    port = free_port()
    lab = localhost_lab(tmp_path / "lab", f"sqlite:///{tmp_path / 'registry.db'}", port)
    app_db = tmp_path / "app.db"
    handle = _app("create-user", str(app_db), EMAIL, PASSWORD)  # the application's own API
    out = invoke(
        *lab.enrol_args(EMAIL, "--user-handle", handle, "--nickname", "blue key"),
        input=f"{PIN}\n",
    )
    assert out.code == 0, out.stderr
    server = Server([str(app_python("flask")), str(APP), "serve", str(app_db), str(port)], port)
    try:
        yield FlaskSite(lab, f"sqlite:///{app_db}", PRESET, server, browser, tmp_path, EMAIL)
    finally:
        server.stop()


def test_signs_in_through_the_applications_own_endpoints(
    site: FlaskSite, authenticator: VirtualAuthenticator
) -> None:
    first = site.sync()
    assert first["inserted"] == 1 and first["unknown_users_count"] == 0
    enrolled = site.registry_count()
    count, usage, name, _uid, email = site.app_row()  # type: ignore[misc]
    assert (count, usage, name, email) == (enrolled, "first", "blue key", EMAIL)

    cred = site.exported()
    assert cred["signCount"] == enrolled
    authenticator.add(cred)
    done = site.sign_in()
    assert done["stage"] == "finish" and done["status"] == 200, done
    browser_count = authenticator.sign_count(cred["credentialId"])
    assert browser_count == enrolled + 1
    assert site.app_row()[0] == browser_count  # type: ignore[index]  # the app advanced it

    pulled = site.sync()
    assert pulled["counters_pulled"] == 1 and pulled["tampering_count"] == 0, pulled
    assert site.registry_count() == browser_count

    site.adopt_counter(browser_count)
    step = site.step_up()
    assert step.code == 0, step.stderr
    result = json.loads(step.stdout)
    assert result["previous_counter"] == browser_count and result["counter"] > browser_count


def _signed_in(site: FlaskSite, authenticator: VirtualAuthenticator) -> dict[str, Any]:
    """Synced, the credential in the browser, one accepted sign-in; the exported credential."""
    site.sync()
    cred = site.exported()
    authenticator.add(cred)
    first = site.sign_in()
    assert first["status"] == 200, first
    return cred


def test_a_revoked_credential_is_refused_after_the_next_sync(
    site: FlaskSite, authenticator: VirtualAuthenticator
) -> None:
    _signed_in(site, authenticator)
    ref = site.lab.registry_rows()[0]["id"]
    out = invoke("creds", "revoke", str(ref), "--reason", "lost", "--force", "--db", site.lab.db)
    assert out.code == 0, out.stderr
    result = site.sync()
    assert result["removed"] == 1
    assert site.app_row() is None
    # the browser still holds the key and signs; the application no longer knows it
    again = site.sign_in()
    assert again["stage"] == "finish" and again["status"] == 400, again
    assert again["body"]["response"]["field_errors"]["credential"] == ["Unregistered passkey."]


def test_a_clone_below_the_applications_counter_is_refused(
    site: FlaskSite, authenticator: VirtualAuthenticator
) -> None:
    cred = _signed_in(site, authenticator)
    second = site.sign_in()
    assert second["status"] == 200, second
    app_count = site.app_row()[0]  # type: ignore[index]
    assert app_count == cred["signCount"] + 2
    # the clone: the same private key, its counter left behind the application's
    authenticator.remove(cred["credentialId"])
    authenticator.add(cred, signCount=cred["signCount"])
    refused = site.sign_in()
    assert refused["stage"] == "finish" and refused["status"] == 400, refused
    assert "sign count" in json.dumps(refused["body"]).lower(), refused
    assert site.app_row()[0] == app_count  # type: ignore[index]


def test_a_user_the_application_does_not_have_is_reported(site: FlaskSite) -> None:
    bob = "bob@example.org"
    other = localhost_lab(site.tmp / "bob", site.lab.db, site.server.port, name="bob.json")
    out = invoke(*other.enrol_args(bob, "--user-handle", "bob-handle-1"), input=f"{PIN}\n")
    assert out.code == 0, out.stderr
    result = site.sync()
    assert result["inserted"] == 1  # alice's
    assert result["unknown_users_count"] == 1
    (unknown,) = result["unknown_users"]
    assert unknown["user"] == bob and "no user" in unknown["reason"], unknown

    def counts() -> tuple[int, int]:
        with sqlite3.connect(site.app_db) as c:
            return (
                c.execute("SELECT count(*) FROM web_authn").fetchone()[0],
                c.execute("SELECT count(*) FROM user").fetchone()[0],
            )

    assert counts() == (1, 1)  # nothing written for bob, no user invented
    # reported again by the next run, although nothing changed in the registry
    assert site.sync()["unknown_users_count"] == 1

    # the application makes bob, with its own (other) WebAuthn user handle: its sign-in
    # would refuse keyadmin's credential, so sync still writes nothing for bob
    _app("create-user", str(site.app_db), bob, PASSWORD)
    mismatch = site.sync()
    assert mismatch["unknown_users_count"] == 1, mismatch
    assert "another WebAuthn user handle" in mismatch["unknown_users"][0]["reason"]
    assert counts() == (1, 2)

    # a user row without a handle (made before WebAuthn was on) gets keyadmin's
    with sqlite3.connect(site.app_db) as c:
        c.execute("UPDATE user SET fs_webauthn_user_handle = NULL WHERE email = ?", (bob,))
    done = site.sync()
    assert done["unknown_users_count"] == 0 and done["inserted"] == 1, done
    assert done["user_handles_written"] == 1
    with sqlite3.connect(site.app_db) as c:
        (h,) = c.execute(
            "SELECT fs_webauthn_user_handle FROM user WHERE email = ?", (bob,)
        ).fetchone()
    assert h == "bob-handle-1"
    assert counts() == (2, 2)
