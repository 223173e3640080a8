"""Step-up hardening, with the software key and a real registry (SQLite and PostgreSQL):

* a captured assertion (signed by the user's key for another challenge) replayed against the
  user's live challenge is refused as a replay (exit 6), counts toward no limit and leaves the
  live challenge usable;
* authenticator data and client data that a key really signed but that break the rules
  (BS without BE, AT/ED without their data, crossOrigin not a boolean, a foreign topOrigin);
* externally supplied values are bounded before they are stored or logged; expired challenges
  are purged; a user has at most a bounded number of live challenges.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from keyadmin.b64 import encode_url
from keyadmin.stepup import (
    ChallengeRefused,
    StepUpRefused,
    begin,
    finish,
)
from keyadmin.stepup.verify import Assertion
from tests.integration.test_stepup_support import (
    ACTION,
    Lab,
    assertion_for,
    make_lab,
    stored,
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return str(request.getfixturevalue("pg_url"))


def _lab(tmp_path: Path, db_url: str, **step_up: int) -> Lab:
    return make_lab(tmp_path, db_url, **step_up)


def _scalar(url: str, sql: str, **params: Any) -> Any:
    from sqlalchemy import text

    from keyadmin.store.db import get_engine

    with get_engine(url).connect() as conn:
        return conn.execute(text(sql), params).scalar()


def _challenge_ids(url: str) -> set[str]:
    from sqlalchemy import text

    from keyadmin.store.db import get_engine

    with get_engine(url).connect() as conn:
        return {r[0] for r in conn.execute(text("SELECT id FROM ka_challenge"))}


def _failures(url: str) -> int:
    return int(_scalar(url, "SELECT count(*) FROM ka_stepup_failure"))


def _log_bytes(url: str) -> int:
    return int(_scalar(url, "SELECT coalesce(sum(length(details)), 0) FROM ka_audit"))


def _finish(lab: Lab, ch: Any, response: Any, **kw: Any) -> Any:
    return finish(
        lab.db_url, lab.policy, challenge_id=ch.challenge_id, action=ACTION, response=response, **kw
    )


# ----------------------------------------------------------------------------- 1. replay
def test_captured_assertion_replayed_on_the_live_challenge(db_url: str, tmp_path: Path) -> None:
    """Found by review: the old assertion consumed the live challenge and counted as a failed
    attempt, so a handful of submissions locked the admin out."""
    lab = _lab(tmp_path, db_url, max_attempts=2)
    old_ch = begin(lab.db_url, lab.policy, user="alice", action=ACTION)
    captured = assertion_for(lab.keys["alice"], old_ch)
    _finish(lab, old_ch, captured)  # used once, genuinely; an attacker keeps a copy
    live = begin(lab.db_url, lab.policy, user="alice", action=ACTION)
    seq_before = _scalar(lab.db_url, "SELECT seq FROM ka_audit_head")
    for _ in range(6):  # more than every limit (2 per credential, 6 per user)
        with pytest.raises(ChallengeRefused, match="replayed assertion") as e:
            _finish(lab, live, captured.to_json())
        assert e.value.exit_code == 6
        assert e.value.data["challenge_consumed"] is False
    assert _failures(lab.db_url) == 0
    used = _scalar(
        lab.db_url, "SELECT used_at FROM ka_challenge WHERE id = :id", id=live.challenge_id
    )
    assert used is None
    from keyadmin.store import stepup as store

    log = store.stepup_log(lab.db_url)
    refusals = [e for e in log if e.seq > seq_before]
    assert len(refusals) == 6 and {e.action for e in refusals} == {"stepup.replay"}
    assert all("replayed" in e.details["reason"] for e in refusals)
    assert all(len(json.dumps(e.details)) < 1000 for e in refusals)
    # the genuine user's assertion for the live challenge still passes, once
    r = _finish(lab, live, assertion_for(lab.keys["alice"], live))
    assert r.user == "alice" and stored(lab.db_url).status == "active"
    begin(lab.db_url, lab.policy, user="alice", action=ACTION)  # not locked out


def test_forged_signature_for_another_challenge_is_a_bad_signature(
    db_url: str, tmp_path: Path
) -> None:
    """The replay reason is given only once the signature verifies: a forged assertion is
    refused on its signature (exit 3), whatever challenge its client data names."""
    lab = _lab(tmp_path, db_url)
    old_ch = begin(lab.db_url, lab.policy, user="alice", action=ACTION)
    forged = assertion_for(lab.keys["alice"], old_ch).to_json()
    forged["response"]["signature"] = encode_url(b"\x30\x06\x02\x01\x01\x02\x01\x01")
    live = begin(lab.db_url, lab.policy, user="alice", action=ACTION)
    with pytest.raises(StepUpRefused, match="signature does not verify") as e:
        _finish(lab, live, forged)
    assert e.value.exit_code == 3


# ------------------------------------------------------------------- 2. flags, client data
def _key_signed(
    lab: Lab,
    ch: Any,
    *,
    client_data: dict[str, Any] | None = None,
    flags: int | None = None,
    tail: bytes = b"",
) -> dict[str, Any]:
    """An assertion signed with the credential's own private key (from the software key's
    state), with client data and authenticator data of the test's choosing: what a buggy or
    malicious authenticator, or client, could really produce."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from keyadmin.sim.authenticator import SoftKey

    cd = {"type": "webauthn.get", "challenge": encode_url(ch.challenge), "origin": ch.origin}
    cd.update(client_data or {})
    cdj = json.dumps(cd).encode()
    cred = SoftKey.open(lab.keys["alice"]).state.credentials[0]
    counter = stored(lab.db_url).sign_count + 1
    ad = (
        hashlib.sha256(ch.rp_id.encode()).digest()
        + bytes([0x05 if flags is None else flags])
        + counter.to_bytes(4, "big")
        + tail
    )
    key = serialization.load_pem_private_key(cred.private_key_pem.encode(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    sig = key.sign(ad + hashlib.sha256(cdj).digest(), ec.ECDSA(hashes.SHA256()))
    return Assertion(cred.id_bytes, cdj, ad, sig, None).to_json()


def test_key_signed_helper_is_accepted_when_nothing_is_wrong(tmp_path: Path) -> None:
    lab = _lab(tmp_path, f"sqlite:///{tmp_path / 'r.db'}")
    ch = begin(lab.db_url, lab.policy, user="alice", action=ACTION)
    assert _finish(lab, ch, _key_signed(lab, ch)).user == "alice"
    # ED with one CBOR map of extensions after the counter is well formed
    ch = begin(lab.db_url, lab.policy, user="alice", action=ACTION)
    signed = _key_signed(lab, ch, flags=0x85, tail=bytes.fromhex("a16b6372656450726f7465637402"))
    assert _finish(lab, ch, signed).user == "alice"


@pytest.mark.parametrize(
    ("client_data", "flags", "tail", "reason"),
    [
        ({}, 0x05 | 0x10, b"", "BS=1 with BE=0"),
        ({}, 0x05 | 0x40, b"", "AT is set"),
        ({}, 0x05 | 0x80, b"", "ED is set"),
        ({}, 0x05, b"\xa0", "bytes after the counter"),
        ({}, 0x85, b"\xa0\x00", "1 bytes after its extensions"),
        ({}, 0x85, b"\x80", "not a CBOR map"),
        ({"crossOrigin": "true"}, None, b"", "crossOrigin is not a JSON boolean"),
        ({"crossOrigin": 1}, None, b"", "crossOrigin is not a JSON boolean"),
        ({"crossOrigin": None}, None, b"", "crossOrigin is not a JSON boolean"),
        ({"crossOrigin": True}, None, b"", "cross-origin assertions are not accepted"),
        ({"topOrigin": "https://evil.example"}, None, b"", "topOrigin 'https://evil.example'"),
        ({"topOrigin": 7}, None, b"", "topOrigin 7"),
        (
            {"topOrigin": "https://example.com", "crossOrigin": False},
            None,
            b"",
            "topOrigin is present but crossOrigin is not true",
        ),
    ],
)
def test_key_signed_but_malformed_is_refused(
    tmp_path: Path, client_data: dict[str, Any], flags: int | None, tail: bytes, reason: str
) -> None:
    lab = _lab(tmp_path, f"sqlite:///{tmp_path / 'r.db'}")
    ch = begin(lab.db_url, lab.policy, user="alice", action=ACTION)
    before = stored(lab.db_url).sign_count
    with pytest.raises(StepUpRefused, match=reason) as e:
        _finish(lab, ch, _key_signed(lab, ch, client_data=client_data, flags=flags, tail=tail))
    assert e.value.exit_code == 3
    assert stored(lab.db_url).sign_count == before
    assert _failures(lab.db_url) == 1  # the key signed it: it counts


def test_backed_up_flag_without_eligibility_from_the_key_is_refused(tmp_path: Path) -> None:
    """A key (through the real CTAP path) that reports BS=1 with BE=0: an invalid state."""
    from keyadmin.sim.authenticator import SoftKey

    lab = _lab(tmp_path, f"sqlite:///{tmp_path / 'r.db'}")
    key = SoftKey.open(lab.keys["alice"])
    key.state.backed_up = True  # but backup_eligible stays False
    key._save()
    ch = begin(lab.db_url, lab.policy, user="alice", action=ACTION)
    a = assertion_for(lab.keys["alice"], ch)
    assert a.authenticator_data[32] & 0x18 == 0x10
    with pytest.raises(StepUpRefused, match="BS=1 with BE=0"):
        _finish(lab, ch, a)


# ----------------------------------------------------------------------------- 3. bounds, purge
def test_oversized_challenge_id_is_refused_and_logged_bounded(db_url: str, tmp_path: Path) -> None:
    """Found by review (issue 19 item 1): a 1 MB challenge id went into the log row."""
    lab = _lab(tmp_path, db_url)
    ch = begin(lab.db_url, lab.policy, user="alice", action=ACTION)
    a = assertion_for(lab.keys["alice"], ch)
    before = _log_bytes(lab.db_url)
    huge = "x" * 1_000_000
    with pytest.raises(ChallengeRefused, match="challenge id") as e:
        finish(lab.db_url, lab.policy, challenge_id=huge, action=ACTION, response=a)
    assert e.value.exit_code == 6
    assert _log_bytes(lab.db_url) - before < 1000
    from keyadmin.store import stepup as store

    last = store.stepup_log(lab.db_url)[-1]
    assert last.details["challenge"]["sha256"] == hashlib.sha256(huge.encode()).hexdigest()
    assert last.details["challenge"]["length"] == 1_000_000
    # an unknown id of ordinary size is still logged as given
    with pytest.raises(ChallengeRefused, match="unknown challenge"):
        finish(lab.db_url, lab.policy, challenge_id="ab" * 16, action=ACTION, response=a)
    assert store.stepup_log(lab.db_url)[-1].details["challenge"] == "ab" * 16
    from keyadmin.errors import UsageError

    with pytest.raises(UsageError, match="must be text"):
        finish(lab.db_url, lab.policy, challenge_id=b"ab", action=ACTION, response=a)  # type: ignore[arg-type]
    assert _finish(lab, ch, a).user == "alice"


def test_oversized_credential_id_is_refused_and_not_logged_whole(
    db_url: str, tmp_path: Path
) -> None:
    lab = _lab(tmp_path, db_url)
    ch = begin(lab.db_url, lab.policy, user="alice", action=ACTION)
    a = assertion_for(lab.keys["alice"], ch).to_json()
    a["id"] = a["rawId"] = encode_url(b"\x01" * 500_000)
    before = _log_bytes(lab.db_url)
    with pytest.raises(StepUpRefused, match="credential id is 500000 bytes"):
        _finish(lab, ch, a)
    assert _log_bytes(lab.db_url) - before < 1000


@pytest.mark.parametrize(
    ("field", "size", "reason"),
    [
        ("clientDataJSON", 20_000, "clientDataJSON is 20000 bytes"),
        ("authenticatorData", 20_000, "authenticatorData is 20000 bytes"),
        ("signature", 20_000, "signature is 20000 bytes"),
        ("userHandle", 65, "userHandle is 65 bytes"),
    ],
)
def test_oversized_response_fields_are_refused(
    tmp_path: Path, field: str, size: int, reason: str
) -> None:
    lab = _lab(tmp_path, f"sqlite:///{tmp_path / 'r.db'}")
    ch = begin(lab.db_url, lab.policy, user="alice", action=ACTION)
    a = assertion_for(lab.keys["alice"], ch)
    body = a.to_json()
    body["response"][field] = encode_url(b"\x01" * size)
    with pytest.raises(StepUpRefused, match=reason) as e:
        _finish(lab, ch, body)
    assert e.value.exit_code == 3
    # the same bound holds for an Assertion handed over decoded
    decoded = Assertion(
        a.credential_id,
        b"\x01" * size if field == "clientDataJSON" else a.client_data_json,
        b"\x01" * size if field == "authenticatorData" else a.authenticator_data,
        b"\x01" * size if field == "signature" else a.signature,
        b"\x01" * size if field == "userHandle" else a.user_handle,
    )
    with pytest.raises(StepUpRefused, match=reason):
        _finish(lab, ch, decoded)
    assert _finish(lab, ch, a).user == "alice"  # nothing was consumed


def test_oversized_response_text_is_refused_before_parsing(tmp_path: Path) -> None:
    lab = _lab(tmp_path, f"sqlite:///{tmp_path / 'r.db'}")
    ch = begin(lab.db_url, lab.policy, user="alice", action=ACTION)
    with pytest.raises(StepUpRefused, match="the response is 200000 bytes"):
        _finish(lab, ch, "[" + " " * 199_998 + "]")


def test_oversized_action_is_refused_by_begin(tmp_path: Path) -> None:
    from keyadmin.errors import UsageError

    lab = _lab(tmp_path, f"sqlite:///{tmp_path / 'r.db'}")
    with pytest.raises(UsageError, match="the action is 5000 characters"):
        begin(lab.db_url, lab.policy, user="alice", action="x" * 5000)


def test_expired_unused_challenges_are_purged_by_begin(db_url: str, tmp_path: Path) -> None:
    lab = _lab(tmp_path, db_url)
    t0 = datetime.now(UTC)
    used = begin(lab.db_url, lab.policy, user="alice", action=ACTION, now=t0)
    _finish(lab, used, assertion_for(lab.keys["alice"], used), now=t0)
    stale = [begin(lab.db_url, lab.policy, user="alice", action=ACTION, now=t0) for _ in range(3)]
    assert _scalar(lab.db_url, "SELECT count(*) FROM ka_challenge") == 4
    later = t0 + timedelta(seconds=121)  # the lab policy's challenges live 120 s
    fresh = begin(lab.db_url, lab.policy, user="alice", action=ACTION, now=later)
    ids = _challenge_ids(lab.db_url)
    assert ids == {used.challenge_id, fresh.challenge_id}  # the used one stays (replay record)
    assert not ids & {s.challenge_id for s in stale}
    with pytest.raises(ChallengeRefused, match="unknown challenge"):
        _finish(lab, stale[0], assertion_for(lab.keys["alice"], stale[0]), now=later)


def test_live_challenges_per_user_are_capped(tmp_path: Path) -> None:
    from keyadmin.policy.model import STEP_UP_DEFAULTS
    from keyadmin.stepup import TooManyChallenges

    lab = _lab(tmp_path, f"sqlite:///{tmp_path / 'r.db'}")
    t0 = datetime.now(UTC)
    first = [
        begin(lab.db_url, lab.policy, user="alice", action=ACTION, now=t0)
        for _ in range(STEP_UP_DEFAULTS.max_live_challenges)
    ]
    with pytest.raises(TooManyChallenges, match="live step-up challenges") as e:
        begin(lab.db_url, lab.policy, user="alice", action=ACTION, now=t0)
    assert e.value.exit_code == 3
    _finish(lab, first[0], assertion_for(lab.keys["alice"], first[0]), now=t0)  # one fewer
    begin(lab.db_url, lab.policy, user="alice", action=ACTION, now=t0)
    later = t0 + timedelta(seconds=121)  # all expired: a new one is issued again
    begin(lab.db_url, lab.policy, user="alice", action=ACTION, now=later)


def test_live_challenge_cap_comes_from_the_policy(tmp_path: Path) -> None:
    from keyadmin.policy import PolicyLoadError, load_policy
    from keyadmin.stepup import TooManyChallenges

    lab = _lab(tmp_path, f"sqlite:///{tmp_path / 'r.db'}")
    text = lab.policy_path.read_text()
    lab.policy_path.write_text(text.replace("[step_up]", "[step_up]\nmax_live_challenges = 2"))
    policy = load_policy(lab.policy_path)
    assert policy.step_up.max_live_challenges == 2
    for _ in range(2):
        begin(lab.db_url, policy, user="alice", action=ACTION)
    with pytest.raises(TooManyChallenges, match=r"2 live step-up challenges \(limit 2\)"):
        begin(lab.db_url, policy, user="alice", action=ACTION)
    lab.policy_path.write_text(text.replace("[step_up]", "[step_up]\nmax_live_challenges = 0"))
    with pytest.raises(PolicyLoadError, match="max_live_challenges"):
        load_policy(lab.policy_path)


def test_field_sizes_are_checked_on_the_decoded_bytes() -> None:
    """A 64-byte userHandle is accepted also when its base64url carries padding; 65 is not,
    however it is spelled."""
    from keyadmin.stepup.verify import parse_response

    a = Assertion(b"\x01" * 16, b"{}", b"\x00" * 37, b"\x30", b"\x07" * 64).to_json()
    padded = dict(a, response=dict(a["response"], userHandle=encode_url(b"\x07" * 64) + "=="))
    assert parse_response(padded).user_handle == b"\x07" * 64
    big = dict(a, response=dict(a["response"], userHandle=encode_url(b"\x07" * 65)))
    with pytest.raises(StepUpRefused, match="userHandle is 65 bytes"):
        parse_response(big)
