"""Terminal injection (adversarial review, item 2): text from the key, from operators and user
names reaches the terminal escaped; control, bidi and zero-width characters are refused in
user names; JSON output stays exact."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest

from tests.e2e.cli import invoke
from tests.integration.test_stepup_support import PIN, Lab, make_lab, open_session

# A screen clear, a title change (OSC ... BEL), an 8-bit CSI, a right-to-left override and a
# zero-width space.
NASTY = "x\x1b[2J\x1b]0;pwned\x07\x9b31m\u202egnp.exe\u200by"


def raw_controls(text: str) -> list[str]:
    """Characters that would act on a terminal instead of showing (newlines apart)."""
    return [c for c in text if c != "\n" and not c.isprintable()]


def shows_escaped(out: str) -> bool:
    return "\\x1b[2J" in out and "\\x9b31m" in out and "\\u202e" in out and "\\u200b" in out


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return make_lab(tmp_path, f"sqlite:///{tmp_path / 'registry.db'}")


def _enrol_nasty_nickname(lab: Lab, tmp_path: Path) -> None:
    from keyadmin.cli.interact import CliInteraction
    from keyadmin.flows.enrol import enrol
    from keyadmin.sim.authenticator import SoftKey

    state = tmp_path / "bob.key"
    SoftKey.create(state)
    lab.keys["bob"] = state
    # bob's key has its own root: a policy trusting it
    from tests.integration.test_stepup_support import write_policy

    roots = [SoftKey.open(p).root_certificate_pem() for p in lab.keys.values()]
    from keyadmin.policy.loader import load_policy

    policy = load_policy(write_policy(tmp_path / "policy2", roots))
    with open_session(state) as s:
        s.set_pin(PIN)
        enrol(
            user="bob", display_name=None, policy=policy, session=s,
            interaction=CliInteraction(PIN), db_url=lab.db_url, metadata=None,
            operator="it-staff", nickname=NASTY,
        )  # fmt: skip


def test_nickname_reason_and_operator_are_escaped(lab: Lab, tmp_path: Path) -> None:
    _enrol_nasty_nickname(lab, tmp_path)
    listing = invoke("creds", "list", "--db", lab.db_url)
    show = invoke("creds", "show", "2", "--db", lab.db_url)
    assert show.code == 0, show.stderr
    assert not raw_controls(show.stdout) and shows_escaped(show.stdout)
    assert listing.code == 0 and not raw_controls(listing.stdout)
    env = {"KEYADMIN_OPERATOR": NASTY}
    sus = invoke("creds", "suspend", "2", "--reason", NASTY, "--force", "--db", lab.db_url, env=env)
    assert sus.code == 0, sus.stderr
    assert not raw_controls(sus.stdout) and shows_escaped(sus.stdout)
    log = invoke("log", "show", "--db", lab.db_url)
    assert log.code == 0 and not raw_controls(log.stdout) and shows_escaped(log.stdout)
    # JSON stays exact: the value round-trips
    js = invoke("creds", "show", "2", "--db", lab.db_url, "--json")
    assert json.loads(js.stdout)["nickname"] == NASTY and not raw_controls(js.stdout)


def test_error_messages_are_escaped(tmp_path: Path) -> None:
    missing = tmp_path / f"key{NASTY}.pem"
    out = invoke("receipt", "verify", "a.b.c", "--action", "a", "--receipt-key", str(missing))
    assert out.code == 1 and "cannot read" in out.stderr
    assert not raw_controls(out.stderr) and shows_escaped(out.stderr)


@pytest.mark.parametrize("bad", ["bo\x1b[31mb", "bo\x9bb", "bob\u202e", "b\u200bob", "bob\n"])
def test_user_names_with_controls_are_refused_before_the_key_is_touched(lab: Lab, bad: str) -> None:
    from keyadmin.sim.authenticator import SoftKey

    before = len(SoftKey.open(lab.keys["alice"]).state.credentials)
    out = invoke(
        "enrol", bad, "--policy", str(lab.policy_path), "-d", f"sim:{lab.keys['alice']}",
        "--db", lab.db_url, input=f"{PIN}\n",
    )  # fmt: skip
    assert out.code == 2, out.stderr
    assert "user name" in out.stderr and not raw_controls(out.stderr)
    assert len(SoftKey.open(lab.keys["alice"]).state.credentials) == before


def test_user_names_are_nfc_normalized(tmp_path: Path) -> None:
    from keyadmin.store import registry
    from keyadmin.store.db import transaction

    url = f"sqlite:///{tmp_path / 'r.db'}"
    decomposed = "jose\u0301"
    with transaction(url) as s:
        u = registry.get_or_create_user(s, decomposed)
    assert u.name == unicodedata.normalize("NFC", decomposed) == "jos\u00e9"
    with transaction(url) as s:
        assert registry.find_user(s, decomposed) is not None
        assert registry.get_or_create_user(s, "jos\u00e9").id == u.id


def test_user_and_display_name_from_the_key_are_escaped(lab: Lab) -> None:
    """The key holds whatever names it was given; updateUserInformation sets them here."""
    from fido2.ctap2 import ClientPin, CredentialManagement, Ctap2

    with open_session(lab.keys["alice"]) as s:
        ctap = Ctap2(s.device)
        cp = ClientPin(ctap)
        token = cp.get_pin_token(PIN, ClientPin.PERMISSION.CREDENTIAL_MGMT)
        cm = CredentialManagement(ctap, cp.protocol, token)
        rp = cm.enumerate_rps()[0][CredentialManagement.RESULT.RP_ID_HASH]
        cred = cm.enumerate_creds(rp)[0]
        user = dict(cred[CredentialManagement.RESULT.USER])
        user.update(name=NASTY, displayName=NASTY)
        cm.update_user_info(cred[CredentialManagement.RESULT.CREDENTIAL_ID], user)
    out = invoke(
        "device", "credentials", "list", "-d", f"sim:{lab.keys['alice']}", input=f"{PIN}\n"
    )
    assert out.code == 0, out.stderr
    assert not raw_controls(out.stdout) and shows_escaped(out.stdout)
    js = invoke(
        "device", "credentials", "list", "-d", f"sim:{lab.keys['alice']}", "--json",
        input=f"{PIN}\n",
    )  # fmt: skip
    assert json.loads(js.stdout)[0]["display_name"] == NASTY


def test_the_renderer_escapes_every_value() -> None:
    import io
    import sys

    from keyadmin.cli import render

    buf = io.StringIO()
    old = sys.stdout
    sys.stdout = buf
    try:
        render.emit_kv(NASTY, [(NASTY, NASTY), ("list", [NASTY]), ("map", {NASTY: NASTY})])
    finally:
        sys.stdout = old
    assert not raw_controls(buf.getvalue()) and shows_escaped(buf.getvalue())


def test_transports_reported_by_the_key_are_escaped(tmp_path: Path) -> None:
    from keyadmin.sim.authenticator import SoftKey

    state = tmp_path / "odd.key"
    SoftKey.create(state, transports=["usb", NASTY])
    out = invoke("device", "info", "-d", f"sim:{state}")
    assert out.code == 0, out.stderr
    assert not raw_controls(out.stdout) and shows_escaped(out.stdout)
    js = invoke("device", "info", "-d", f"sim:{state}", "--json")
    assert NASTY in json.loads(js.stdout)["transports"]
