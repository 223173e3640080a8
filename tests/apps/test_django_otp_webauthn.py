"""django-otp-webauthn's own sign-in code accepts what keyadmin approved and synced.

The application is Django with django-otp-webauthn 0.10.x, unmodified: its own migrations on
the private PostgreSQL server (tests/support/postgres.py), its own passwordless
authentication/begin and authentication/complete endpoints, in its own venv
(.venv-apps/django). Its user is created through Django's user manager. keyadmin enrols the
software key for that user, `keyadmin sync --mapping policies/apps/django-otp-webauthn.toml`
writes the credential (and the user's WebAuthn user-handle row), and headless chromium signs
in with the DevTools virtual authenticator holding the same credential.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.apps.cdp import Browser, VirtualAuthenticator, free_port
from tests.apps.conftest import ROOT, Server, app_python
from tests.apps.site import PASSWORD, POST_JSON, Site, localhost_lab, run_app
from tests.e2e.cli import invoke
from tests.support.lab import PIN

APP = Path(__file__).with_name("django_app.py")
PRESET = ROOT / "policies" / "apps" / "django-otp-webauthn.toml"
USER = "alice"

SIGN_IN = (
    POST_JSON
    + """
(async () => {
  const begin = await post("/webauthn/authentication/begin/", {});
  const opts = await begin.json();
  if (!begin.ok) return {stage: "begin", status: begin.status, body: opts};
  const cred = await navigator.credentials.get(
      {publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(opts)});
  const done = await post("/webauthn/authentication/complete/", cred.toJSON());
  return {stage: "finish", status: done.status, body: await done.json()};
})()
"""
)


class DjangoSite(Site):
    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        import psycopg

        url = self.target.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url) as c:
            return [tuple(r) for r in c.execute(query, params).fetchall()]  # type: ignore[arg-type]

    def app_row(self) -> tuple[Any, ...] | None:
        rows = self.sql(
            "SELECT c.sign_count, c.name, c.discoverable, c.confirmed, u.username, "
            "c.credential_id_sha256 FROM django_otp_webauthn_webauthncredential c "
            "JOIN auth_user u ON u.id = c.user_id"
        )
        return rows[0] if rows else None

    def sign_in(self) -> dict[str, Any]:
        self.browser.call("Network.clearBrowserCookies")  # a fresh session each time
        return self.page(SIGN_IN)


@pytest.fixture
def site(tmp_path: Path, browser: Browser, pg_url: str) -> Iterator[DjangoSite]:
    port = free_port()
    lab = localhost_lab(tmp_path / "lab", f"sqlite:///{tmp_path / 'registry.db'}", port)
    run_app("django", APP, "migrate", pg_url)  # the application's own migrations
    run_app("django", APP, "create-user", pg_url, USER, PASSWORD)  # its own user manager
    out = invoke(*lab.enrol_args(USER, "--nickname", "blue key"), input=f"{PIN}\n")
    assert out.code == 0, out.stderr
    server = Server([str(app_python("django")), str(APP), "serve", pg_url, str(port)], port)
    try:
        yield DjangoSite(lab, pg_url, PRESET, server, browser, tmp_path, USER)
    finally:
        server.stop()


def test_signs_in_through_the_applications_own_endpoints(
    site: DjangoSite, authenticator: VirtualAuthenticator
) -> None:
    import hashlib

    first = site.sync()
    assert first["inserted"] == 1 and first["unknown_users_count"] == 0, first
    assert first["user_handles_written"] == 1  # the user's WebAuthn user-handle row
    enrolled = site.registry_count()
    (reg,) = site.lab.registry_rows()
    count, name, discoverable, confirmed, username, digest = site.app_row()  # type: ignore[misc]
    assert (count, name, discoverable, confirmed, username) == (
        enrolled,
        "blue key",
        True,
        True,
        USER,
    )
    assert digest == hashlib.sha256(bytes.fromhex(reg["credential_id"])).hexdigest()
    ((handle,),) = site.sql("SELECT handle_hex FROM django_otp_webauthn_webauthnuserhandle")
    assert handle == reg["user_handle"]

    cred = site.exported()
    authenticator.add(cred)
    done = site.sign_in()
    assert done["stage"] == "finish" and done["status"] == 200, done
    browser_count = authenticator.sign_count(cred["credentialId"])
    assert browser_count == enrolled + 1
    assert site.app_row()[0] == browser_count  # type: ignore[index]

    pulled = site.sync()
    assert pulled["counters_pulled"] == 1 and pulled["tampering_count"] == 0, pulled
    assert site.registry_count() == browser_count
    site.adopt_counter(browser_count)
    step = site.step_up()
    assert step.code == 0, step.stderr
    result = json.loads(step.stdout)
    assert result["previous_counter"] == browser_count and result["counter"] > browser_count

    # a clone: the same private key with the counter left behind the application's
    authenticator.remove(cred["credentialId"])
    authenticator.add(cred, signCount=enrolled)
    refused = site.sign_in()
    assert refused["stage"] == "finish" and refused["status"] == 422, refused
    assert refused["body"]["code"] == "invalid_authentication_response", refused
    assert site.app_row()[0] == browser_count  # type: ignore[index]


def test_revoked_refused_after_sync_and_unknown_user_reported(
    site: DjangoSite, authenticator: VirtualAuthenticator
) -> None:
    bob = localhost_lab(site.tmp / "bob", site.lab.db, site.server.port, name="bob.json")
    out = invoke(*bob.enrol_args("bob"), input=f"{PIN}\n")
    assert out.code == 0, out.stderr
    first = site.sync()
    assert first["inserted"] == 1 and first["unknown_users_count"] == 1, first
    assert first["unknown_users"][0]["user"] == "bob"
    assert site.sql("SELECT count(*) FROM auth_user") == [(1,)]  # no user invented

    alice = next(r for r in site.lab.registry_rows() if r["user"] == USER)
    cred = site.exported()
    authenticator.add(cred)
    assert site.sign_in()["status"] == 200
    out = invoke(
        "creds", "revoke", str(alice["id"]), "--reason", "lost", "--force", "--db", site.lab.db
    )
    assert out.code == 0, out.stderr
    assert site.sync()["removed"] == 1
    again = site.sign_in()
    assert again["stage"] == "finish" and again["status"] == 404, again
    assert again["body"]["code"] == "credential_not_found"
    assert site.app_row() is None
