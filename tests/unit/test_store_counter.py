"""The application's stored counter, read without trusting it (keyadmin.store.appstore)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from keyadmin.store.appstore import parse_counter
from keyadmin.store.registry import MAX_SIGN_COUNT


@given(st.integers())
def test_integers_are_counters_exactly_in_0_to_2_32_minus_1(n: int) -> None:
    assert parse_counter(n) == (n if 0 <= n <= MAX_SIGN_COUNT else None)
    assert parse_counter(str(n)) == (n if 0 <= n <= MAX_SIGN_COUNT else None)


@given(st.text())
def test_any_text_is_read_without_an_exception(value: str) -> None:
    n = parse_counter(value)
    if n is not None:  # only ASCII decimal digits, in range
        assert value.isascii() and value.isdigit() and int(value) == n <= MAX_SIGN_COUNT


def test_what_databases_return() -> None:
    assert parse_counter(None) == 0  # a NULL counter: the application has not counted yet
    assert parse_counter(7.0) == 7 and parse_counter(Decimal("7")) == 7
    for bad in (True, 1.5, float("nan"), float("inf"), 2.0**64, Decimal("NaN"), b"7", "", " 7"):
        assert parse_counter(bad) is None, bad
