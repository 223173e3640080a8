"""Hostile values and files for the fuzz suite: what an attacker or a slip of the hand passes.

Files are made fresh in each example's own directory (``make_files``) and named by their
relative path, so an example that writes over one (``--force``) cannot change the next one.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import strategies as st

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
DEPTH = 100_000  # nesting of the deep JSON/TOML/CBOR files

#: Real files cut short: (source, bytes kept).
TRUNCATED = {
    "cut-blob.jwt": (SHARED / "mds" / "mds-blob-prod-no9-2021-12-01.jwt", 70_000),
    "cut-attestation.json": (SHARED / "attestations" / "fidomds-yubikey_5_nfc.json", 900),
    "cut-conformance.jwt": (
        SHARED / "mds" / "mds-blob-conformance-no42-nextUpdate-2022-11-09.jwt",
        1_000,
    ),
}


def make_files(root: Path) -> None:
    """The hostile files, under ``root/h`` (the caller's working directory is ``root``)."""
    h = root / "h"
    h.mkdir()
    (h / "dir").mkdir()
    os.mkfifo(h / "fifo")
    (h / "empty").write_bytes(b"")
    (h / "nul").write_bytes(b"a\x00b\x00" * 100)
    (h / "latin1").write_bytes(b'\xff\xfe\xe9t\xe9 = 1\n[policy]\nname = "\xe9"\n')
    unreadable = h / "unreadable"
    unreadable.write_text('[policy]\nname = "x"\n')
    unreadable.chmod(0)
    with open(h / "huge", "wb") as f:  # 3 GiB, sparse: costs no disk
        f.truncate(3 << 30)
    (h / "deep.json").write_text("[" * DEPTH + "]" * DEPTH)
    (h / "deep-obj.json").write_text('{"a":' * DEPTH + "1" + "}" * DEPTH)
    (h / "deep.toml").write_text("a = " + "[" * DEPTH + "]" * DEPTH + "\n")
    (h / "deep-inline.toml").write_text("a = " + "{b = " * DEPTH + "1" + "}" * DEPTH + "\n")
    (h / "deep.cbor").write_bytes(b"\x81" * DEPTH + b"\x00")
    (h / "big-int.toml").write_text("[step_up]\nmax_attempts = " + "9" * 5000 + "\n")
    (h / "nan.toml").write_text("[step_up]\nmax_attempts = nan\nchallenge_lifetime_seconds = inf\n")
    (h / "dup.json").write_text('{"a": 1, "a": 2}')
    (h / "ctl.json").write_text('"\\u001b[31m\\u202e"')
    for name, (src, keep) in TRUNCATED.items():
        (h / name).write_bytes(src.read_bytes()[:keep])
    (h / "dangling").symlink_to(h / "nowhere")
    (h / "loop").symlink_to(h / "loop")
    (h / "to-fifo").symlink_to(h / "fifo")
    (h / "to-zero").symlink_to("/dev/zero")


HOSTILE_FILES = [
    "h/dir", "h/fifo", "h/empty", "h/nul", "h/latin1", "h/unreadable", "h/huge",
    "h/deep.json", "h/deep-obj.json", "h/deep.toml", "h/deep-inline.toml", "h/deep.cbor",
    "h/big-int.toml", "h/nan.toml", "h/dup.json", "h/ctl.json", *(f"h/{n}" for n in TRUNCATED),
    "h/dangling", "h/loop", "h/to-fifo", "h/to-zero", "h/missing", "h/dir/",
    "/dev/zero", "/dev/null", "/dev/urandom", "/", "/proc/self/mem", "", "-",
    "h/" + "x" * 300, "h/" + "d/" * 3000 + "f", "a\x00b", "\udcff\udcfe",
]  # fmt: skip

NUMBERS = [
    "-1", "0", "-0", "1e309", "nan", "NaN", "inf", "-inf", "1e-320", "9" * 5000, "-" + "9" * 40,
    "18446744073709551616", "4294967296", "2147483648", "0x10", "1_000", "\u0663", "\uff11",
    " 1", "1 ", "+1", "1.5", "", "--",
]  # fmt: skip

URLS = [
    "sqlite://", "sqlite:///", "sqlite:////dev/zero", "sqlite:////", "sqlite:///h/dir",
    "sqlite:///h/fifo", "sqlite:///h/nul", "sqlite:///h/missing/x.db", "sqlite:///:memory:",
    "postgresql://", "postgresql://u@[::1", "postgresql://127.0.0.1:1/x", "postgresql://%zz",
    "mysql://x/y", "http://127.0.0.1:1/", "file:///etc/passwd", "ftp://x", "://", "sqlite:",
    "sqlite+pysqlite:///x.db?timeout=nan", "postgresql://h:99999999/d", "javascript:alert(1)",
    "http://[::1", "http://127.0.0.1:0/", "http://" + "a" * 70 + ".invalid/",
]  # fmt: skip

STRINGS = [
    "", " ", "\x00", "a\x00b", "\x1b[2J\x1b[31mred", "\u202eevil", "\u200b", "\x85", "\r\n",
    "\ud800", "\udcff", "-", "--", "--help", "-h", "%s%n", "{0}", "'; DROP TABLE x; --",
    "../../../../etc/passwd", "\N{LATIN SMALL LETTER E WITH ACUTE}", "e\u0301", "\ufeff",
    "\U0001f600" * 100, "\uffff", "a" * 100_000, "A" * 3_000_000,
]  # fmt: skip

UUIDISH = ["00000000-0000-0000-0000-000000000000", "6b657961-646d-4e00-8000-736f66746b79"]


def text_values() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(STRINGS + NUMBERS + URLS + UUIDISH),
        st.sampled_from(HOSTILE_FILES).map(lambda p: "@" + p),
        st.text(max_size=40),
        st.binary(max_size=40).map(lambda b: b.decode("utf-8", "surrogateescape")),
    )


def path_values() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(HOSTILE_FILES), st.sampled_from(STRINGS[:12]))


def number_values() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(NUMBERS),
        st.integers().map(str),
        st.floats().map(repr),
        st.sampled_from(STRINGS[:10]),
    )
