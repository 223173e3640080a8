"""The receipt parser under hostile tokens: ``verify_receipt`` (the library a verifier
calls) and ``keyadmin receipt verify`` (the CLI), for tokens anyone can write and for
tokens signed by the real key over hostile claims (what a bug in the issuer would make)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyadmin.b64 import encode_url
from keyadmin.stepup.receipts import (
    ISSUER,
    TYP,
    ReceiptSigner,
    UsedReceipts,
    generate_key,
    load_public_key,
    public_path,
    sign_statement,
    verify_receipt,
)
from tests.fuzz.bounded import declared_or_ok
from tests.fuzz.conftest import STDIN, Lab, budget
from tests.fuzz.hostile import STRINGS
from tests.fuzz.json_values import TEXTS, VALUES, dumps
from tests.fuzz.runner import report, run_cli

NOW = int(time.time())


def good_claims() -> dict[str, Any]:
    """Valid claims issued now (made at each use: a whole test run outlasts a receipt)."""
    now = int(time.time())
    return {"iss": ISSUER, "sub": "alice", "aud": "example.com", "act": "0" * 64,
            "cred": "AQ", "ctr": 1, "jti": "j", "iat": now, "exp": now + 300}  # fmt: skip


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[ReceiptSigner, Any]:
    path = tmp_path_factory.mktemp("fuzz-receipt") / "k.pem"
    generate_key(path, None)
    return ReceiptSigner.load(path), load_public_key(public_path(path))


def segment(text: str) -> str:
    return encode_url(text.encode("utf-8", "surrogatepass"))


@st.composite
def forged_tokens(draw: st.DrawFn) -> str:
    """Tokens anyone can write: wrong shapes, hostile JSON in each part, huge parts."""
    part = st.one_of(
        st.sampled_from(STRINGS),
        TEXTS.map(segment),
        VALUES.map(lambda v: segment(dumps(v))),
        st.binary(max_size=80).map(encode_url),
    )
    n = draw(st.sampled_from([1, 2, 3, 3, 3, 4]))
    header = segment(dumps({"alg": "ES256", "typ": TYP, "kid": "x"}))
    parts = [draw(part) for _ in range(n)]
    if n == 3 and draw(st.booleans()):
        parts[0] = header
    return ".".join(parts)


@st.composite
def hostile_claims(draw: st.DrawFn) -> dict[str, Any]:
    claims = good_claims()
    names = st.sampled_from([*claims, "log", "extra"])
    for name in draw(st.sets(names, min_size=1, max_size=2)):
        claims[name] = draw(st.one_of(VALUES, EDGE_INTS, EDGE_INTS.map(_log)))
    return claims


#: Integers at the edges of 32 and 64 bits, of datetime's range and of the Unix epoch.
EDGE_INTS = st.sampled_from(
    [-1, -(2**63), 2**31, 2**32, 2**63, 2**64, 10**12, 253402300800, 10**30, NOW - 10]
)


def _log(seq: int) -> dict[str, Any]:
    return {"seq": seq, "hash": "0" * 64}


@budget(300)
@given(token=forged_tokens(), action=st.one_of(st.none(), st.text(max_size=20)))
def test_forged_tokens_are_invalid(
    keys: tuple[ReceiptSigner, Any], token: str, action: str | None
) -> None:
    _, public = keys
    result = declared_or_ok(lambda: verify_receipt(token, public, action=action), token)
    assert isinstance(result, Exception), f"a forged token verified: {token!r}"


@budget(300)
@given(claims=hostile_claims())
def test_signed_hostile_claims_end_in_a_declared_error(
    keys: tuple[ReceiptSigner, Any], claims: dict[str, Any]
) -> None:
    signer, public = keys
    token = declared_or_ok(lambda: sign_statement(signer, TYP, claims), claims)
    if isinstance(token, Exception):
        return
    declared_or_ok(lambda: verify_receipt(token, public, used=UsedReceipts()), claims)


@budget(60)
@given(token=st.one_of(forged_tokens(), st.sampled_from(STRINGS)))
def test_receipt_verify_cli_ends_in_a_declared_error(lab: Lab, token: str) -> None:
    where, env = lab.example()
    try:
        argv = ["receipt", "verify", "--public-key", "receipt-key.pub.pem", "--action", "x"]
        outcome = run_cli([*argv, "--", token], env=env, cwd=str(where), stdin=STDIN)
    finally:
        lab.discard(where)
    report(outcome)
    assert outcome.code != 0, outcome.describe()


def test_the_signed_path_is_reached(keys: tuple[ReceiptSigner, Any], tmp_path: Path) -> None:
    """The good claims verify: the hostile ones are checked past the signature."""
    signer, public = keys
    receipt = verify_receipt(sign_statement(signer, TYP, good_claims()), public)
    assert receipt.user == "alice" and receipt.counter == 1
