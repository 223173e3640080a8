"""keyadmin.b64: one strict decoder per spelling; two texts never decode to the same bytes."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyadmin.b64 import decode_any, decode_std, decode_url, encode_std, encode_url


@given(st.binary(max_size=200))
def test_round_trips_match_the_standard_library(data: bytes) -> None:
    url = encode_url(data)
    std = encode_std(data)
    assert url == base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    assert std == base64.b64encode(data).decode()
    assert decode_url(url) == decode_url(url, padding=False) == data
    assert decode_url(base64.urlsafe_b64encode(data)) == data  # padded form
    assert decode_std(std) == decode_std(std.rstrip("=")) == data
    assert decode_any(url) == decode_any(std) == data


@pytest.mark.parametrize(
    ("decoder", "text", "why"),
    [
        (decode_url, "AAAA+A", "standard alphabet in base64url"),
        (decode_url, "AA AA", "a space (the standard library drops it silently)"),
        (decode_url, "AA\nAA", "a line break"),
        (decode_url, "AB", "stray bits in the last character (AA is the canonical text)"),
        (decode_url, "A", "one character cannot be base64"),
        (decode_url, "AA=", "wrong padding"),
        (decode_url, "AA===", "too much padding"),
        (decode_url, "A=A=", "padding inside"),
        (decode_url, "AAé", "not ASCII"),
        (decode_std, "AA-_", "base64url alphabet in standard base64"),
        (decode_std, "QUJD!", "a character of neither alphabet"),
        (decode_any, "A-A+", "mixed alphabets"),
    ],
)
def test_refused(decoder, text: str, why: str) -> None:
    with pytest.raises(ValueError):
        decoder(text)


def test_jws_parts_refuse_padding() -> None:
    assert decode_url("AA==") == b"\x00"
    with pytest.raises(ValueError):
        decode_url("AA==", padding=False)
    assert decode_url(b"AA", padding=False) == b"\x00"
