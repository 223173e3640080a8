"""PIN prompts (issue 16, item 5): the prompt states the key's minimum PIN length and the
attempts left; a PIN shorter than the minimum is asked again at a terminal (and refused on a
pipe) without being sent to the key; every wrong-PIN message gives the retries left, with a
warning at 3 or fewer. The software key over python-fido2's CTAPHID code; a real
pseudo-terminal for the prompts."""

from __future__ import annotations

import pytest

from tests.e2e.cli import invoke
from tests.e2e.pty_session import PtyProcess
from tests.support.lab import PIN, make_lab


@pytest.fixture
def lab(tmp_path, monkeypatch):
    monkeypatch.setenv("KEYADMIN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KEYADMIN_SYSLOG_SOCKET", "off")
    return make_lab(tmp_path / "lab", f"sqlite:///{tmp_path / 'r.db'}")


def test_terminal_prompt_states_minimum_and_asks_again_on_a_short_pin(lab) -> None:
    proc = PtyProcess(*lab.enrol_args("alice"))
    proc.expect("at least 4 characters")
    assert "8 attempts left" in proc.seen
    proc.send("12")  # too short: not sent to the key
    proc.expect("too short")
    proc.expect("PIN (at least 4")  # asked again
    proc.send(PIN)
    assert proc.wait() == 0, proc.seen
    assert "Enrolled" in proc.seen and PIN not in proc.seen and "12\r" not in proc.seen
    assert lab.key().state.pin_retries == 8  # the short PIN cost no attempt


def test_a_short_pin_on_a_pipe_is_refused_without_spending_an_attempt(lab) -> None:
    out = invoke(*lab.enrol_args("alice"), input="12\n")
    assert out.code == 5, out.stderr
    assert "shorter than this key's minimum of 4" in out.stderr
    assert lab.key().state.pin_retries == 8


def test_wrong_pin_gives_retries_left_and_warns_at_three(lab) -> None:
    seen = []
    for _ in range(5):
        out = invoke(*lab.enrol_args("alice"), input="wrong-pin\n")
        assert out.code == 5, out.stderr
        seen.append(out.stderr)
    assert "wrong PIN (7 attempts left" in seen[0], seen[0]
    assert "WARNING" not in seen[0]
    assert "wrong PIN (3 attempts left" in seen[4] and "WARNING" in seen[4], seen[4]
    assert lab.key().state.pin_retries == 3


def test_terminal_prompt_warns_when_three_or_fewer_attempts_are_left(lab) -> None:
    for _ in range(6):
        assert invoke(*lab.enrol_args("alice"), input="wrong-pin\n").code == 5
    proc = PtyProcess(*lab.enrol_args("alice"))
    proc.expect("2 attempts left")
    assert "warning: only 2 PIN attempts left" in proc.seen
    proc.send(PIN)
    assert proc.wait() == 0, proc.seen
