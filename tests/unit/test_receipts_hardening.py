"""Receipts, hardened (adversarial review, item 6): one token per receipt (low-S only), and
single use for verifiers that ask for it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from keyadmin.b64 import decode_url, encode_url
from keyadmin.stepup import ReceiptInvalid, ReceiptSigner, generate_key, load_public_key
from keyadmin.stepup.receipts import action_hash, verify_receipt

ACTION = "delete tenant 42"
# The order of the P-256 group.
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[ReceiptSigner, object]:
    path = tmp_path_factory.mktemp("rk") / "receipt-key.pem"
    files = generate_key(path, None)
    return ReceiptSigner.load(path), load_public_key(Path(files.public))


def _issue(signer: ReceiptSigner, *, jti: str = "cd" * 16, at: datetime | None = None) -> str:
    return signer.issue(
        user="alice",
        action_hash=action_hash(ACTION),
        credential_id="ab" * 16,
        counter=7,
        challenge_id=jti,
        rp_id="example.com",
        issued_at=at or datetime.now(UTC),
        lifetime_seconds=300,
    )


def _s(token: str) -> int:
    return int.from_bytes(decode_url(token.split(".")[2])[32:], "big")


def _twin(token: str) -> str:
    """The same signature with s replaced by n - s: valid ECDSA, another token string."""
    head, body, sig = token.split(".")
    raw = decode_url(sig)
    s = int.from_bytes(raw[32:], "big")
    return ".".join([head, body, encode_url(raw[:32] + (N - s).to_bytes(32, "big"))])


def test_issued_receipts_are_low_s(keys) -> None:
    signer, _ = keys
    assert all(_s(_issue(signer)) <= N // 2 for _ in range(64))


def test_the_high_s_twin_of_a_receipt_is_refused(keys) -> None:
    signer, pub = keys
    token = _issue(signer)
    verify_receipt(token, pub, action=ACTION)
    with pytest.raises(ReceiptInvalid, match="high-S"):
        verify_receipt(_twin(token), pub, action=ACTION)


def test_a_used_receipt_is_refused_the_second_time(keys) -> None:
    from keyadmin.errors import ExitCode

    signer, pub = keys
    from keyadmin.stepup.receipts import UsedReceipts

    used = UsedReceipts()
    token = _issue(signer, jti="01" * 16)
    assert verify_receipt(token, pub, action=ACTION, used=used).challenge_id == "01" * 16
    with pytest.raises(ReceiptInvalid, match="already used") as e:
        verify_receipt(token, pub, action=ACTION, used=used)
    assert e.value.exit_code == ExitCode.COUNTER
    # another receipt is unaffected; a refused presentation does not use a receipt up
    other = _issue(signer, jti="02" * 16)
    with pytest.raises(ReceiptInvalid, match="another action"):
        verify_receipt(other, pub, action="delete tenant 43", used=used)
    verify_receipt(other, pub, action=ACTION, used=used)


def test_used_receipt_ids_are_forgotten_once_expired(keys) -> None:
    signer, pub = keys
    from keyadmin.stepup.receipts import UsedReceipts

    used = UsedReceipts()
    start = datetime.now(UTC)
    for i in range(10):
        verify_receipt(_issue(signer, jti=f"{i:032x}", at=start), pub, action=ACTION, used=used)
    assert len(used) == 10
    later = start + timedelta(seconds=301)
    fresh = _issue(signer, jti="ff" * 16, at=later)
    verify_receipt(fresh, pub, action=ACTION, used=used, now=later)
    assert len(used) == 1  # the ten expired ids were purged
