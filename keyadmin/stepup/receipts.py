"""Step-up receipts: a compact JWS (ES256) that names the user, the action's hash, the
credential and an expiry, signed by keyadmin's receipt key, checkable offline.

The private key lives in a file, never in the registry: PKCS#8 encrypted with a passphrase
(``BestAvailableEncryption``), or unencrypted only with mode 0600 (refused otherwise).
The public key (``*.pub.pem`` beside it) is all a verifier needs.

Token: ``encode_url(header) . encode_url(claims) . encode_url(r || s)`` with header
``{"alg": "ES256", "typ": "keyadmin-stepup+jws", "kid": <SHA-256 of the public key>}`` and
claims ``iss, sub (user), aud (rp id), act (SHA-256 of the action, hex), cred (credential
id, hex), ctr, jti (challenge id), iat, exp`` and ``log`` (seq and hash of the step-up's
log row), when the issuer passes it.

One token per receipt: signatures are issued with low S (s <= n/2) and a high-S signature
is refused, so nobody can make a second valid string for the same receipt. A receipt is
valid until it expires; a verifier that wants it single use passes ``used=`` (a
``UsedReceipts`` in memory, or any object with its ``claim`` method backed by shared
storage), which records each accepted ``jti`` until its expiry.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from keyadmin.errors import ConfigError
from keyadmin.files import read_input
from keyadmin.jws import P256_ORDER, Es256Signer, key_id, verify_statement
from keyadmin.stepup.errors import ReceiptInvalid, ReceiptReused

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

    from keyadmin.stepup.api import StepUpResult

TYP = "keyadmin-stepup+jws"
ISSUER = "keyadmin"
DEFAULT_LIFETIME_SECONDS = 300
__all__ = ["P256_ORDER", "key_id", "verify_statement"]  # re-exported: the one JWS module's


class PassphraseRequired(ConfigError):
    """The receipt key is encrypted and no passphrase was given."""


def action_hash(action: str) -> str:
    """SHA-256 of the action text (UTF-8), lower-case hex."""
    return hashlib.sha256(action.encode("utf-8")).hexdigest()


def public_path(private_path: Path) -> Path:
    name = private_path.name
    if not name or name in (".", ".."):
        raise ConfigError(f"{str(private_path)!r} is not a key file name")
    stem = name[: -len(".pem")] if name.endswith(".pem") else name
    return private_path.with_name(stem + ".pub.pem")


@dataclass(frozen=True)
class KeyFiles:
    private: str
    public: str
    encrypted: bool
    kid: str


def generate_key(path: Path, passphrase: bytes | None, *, force: bool = False) -> KeyFiles:
    """Write a new P-256 receipt key (0600) and its public key beside it, each atomically
    and never through a symlink (keyadmin.files.write_atomic)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from keyadmin.files import write_atomic

    pub_path = public_path(path)
    if os.path.lexists(path) and not force:
        from keyadmin.errors import UsageError

        raise UsageError(f"{path} exists", hint="pass --force to replace it (old receipts die)")
    key = ec.generate_private_key(ec.SECP256R1())
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    write_atomic(path, pem, 0o600)  # temp file O_EXCL|O_NOFOLLOW, fsync, rename
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_atomic(pub_path, public, 0o644)
    return KeyFiles(str(path), str(pub_path), bool(passphrase), key_id(key.public_key()))


def key_is_encrypted(path: Path) -> bool:
    try:
        head = read_input(path)[:64]
    except OSError as e:
        raise ConfigError(
            f"cannot read the receipt key {path}: {e.strerror}",
            hint="create one with: keyadmin receipt keygen",
        ) from None
    return b"ENCRYPTED" in head


class ReceiptSigner(Es256Signer):
    """Signs receipts (and log anchors) with the private key (held in memory only); the
    JWS itself is ``keyadmin.jws.Es256Signer``'s."""

    @classmethod
    def load(cls, path: Path, passphrase: bytes | bytearray | None = None) -> ReceiptSigner:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        from keyadmin.files import check_trusted_file

        check_trusted_file(path)
        encrypted = key_is_encrypted(path)
        if not encrypted:
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                raise ConfigError(
                    f"the receipt key {path} is not encrypted and has mode {mode:04o}",
                    hint=f"chmod 600 {path}, or make an encrypted one: keyadmin receipt keygen",
                )
        elif not passphrase:
            raise PassphraseRequired(
                f"the receipt key {path} is encrypted; a passphrase is needed",
                hint="type it at the prompt, or set KEYADMIN_RECEIPT_PASSPHRASE",
            )
        try:
            key = serialization.load_pem_private_key(  # takes any buffer: a bytearray
                read_input(path),
                password=passphrase if encrypted else None,  # type: ignore[arg-type]
            )
        except (ValueError, TypeError):
            raise ConfigError(
                f"cannot open the receipt key {path}: wrong passphrase or not a PEM key"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ConfigError(f"the receipt key {path} is not a P-256 key")
        return cls(key)

    def issue(
        self,
        *,
        user: str,
        action_hash: str,
        credential_id: str,
        counter: int,
        challenge_id: str,
        rp_id: str,
        issued_at: datetime,
        lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS,
        log_head: tuple[int, str] | None = None,
    ) -> str:
        iat = int(issued_at.timestamp())
        claims: dict[str, object] = {
            "iss": ISSUER,
            "sub": user,
            "aud": rp_id,
            "act": action_hash,
            "cred": credential_id,
            "ctr": counter,
            "jti": challenge_id,
            "iat": iat,
            "exp": iat + lifetime_seconds,
        }
        if log_head is not None:  # the log row this step-up made: evidence the log had it
            claims["log"] = {"seq": int(log_head[0]), "hash": log_head[1]}
        return self.sign(TYP, claims)

    def issue_for(
        self, result: StepUpResult, *, lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS
    ) -> str:
        """The receipt of a committed step-up (``keyadmin.stepup.finish``'s StepUpResult),
        issued at its time and naming the log row it wrote."""
        from datetime import datetime

        return self.issue(
            user=result.user,
            action_hash=result.action_hash,
            credential_id=result.credential_id,
            counter=result.counter,
            challenge_id=result.challenge_id,
            rp_id=result.rp_id,
            issued_at=datetime.fromisoformat(result.at),
            lifetime_seconds=lifetime_seconds,
            log_head=(result.audit_seq, result.audit_hash) if result.audit_hash else None,
        )


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from keyadmin.files import check_trusted_file

    try:
        key = serialization.load_pem_public_key(read_input(path))
    except OSError as e:
        raise ConfigError(f"cannot read the receipt public key {path}: {e.strerror}") from None
    except ValueError:
        raise ConfigError(f"{path} is not a PEM public key") from None
    check_trusted_file(path)  # whoever can replace it can forge receipts
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError(f"{path} is not an EC public key")
    return key


@dataclass(frozen=True)
class Receipt:
    """A verified receipt's claims."""

    user: str
    action_hash: str
    credential_id: str
    counter: int
    challenge_id: str
    rp_id: str
    issued_at: str
    expires_at: str
    kid: str
    action_checked: bool
    log_seq: int | None = None  # the log row of the step-up (seq, hash), when the receipt names it
    log_hash: str | None = None


class ReceiptLedger(Protocol):
    """Where a verifier records the receipts it has accepted (see ``UsedReceipts``)."""

    def claim(self, jti: str, expires: int, now: int) -> bool:
        """Record ``jti`` as used until ``expires`` (Unix seconds); False if it already was."""
        ...


class UsedReceipts:
    """Receipt ids (jti) already accepted, each kept until its receipt expires.

    In memory, for one process (thread-safe); expired ids are purged on every claim. Several
    processes that must share single use need a shared store with the same ``claim``
    (e.g. a table with the jti as its primary key and an INSERT that fails on a duplicate).
    """

    def __init__(self) -> None:
        self._until: dict[str, int] = {}
        self._lock = threading.Lock()

    def claim(self, jti: str, expires: int, now: int) -> bool:
        with self._lock:
            self._until = {k: v for k, v in self._until.items() if v > now}
            if jti in self._until:
                return False
            self._until[jti] = expires
            return True

    def __len__(self) -> int:
        return len(self._until)


#: Integer claims: a signature counter, and times up to the end of year 9999 (datetime's range).
_INT_CLAIM_MAX = {"ctr": 2**32 - 1, "iat": 253402300799, "exp": 253402300799}


def _text_claim(claims: Mapping[str, object], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str):
        raise ReceiptInvalid(f"the receipt lacks a valid {name!r} claim")
    return value


def _int_claim(claims: Mapping[str, object], name: str) -> int:
    value = claims.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ReceiptInvalid(f"the receipt lacks a valid {name!r} claim")
    if not 0 <= value <= _INT_CLAIM_MAX[name]:
        raise ReceiptInvalid(f"the receipt's {name!r} claim is out of range")
    return value


def _log_claim(claims: Mapping[str, object]) -> tuple[int, str] | None:
    log = claims.get("log")
    if log is None:
        return None
    if isinstance(log, dict):
        seq, digest = log.get("seq"), log.get("hash")
        if (
            isinstance(seq, int)
            and not isinstance(seq, bool)
            and 0 <= seq < 2**63
            and isinstance(digest, str)
            and len(digest) == 64
        ):
            return seq, digest
    raise ReceiptInvalid("the receipt's 'log' claim is malformed")


def verify_receipt(
    token: str,
    public_key: ec.EllipticCurvePublicKey,
    *,
    action: str | None = None,
    now: datetime | None = None,
    used: ReceiptLedger | None = None,
) -> Receipt:
    """Check a receipt offline: signature (low S only), algorithm, key id, expiry, the action
    if given and, with ``used``, that it was not accepted before (then it is recorded).

    Raises ReceiptInvalid naming what failed (ReceiptReused, exit 6, for a second use);
    returns the claims when everything holds.
    """
    claims = verify_statement(token, public_key, TYP, ReceiptInvalid, what="receipt")
    kid = key_id(public_key)
    iss, sub, aud = (_text_claim(claims, n) for n in ("iss", "sub", "aud"))
    act, cred = _text_claim(claims, "act"), _text_claim(claims, "cred")
    ctr = _int_claim(claims, "ctr")
    jti = _text_claim(claims, "jti")
    iat, exp = _int_claim(claims, "iat"), _int_claim(claims, "exp")
    if iss != ISSUER:
        raise ReceiptInvalid(f"the receipt's issuer {iss!r} is not {ISSUER!r}")
    at = now or datetime.now(UTC)
    if at.timestamp() >= exp:
        expired = datetime.fromtimestamp(exp, UTC).isoformat()
        raise ReceiptInvalid(f"the receipt expired at {expired}", expired_at=expired)
    if at.timestamp() < iat - 60:
        raise ReceiptInvalid("the receipt was issued in the future (clock skew?)")
    if action is not None and not hmac.compare_digest(
        act.encode("utf-8", "surrogatepass"), action_hash(action).encode()
    ):
        raise ReceiptInvalid("the receipt is for another action")
    log = _log_claim(claims)
    if used is not None and not used.claim(jti, exp, int(at.timestamp())):
        raise ReceiptReused("the receipt was already used", challenge_id=jti)
    return Receipt(
        user=sub,
        action_hash=act,
        credential_id=cred,
        counter=ctr,
        challenge_id=jti,
        rp_id=aud,
        issued_at=datetime.fromtimestamp(iat, UTC).isoformat(),
        expires_at=datetime.fromtimestamp(exp, UTC).isoformat(),
        kid=kid,
        action_checked=action is not None,
        log_seq=log[0] if log else None,
        log_hash=log[1] if log else None,
    )


# ----------------------------------------------------------------------------- other statements
def sign_statement(signer: Es256Signer, typ: str, claims: Mapping[str, object]) -> str:
    """A compact ES256 JWS of ``claims`` under ``typ`` (``Es256Signer.sign``)."""
    return signer.sign(typ, claims)
