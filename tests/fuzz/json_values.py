"""Hostile JSON for the library fuzz tests: deep, oversized, wrong types, huge numbers,
duplicate keys (as text, since a dict cannot hold them)."""

from __future__ import annotations

import json

from hypothesis import strategies as st

DEEP = 200_000

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**64, -(2**63) - 1, 10**400, 2**1000]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["", "\x00", "\ud800", "\u202e", "A" * 200_000, "public-key", "webauthn.get"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def dumps(value: object) -> str:
    return json.dumps(value, allow_nan=True)


#: JSON texts no encoder writes: nesting past any parser's recursion, duplicate keys, NaN,
#: numbers with thousands of digits, a text longer than any limit.
TEXTS = st.sampled_from(
    [
        "[" * DEEP + "]" * DEEP,
        '{"a":' * DEEP + "1" + "}" * DEEP,
        "[" * 5000,
        '{"type": "public-key", "type": "x"}',
        '{"response": {}, "response": {"clientDataJSON": "AA"}}',
        '{"id": NaN, "rawId": Infinity}',
        "1" * 10_000,
        "-" + "9" * 5000 + "e99999",
        '"' + "A" * 3_000_000 + '"',
        "\x00",
        "\ufeff{}",
        "",
    ]
)
