"""keyadmin.stepup.begin/finish with the software key over HID and a real registry:
replays, expiry, reuse, the wrong action, clones, attempt limits, receipts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from keyadmin.b64 import decode_url, encode_url
from keyadmin.stepup import (
    AttemptsExceeded,
    ChallengeRefused,
    CounterRegression,
    ReceiptInvalid,
    ReceiptSigner,
    StepUpRefused,
    begin,
    finish,
    generate_key,
    load_public_key,
    verify_receipt,
)
from tests.integration.test_stepup_support import (
    ACTION,
    Lab,
    assertion_for,
    clone,
    make_lab,
    stored,
)


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return make_lab(tmp_path, f"sqlite:///{tmp_path / 'registry.db'}")


def _step(lab: Lab, action: str = ACTION, state: Path | None = None):
    ch = begin(lab.db_url, lab.policy, user="alice", action=action)
    a = assertion_for(state or lab.keys["alice"], ch)
    return ch, a


def _log(lab: Lab) -> list:
    from keyadmin.store import stepup as store

    return store.stepup_log(lab.db_url)


def _audit_ok(lab: Lab) -> None:
    from keyadmin.store import audit
    from keyadmin.store.db import transaction

    with transaction(lab.db_url) as s:
        assert audit.verify(s).ok


def test_challenge_is_64_bytes_bound_to_the_action(lab: Lab) -> None:
    from keyadmin.stepup import action_hash, binding

    ch = begin(lab.db_url, lab.policy, user="alice", action=ACTION)
    assert len(ch.challenge) == 64
    assert ch.challenge[32:] == binding(action_hash(ACTION), ch.challenge_id)
    assert ch.options["userVerification"] == "required"
    assert ch.options["rpId"] == "example.com" and ch.options["timeout"] == 120_000
    other = begin(lab.db_url, lab.policy, user="alice", action=ACTION)
    assert other.challenge[:32] != ch.challenge[:32]


def test_success_logs_and_advances_the_counter(lab: Lab) -> None:
    before = stored(lab.db_url).sign_count
    ch, a = _step(lab)
    r = finish(
        lab.db_url, lab.policy, challenge_id=ch.challenge_id, action=ACTION, response=a.to_json()
    )
    assert r.user == "alice" and r.counter > before and r.previous_counter == before
    cred = stored(lab.db_url)
    assert cred.sign_count == r.counter and cred.status == "active"
    ok = [e for e in _log(lab) if e.action == "stepup.ok"]
    assert ok[-1].seq == r.audit_seq
    assert ok[-1].details["action_hash"] == r.action_hash
    assert ok[-1].details["counter"] == r.counter
    assert ok[-1].details["credential"] == r.credential_id
    from keyadmin.store import stepup as store

    assert store.credential_state(lab.db_url, bytes.fromhex(r.credential_id)) == (
        r.counter,
        "active",
        r.audit_seq,
    )
    _audit_ok(lab)


def test_replayed_assertion_is_refused(lab: Lab) -> None:
    ch, a = _step(lab)
    finish(lab.db_url, lab.policy, challenge_id=ch.challenge_id, action=ACTION, response=a)
    with pytest.raises(ChallengeRefused, match="used already") as e:
        finish(lab.db_url, lab.policy, challenge_id=ch.challenge_id, action=ACTION, response=a)
    assert e.value.exit_code == 6
    # the same assertion against a fresh challenge: signed for another challenge, a replay
    # (exit 6) that leaves the fresh challenge usable
    fresh = begin(lab.db_url, lab.policy, user="alice", action=ACTION)
    with pytest.raises(ChallengeRefused, match="another challenge") as e:
        finish(lab.db_url, lab.policy, challenge_id=fresh.challenge_id, action=ACTION, response=a)
    assert e.value.exit_code == 6 and e.value.data["challenge_consumed"] is False
    assert stored(lab.db_url).status == "active"
    assert [e.action for e in _log(lab)][-2:] == ["stepup.refused", "stepup.replay"]


def test_expired_challenge_is_refused(lab: Lab) -> None:
    ch, a = _step(lab)
    later = datetime.now(UTC) + timedelta(seconds=121)
    with pytest.raises(ChallengeRefused, match="expired"):
        finish(
            lab.db_url,
            lab.policy,
            challenge_id=ch.challenge_id,
            action=ACTION,
            response=a,
            now=later,
        )
    before = stored(lab.db_url).sign_count
    assert before < int.from_bytes(a.authenticator_data[33:37], "big")


def test_reused_challenge_is_refused_even_with_a_new_assertion(lab: Lab) -> None:
    ch, a = _step(lab)
    finish(lab.db_url, lab.policy, challenge_id=ch.challenge_id, action=ACTION, response=a)
    second = assertion_for(lab.keys["alice"], ch)  # the key signs the same challenge again
    with pytest.raises(ChallengeRefused, match="used already"):
        finish(lab.db_url, lab.policy, challenge_id=ch.challenge_id, action=ACTION, response=second)


def test_an_assertion_for_another_action_is_refused(lab: Lab) -> None:
    ch, a = _step(lab, action="rotate audit key")
    with pytest.raises(StepUpRefused, match="another action"):
        finish(lab.db_url, lab.policy, challenge_id=ch.challenge_id, action=ACTION, response=a)
    # an unauthenticated mistake neither consumes the challenge nor counts as an attempt:
    # the assertion still proves exactly the action it was made for, once
    r = finish(
        lab.db_url, lab.policy, challenge_id=ch.challenge_id, action="rotate audit key", response=a
    )
    assert r.user == "alice"


def _raw_assertion(lab: Lab, ch: Any, *, origin: str, uv: bool) -> dict[str, Any]:
    """A getAssertion made with python-fido2's Ctap2 directly, so client data can be anything
    the key then really signs (a wrong origin, or no user verification)."""
    import hashlib

    from fido2.ctap2 import ClientPin, Ctap2

    from keyadmin.stepup.verify import Assertion
    from tests.integration.test_stepup_support import PIN, open_session

    cd = json.dumps(
        {"type": "webauthn.get", "challenge": encode_url(ch.challenge), "origin": origin}
    ).encode()
    with open_session(lab.keys["alice"]) as s:
        ctap = Ctap2(s.device)
        params: dict[str, Any] = {}
        if uv:
            cp = ClientPin(ctap)
            token = cp.get_pin_token(PIN, ClientPin.PERMISSION.GET_ASSERTION, ch.rp_id)
            params = {
                "pin_uv_param": cp.protocol.authenticate(token, hashlib.sha256(cd).digest()),
                "pin_uv_protocol": cp.protocol.VERSION,
            }
        resp = ctap.get_assertion(
            ch.rp_id,
            hashlib.sha256(cd).digest(),
            [{"type": "public-key", "id": c} for c in ch.allow_credentials],
            **params,
        )
    return Assertion(
        credential_id=bytes(resp.credential["id"]),
        client_data_json=cd,
        authenticator_data=bytes(resp.auth_data),
        signature=bytes(resp.signature),
        user_handle=None,
    ).to_json()


def test_assertion_moved_to_another_actions_challenge_is_refused(lab: Lab) -> None:
    ch_a, a = _step(lab, action="rotate audit key")
    ch_b = begin(lab.db_url, lab.policy, user="alice", action=ACTION)
    with pytest.raises(ChallengeRefused, match="another challenge"):
        finish(lab.db_url, lab.policy, challenge_id=ch_b.challenge_id, action=ACTION, response=a)
    b = assertion_for(lab.keys["alice"], ch_b)  # B's own assertion still passes
    r = finish(lab.db_url, lab.policy, challenge_id=ch_b.challenge_id, action=ACTION, response=b)
    assert r.action_hash == ch_b.action_hash


def test_tampered_signature_and_client_data_are_refused(lab: Lab) -> None:
    ch, a = _step(lab)
    bad = a.to_json()
    sig = bytearray(a.signature)
    sig[-1] ^= 1
    bad["response"]["signature"] = encode_url(bytes(sig))
    with pytest.raises(StepUpRefused, match="signature"):
        finish(lab.db_url, lab.policy, challenge_id=ch.challenge_id, action=ACTION, response=bad)
    ch, a = _step(lab)
    cd = json.loads(a.client_data_json)
    cd["origin"] = "https://evil.example"
    bad = a.to_json()
    bad["response"]["clientDataJSON"] = encode_url(json.dumps(cd).encode())
    with pytest.raises(StepUpRefused, match="signature"):  # the key did not sign this
        finish(lab.db_url, lab.policy, challenge_id=ch.challenge_id, action=ACTION, response=bad)
    # the key really signs client data naming another origin: refused on the origin
    ch = begin(lab.db_url, lab.policy, user="alice", action=ACTION)
    evil = _raw_assertion(lab, ch, origin="https://evil.example", uv=True)
    with pytest.raises(StepUpRefused, match="origin"):
        finish(lab.db_url, lab.policy, challenge_id=ch.challenge_id, action=ACTION, response=evil)


def test_cleared_uv_flag_is_refused_with_exit_5(lab: Lab) -> None:
    ch, a = _step(lab)
    ad = bytearray(a.authenticator_data)
    ad[32] &= ~0x04
    bad = a.to_json()
    bad["response"]["authenticatorData"] = encode_url(bytes(ad))
    with pytest.raises(StepUpRefused, match="signature"):  # flags are signed: tampering shows
        finish(lab.db_url, lab.policy, challenge_id=ch.challenge_id, action=ACTION, response=bad)
    # an assertion the key really made without user verification (no PIN): exit 5
    ch = begin(lab.db_url, lab.policy, user="alice", action=ACTION)
    no_uv = _raw_assertion(lab, ch, origin=ch.origin, uv=False)
    with pytest.raises(Exception, match="UV not set") as e:
        finish(lab.db_url, lab.policy, challenge_id=ch.challenge_id, action=ACTION, response=no_uv)
    assert e.value.exit_code == 5


def test_cloned_key_is_detected_and_quarantined(lab: Lab, tmp_path: Path) -> None:
    copy = clone(lab.keys["alice"], tmp_path / "clone.key")
    ch, a = _step(lab)  # the original is used first
    finish(lab.db_url, lab.policy, challenge_id=ch.challenge_id, action=ACTION, response=a)
    ch2, forged = _step(lab, state=copy)  # the copy: a valid signature, a stale counter
    with pytest.raises(CounterRegression, match="quarantined") as e:
        finish(
            lab.db_url, lab.policy, challenge_id=ch2.challenge_id, action=ACTION, response=forged
        )
    assert e.value.exit_code == 6 and e.value.data["quarantined"] is True
    cred = stored(lab.db_url)
    assert cred.status == "quarantined" and "counter" in (cred.status_reason or "")
    log = _log(lab)
    assert log[-1].action == "stepup.counter-violation"
    assert log[-1].details["counter"] <= log[-1].details["previous_counter"]
    # the original key is refused from now on too: the credential is quarantined
    with pytest.raises(StepUpRefused, match="no active credential"):
        begin(lab.db_url, lab.policy, user="alice", action=ACTION)
    from keyadmin.store import stepup as store

    state = store.credential_state(lab.db_url, bytes.fromhex(cred.credential_id))
    assert state is not None and state[1] == "quarantined" and state[2] > log[-2].seq
    _audit_ok(lab)


def test_counter_jump_is_accepted_but_flagged(lab: Lab) -> None:
    from keyadmin.sim.authenticator import SoftKey

    key = SoftKey.open(lab.keys["alice"])
    key.state.credentials[0].uses += 5000
    key._save()
    ch, a = _step(lab)
    r = finish(lab.db_url, lab.policy, challenge_id=ch.challenge_id, action=ACTION, response=a)
    assert r.flags == ("counter-jump",)
    assert _log(lab)[-1].details["flags"] == ["counter-jump"]


def test_counter_falling_to_zero_is_flagged_and_quarantined(lab: Lab) -> None:
    from keyadmin.sim.authenticator import SoftKey

    key = SoftKey.open(lab.keys["alice"])
    key.state.counter_mode = "zero"
    key._save()
    ch, a = _step(lab)
    with pytest.raises(CounterRegression) as e:
        finish(lab.db_url, lab.policy, challenge_id=ch.challenge_id, action=ACTION, response=a)
    assert "counter-reset-to-zero" in e.value.data["flags"]
    assert stored(lab.db_url).status == "quarantined"


def test_attempt_limit_per_credential(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, f"sqlite:///{tmp_path / 'r.db'}", max_attempts=2)
    # failures that only the registered key could produce count (here: signed without UV)
    for _ in range(2):
        ch = begin(lab.db_url, lab.policy, user="alice", action=ACTION)
        no_uv = _raw_assertion(lab, ch, origin=ch.origin, uv=False)
        with pytest.raises(Exception, match="UV not set"):
            finish(
                lab.db_url, lab.policy, challenge_id=ch.challenge_id, action=ACTION, response=no_uv
            )
    with pytest.raises(AttemptsExceeded):
        begin(lab.db_url, lab.policy, user="alice", action=ACTION)
    later = datetime.now(UTC) + timedelta(seconds=901)  # the window has passed
    ch = begin(lab.db_url, lab.policy, user="alice", action=ACTION, now=later)
    assert ch.allow_credentials


def test_credential_of_another_user_is_refused(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, f"sqlite:///{tmp_path / 'r.db'}", users=("alice", "bob"))
    ch = begin(lab.db_url, lab.policy, user="alice", action=ACTION)
    ch_bob = begin(lab.db_url, lab.policy, user="bob", action=ACTION)
    # bob's key signs alice's challenge: fido2 needs bob's credential in the allow list
    from dataclasses import replace

    a = assertion_for(lab.keys["bob"], replace(ch, allow_credentials=ch_bob.allow_credentials))
    with pytest.raises(StepUpRefused, match="not a registered credential of alice"):
        finish(lab.db_url, lab.policy, challenge_id=ch.challenge_id, action=ACTION, response=a)


# ----------------------------------------------------------------------------- receipts
@pytest.fixture
def signer(tmp_path: Path) -> tuple[ReceiptSigner, object]:
    path = tmp_path / "keys" / "receipt-key.pem"
    files = generate_key(path, b"correct horse")
    assert (path.stat().st_mode & 0o777) == 0o600 and b"ENCRYPTED" in path.read_bytes()
    return ReceiptSigner.load(path, b"correct horse"), load_public_key(Path(files.public))


def _receipt(signer: ReceiptSigner, at: datetime, lifetime: int = 300) -> str:
    return signer.issue(
        user="alice",
        action_hash=__import__("keyadmin.stepup", fromlist=["x"]).action_hash(ACTION),
        credential_id="ab" * 16,
        counter=7,
        challenge_id="cd" * 16,
        rp_id="example.com",
        issued_at=at,
        lifetime_seconds=lifetime,
    )


def test_receipt_verifies_with_the_right_action(signer) -> None:
    sign, pub = signer
    token = _receipt(sign, datetime.now(UTC))
    r = verify_receipt(token, pub, action=ACTION)
    assert r.user == "alice" and r.counter == 7 and r.action_checked
    assert verify_receipt(token, pub).action_checked is False


def test_receipt_for_another_action_is_refused(signer) -> None:
    sign, pub = signer
    with pytest.raises(ReceiptInvalid, match="another action"):
        verify_receipt(_receipt(sign, datetime.now(UTC)), pub, action="delete tenant 43")


def test_expired_receipt_is_refused(signer) -> None:
    sign, pub = signer
    token = _receipt(sign, datetime.now(UTC) - timedelta(seconds=301))
    with pytest.raises(ReceiptInvalid, match="expired"):
        verify_receipt(token, pub, action=ACTION)


def test_tampered_receipts_are_refused(signer, tmp_path: Path) -> None:
    sign, pub = signer
    token = _receipt(sign, datetime.now(UTC))
    head, body, sig = token.split(".")
    claims = json.loads(decode_url(body))
    claims["sub"] = "mallory"
    forged = ".".join([head, encode_url(json.dumps(claims).encode()), sig])
    with pytest.raises(ReceiptInvalid, match="does not verify"):
        verify_receipt(forged, pub)
    none_alg = encode_url(json.dumps({"alg": "none", "typ": "keyadmin-stepup+jws"}).encode())
    with pytest.raises(ReceiptInvalid, match="header"):
        verify_receipt(".".join([none_alg, body, ""]), pub)
    with pytest.raises(ReceiptInvalid):
        verify_receipt(token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"), pub)
    other = generate_key(tmp_path / "other.pem", None)
    with pytest.raises(ReceiptInvalid, match="another key"):
        verify_receipt(token, load_public_key(Path(other.public)))
    header = json.loads(decode_url(head))
    for kid in ("é", None, 7, ["x"]):  # found by review: non-ASCII kid was a TypeError (exit 1)
        odd = encode_url(json.dumps({**header, "kid": kid}).encode())
        with pytest.raises(ReceiptInvalid, match="another key"):
            verify_receipt(".".join([odd, body, sig]), pub)


def test_unencrypted_receipt_key_must_be_0600(tmp_path: Path) -> None:
    from keyadmin.errors import ConfigError

    path = tmp_path / "plain.pem"
    generate_key(path, None)
    ReceiptSigner.load(path)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="mode 0644"):
        ReceiptSigner.load(path)
    enc = tmp_path / "enc.pem"
    generate_key(enc, b"pw")
    with pytest.raises(ConfigError, match="passphrase"):
        ReceiptSigner.load(enc)
    with pytest.raises(ConfigError, match="wrong passphrase"):
        ReceiptSigner.load(enc, b"not-it")


def test_a_stranger_cannot_burn_the_users_attempts(tmp_path: Path) -> None:
    """Someone who learns challenge ids but holds no key sends garbage: no attempt counts."""
    lab = make_lab(tmp_path, f"sqlite:///{tmp_path / 'r.db'}", max_attempts=2)
    ch, a = _step(lab)
    for _ in range(5):
        forged = a.to_json()
        forged["response"]["signature"] = encode_url(b"\x30\x06\x02\x01\x01\x02\x01\x01")
        with pytest.raises(StepUpRefused, match="signature"):
            finish(
                lab.db_url, lab.policy, challenge_id=ch.challenge_id, action=ACTION, response=forged
            )
        with pytest.raises(StepUpRefused, match="another action"):
            finish(lab.db_url, lab.policy, challenge_id=ch.challenge_id, action="x", response=a)
    r = finish(lab.db_url, lab.policy, challenge_id=ch.challenge_id, action=ACTION, response=a)
    assert r.user == "alice"  # the real key's assertion still passes: nothing was burnt


def test_begin_and_finish_take_a_registry_handle(lab: Lab) -> None:
    """The registry as a typed handle (keyadmin.store.db.Registry) instead of its URL: the
    same challenge, the same commit, the same recorded refusal."""
    from keyadmin.store.db import Registry

    registry = Registry(lab.db_url)
    before = stored(lab.db_url).sign_count
    ch = begin(registry, lab.policy, user="alice", action=ACTION)
    a = assertion_for(lab.keys["alice"], ch)
    r = finish(
        registry, lab.policy, challenge_id=ch.challenge_id, action=ACTION, response=a.to_json()
    )
    assert r.previous_counter == before and stored(lab.db_url).sign_count == r.counter
    with pytest.raises(ChallengeRefused) as replay:
        finish(registry, lab.policy, challenge_id=ch.challenge_id, action=ACTION, response=a)
    assert replay.value.data["audit_seq"] == r.audit_seq + 1
    assert [e.action for e in _log(lab)][-2:] == ["stepup.ok", "stepup.refused"]
    _audit_ok(lab)
