"""keyadmin enrol --user-handle: a new user takes the application's own WebAuthn user handle
(docs/sync.md), and the key's credential carries it; bad handles and a second, different
handle for an existing user are refused before a credential is made."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.e2e.cli import invoke
from tests.support.lab import PIN, Lab, make_lab


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return make_lab(tmp_path / "lab", f"sqlite:///{tmp_path / 'registry.db'}")


def _enrol(lab: Lab, user: str, handle: str) -> object:
    return invoke(*lab.enrol_args(user, "--user-handle", handle), input=f"{PIN}\n")


def test_the_handle_is_the_users_and_the_credentials(lab: Lab) -> None:
    out = _enrol(lab, "alice@example.org", "91f3a8bcdf7844fb91251bfb567bc786")
    assert out.code == 0, out.stderr  # type: ignore[attr-defined]
    (row,) = lab.registry_rows()
    assert bytes.fromhex(row["user_handle"]) == b"91f3a8bcdf7844fb91251bfb567bc786"
    (cred,) = lab.key().state.credentials
    assert base64.b64decode(cred.user_id) == b"91f3a8bcdf7844fb91251bfb567bc786"

    raw = _enrol(lab, "bob", "hex:00ff10")
    assert raw.code == 0, raw.stderr  # type: ignore[attr-defined]
    bob = next(r for r in lab.registry_rows() if r["user"] == "bob")
    assert bob["user_handle"] == "00ff10"


@pytest.mark.parametrize(
    ("handle", "words"),
    [("hex:zz", "not hex"), ("x" * 65, "65 bytes"), ("", "0 bytes"), ("hex:", "0 bytes")],
)
def test_bad_handles_are_refused_before_the_key(lab: Lab, handle: str, words: str) -> None:
    out = _enrol(lab, "alice", handle)
    assert out.code == 2 and words in out.stderr, out.stderr  # type: ignore[attr-defined]
    assert lab.credentials_on_key() == 0 and lab.registry_rows() == []


def test_an_existing_user_keeps_their_handle(lab: Lab, tmp_path: Path) -> None:
    assert _enrol(lab, "alice", "first-handle").code == 0  # type: ignore[attr-defined]
    other = make_lab(tmp_path / "second", lab.db, name="second.json")
    out = invoke(*other.enrol_args("alice", "--user-handle", "other-handle"), input=f"{PIN}\n")
    assert out.code == 2 and "another user handle" in out.stderr, out.stderr
    assert other.credentials_on_key() == 0
    assert len(lab.registry_rows()) == 1
