"""The step-up API (keyadmin.stepup begin/finish) and its parsers under hostile JSON.

``finish`` takes what a browser (so: anyone) sends; every input must end in a declared
keyadmin error (or a result), within a time and memory bound (tests/fuzz/bounded.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyadmin.b64 import encode_url
from keyadmin.stepup import begin, finish
from keyadmin.stepup.verify import check_client_data, parse_auth_data, parse_response
from tests.fuzz.bounded import declared_or_ok
from tests.fuzz.conftest import budget
from tests.fuzz.json_values import TEXTS, VALUES, dumps
from tests.integration.test_stepup_support import ACTION, Lab, make_lab


@pytest.fixture(scope="module")
def stepup_lab(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lab, str]:
    tmp = tmp_path_factory.mktemp("fuzz-stepup")
    lab = make_lab(tmp, f"sqlite:///{tmp / 'registry.db'}")
    challenge = begin(lab.db_url, lab.policy, user="alice", action=ACTION)
    return lab, challenge.challenge_id


def _shaped(draw: st.DrawFn) -> Any:
    """A PublicKeyCredential whose fields hold hostile values (one level of wrong types)."""
    field = st.one_of(VALUES, st.binary(max_size=300).map(encode_url))
    inner = {
        k: draw(field)
        for k in draw(st.sets(st.sampled_from(
            ["clientDataJSON", "authenticatorData", "signature", "userHandle"])))
    }  # fmt: skip
    outer: dict[str, Any] = {"type": draw(st.one_of(st.just("public-key"), VALUES))}
    for k in draw(st.sets(st.sampled_from(["id", "rawId", "clientExtensionResults"]))):
        outer[k] = draw(field)
    outer["response"] = draw(st.one_of(st.just(inner), VALUES))
    return outer


@st.composite
def responses(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["dict", "text", "bytes", "shaped", "shaped-text"]))
    if kind == "dict":
        return draw(VALUES)
    if kind == "text":
        return draw(st.one_of(TEXTS, VALUES.map(dumps)))
    if kind == "bytes":
        return draw(st.one_of(TEXTS.map(str.encode), st.binary(max_size=200)))
    shaped = _shaped(draw)
    return dumps(shaped) if kind == "shaped-text" else shaped


@budget(300)
@given(response=responses(), challenge=st.one_of(st.none(), VALUES))
def test_finish_ends_in_a_declared_error(
    stepup_lab: tuple[Lab, str], response: Any, challenge: Any
) -> None:
    lab, live = stepup_lab
    cid = live if challenge is None else challenge
    declared_or_ok(
        lambda: finish(lab.db_url, lab.policy, challenge_id=cid, action=ACTION, response=response),
        (cid, response),
    )


@budget(200)
@given(response=responses())
def test_parse_response_ends_in_a_declared_error(response: Any) -> None:
    declared_or_ok(lambda: parse_response(response), response)


@budget(200)
@given(data=st.one_of(TEXTS.map(str.encode), VALUES.map(lambda v: dumps(v).encode())))
def test_client_data_ends_in_a_declared_error(data: bytes) -> None:
    declared_or_ok(
        lambda: check_client_data(data, challenge=b"\x00" * 64, origins=("https://example.com",)),
        data,
    )


@budget(200)
@given(
    data=st.one_of(
        st.binary(max_size=200),
        st.binary(min_size=32, max_size=32).map(
            lambda h: h + b"\xc5\x00\x00\x00\x01" + b"\x81" * 5000
        ),
    )
)
def test_auth_data_ends_in_a_declared_error(data: bytes) -> None:
    declared_or_ok(lambda: parse_auth_data(data), data)


@budget(100)
@given(
    user=st.one_of(st.sampled_from(["alice", "nobody"]), VALUES),
    action=st.one_of(st.sampled_from([ACTION, "A" * 100_000]), VALUES),
    origin=st.one_of(st.none(), VALUES),
)
def test_begin_ends_in_a_declared_error(
    stepup_lab: tuple[Lab, str], user: Any, action: Any, origin: Any
) -> None:
    lab, _ = stepup_lab
    declared_or_ok(
        lambda: begin(lab.db_url, lab.policy, user=user, action=action, origin=origin),
        (user, action, origin),
    )


def test_the_live_challenge_is_real(stepup_lab: tuple[Lab, str], tmp_path: Path) -> None:
    """The fuzzed finish reaches the registry: a well-formed but unsigned response for the
    live challenge is refused by the checks after parsing, not by the parser."""
    from keyadmin.errors import KeyadminError

    lab, live = stepup_lab
    response = {
        "id": encode_url(b"\x01" * 16), "rawId": encode_url(b"\x01" * 16), "type": "public-key",
        "response": {"clientDataJSON": encode_url(b"{}"),
                     "authenticatorData": encode_url(b"\x00" * 37),
                     "signature": encode_url(b"\x00" * 70)},
    }  # fmt: skip
    with pytest.raises(KeyadminError) as e:
        finish(lab.db_url, lab.policy, challenge_id=live, action=ACTION, response=response)
    assert "credential" in e.value.message or "challenge" in e.value.message, e.value.message
