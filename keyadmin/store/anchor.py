"""Anchors: the log head, signed with a key that is not in the registry, kept elsewhere.

``keyadmin log anchor`` signs (seq, hash) of the newest log row with the log key (a P-256
key in a file, made and guarded exactly like the receipt key) and writes the statement
where a registry writer cannot reach it. ``keyadmin log verify --anchor FILE`` then refuses
any log that does not extend the anchored one: rows deleted from the end (the log is
shorter than the anchor), or rewritten up to or past the anchored row (the row at the
anchored seq has another hash) are found even when the head row was rewritten to match.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from keyadmin.errors import KeyadminError
from keyadmin.jws import Es256Signer, key_id, verify_statement

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

TYP = "keyadmin-log-anchor+jws"


class AnchorInvalid(KeyadminError):
    """The anchor statement is malformed, or not signed by the given log key."""


@dataclass(frozen=True)
class Anchor:
    seq: int
    hash: str
    issued_at: str
    kid: str
    token: str


def make(signer: Es256Signer, *, seq: int, head_hash: str, at: datetime | None = None) -> Anchor:
    iat = int((at or datetime.now(UTC)).timestamp())
    token = signer.sign(TYP, {"iss": "keyadmin", "seq": int(seq), "hash": head_hash, "iat": iat})
    return Anchor(seq, head_hash, datetime.fromtimestamp(iat, UTC).isoformat(), signer.kid, token)


def read(token: str, public_key: ec.EllipticCurvePublicKey) -> Anchor:
    claims = verify_statement(token, public_key, TYP, AnchorInvalid, what="anchor")
    seq, digest, iat = claims.get("seq"), claims.get("hash"), claims.get("iat")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise AnchorInvalid("the anchor has no valid 'seq'")
    if not isinstance(digest, str) or len(digest) != 64:
        raise AnchorInvalid("the anchor has no valid 'hash'")
    if not isinstance(iat, int) or isinstance(iat, bool) or not 0 <= iat < 2**40:
        raise AnchorInvalid("the anchor has no valid 'iat'")
    issued = datetime.fromtimestamp(iat, UTC).isoformat()
    return Anchor(seq, digest, issued, key_id(public_key), token.strip())
