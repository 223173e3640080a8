"""Who authorized a privileged command, with evidence an auditor can check offline.

``authorize`` is the one entry point. A registry with no operator runs in LAB MODE: the
command runs, and its log rows say ``"authority": {"lab": true, ...}`` (authority not
provable). Once an operator is bootstrapped, a privileged command needs either

* a fresh UV assertion of one of the operator's active credentials over a challenge bound to
  this exact action: ``challenge = SHA-256(canonical JSON of the statement)``, the statement
  being ``{v, command, args, seq (the log head), nonce, time}``; the evidence (statement,
  credential id, authenticatorData, clientDataJSON, signature, public key) goes into the
  log row's details under ``authority``; or
* a live operator session (``keyadmin operator login``, itself started by such an
  assertion): the row names the session and the login row that holds its assertion.

The assertion is checked with keyadmin.stepup.verify (signature, clientData challenge and
origin, rpIdHash, UP and UV, backup eligibility) and its counter must advance (strict).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keyadmin.errors import CounterViolation, PolicyRefused

if TYPE_CHECKING:
    from keyadmin.device.interaction import Interaction
    from keyadmin.device.port import Device

#: The role each authorized command needs (None: any operator, e.g. to log in).
ROLE_FOR: dict[str, str | None] = {
    "enrol": "enrol",
    "enrol.witness": "enrol",
    "credential.revoke": "lifecycle",
    "credential.suspend": "lifecycle",
    "credential.reinstate": "lifecycle",
    "credential.set-counter": "lifecycle",
    "key.import": "lifecycle",
    "key.lost": "lifecycle",
    "key.returned": "lifecycle",
    "key.restocked": "lifecycle",
    "key.destroyed": "lifecycle",
    "log.bind-state": "operator-admin",
    "sync": "sync",
    "audit.enforce": "audit",
    "mds.import": "metadata",
    "mds.update": "metadata",
    "device.pin.set": "device",
    "device.pin.change": "device",
    "device.config.always-uv": "device",
    "device.config.min-pin-length": "device",
    "device.config.enable-ep": "device",
    "device.credential.delete": "device",
    "device.reset": "device",
    "device.prepare": "device",
    "operator.add": "operator-admin",
    "operator.remove": "operator-admin",
    "operator.login": None,
    "operator.bootstrap": None,
}

OpenDevice = Callable[[], AbstractContextManager["Device"]]
ASSERTION_TIMEOUT_MS = 60000


class NotAuthorized(PolicyRefused):
    """No (valid) operator authorization for a privileged command (exit 3)."""


@dataclass(frozen=True)
class Authority:
    """Who authorized an action, and the evidence for the log row (``details['authority']``)."""

    operator: str
    lab: bool
    evidence: dict[str, Any] = field(default_factory=dict)
    credential_id: str | None = None
    counter: int | None = None
    session: str | None = None


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def challenge_of(statement: dict[str, Any]) -> bytes:
    """The challenge the key signs: SHA-256 of the statement's canonical JSON."""
    return hashlib.sha256(canonical(statement)).digest()


def statement(action: str, args: dict[str, Any], seq: int, now: datetime) -> dict[str, Any]:
    return {
        "v": 1,
        "command": action,
        "args": json.loads(canonical(args)),  # only JSON survives: what is signed is logged
        "seq": seq,
        "nonce": secrets.token_hex(16),
        "time": now.astimezone(UTC).isoformat(),
    }


def sessions_dir() -> Path:
    from keyadmin.config import data_dir

    return data_dir() / "sessions"


def session_file(db_url: str, directory: Path | None = None) -> Path:
    """Where this registry's operator session secret lives (0600, outside the registry)."""
    name = hashlib.sha256(db_url.encode()).hexdigest()[:24]
    return (directory or sessions_dir()) / f"{name}.json"


def is_lab(db_url: str) -> bool:
    from keyadmin.store import operators
    from keyadmin.store.db import transaction

    with transaction(db_url) as s:
        return not operators.any_operator(s)


# ----------------------------------------------------------------------------- the entry point
def authorize(
    db_url: str,
    action: str,
    args: dict[str, Any],
    *,
    operator: str | None,
    open_device: OpenDevice | None,
    interaction: Interaction | None,
    sessions: Path | None = None,
    now: datetime | None = None,
) -> Authority:
    """Authorize ``action`` with ``args`` for ``operator``: lab mode, the operator's key at
    the desk (``open_device``), or their session. Raises NotAuthorized (exit 3), PinError
    (exit 5), CounterViolation (exit 6)."""
    from keyadmin.store import operators
    from keyadmin.store.db import transaction

    role = ROLE_FOR[action]
    with transaction(db_url) as s:
        lab = not operators.any_operator(s)
    if lab:
        claimed = operator or "unknown"
        return Authority(claimed, True, {"lab": True, "operator": claimed})
    if open_device is not None:
        if not operator:
            raise NotAuthorized("name the operator whose key authorizes this (--operator NAME)")
        require_role(db_url, operator, role, action)
        if interaction is None:
            from keyadmin.errors import KeyadminError

            raise KeyadminError("internal: an operator's key needs an interaction for its PIN")
        with open_device() as device:
            return prove(db_url, action, args, operator, device, interaction, now=now)
    return _from_session(db_url, action, role, session_file(db_url, sessions), now)


def require_role(db_url: str, user: str, role: str | None, action: str) -> None:
    from keyadmin.store import operators
    from keyadmin.store.db import transaction

    with transaction(db_url) as s:
        held = operators.roles_of(s, user)
    if not held:
        raise NotAuthorized(
            f"{user} is not an operator", hint="an operator-admin adds them: keyadmin operator add"
        )
    if role is not None and role not in held:
        raise NotAuthorized(
            f"{user} lacks the {role} role needed for {action}",
            hint=f"an operator-admin grants it: keyadmin operator add {user} --role {role}",
        )


def prove(
    db_url: str,
    action: str,
    args: dict[str, Any],
    user: str,
    device: Device,
    interaction: Interaction,
    *,
    now: datetime | None = None,
) -> Authority:
    """A fresh UV assertion of ``user``'s credential on ``device`` over the statement of
    ``action`` and ``args``; verified, counter advanced. No role check (callers do it)."""
    from keyadmin.b64 import encode_url
    from keyadmin.device.ceremony import AssertionRequest
    from keyadmin.device.errors import NoCredentials
    from keyadmin.stepup.verify import (
        check_auth_data,
        check_client_data,
        check_signature,
        parse_auth_data,
    )
    from keyadmin.store import operators
    from keyadmin.store.db import transaction

    at = (now or datetime.now(UTC)).astimezone(UTC)
    with transaction(db_url) as s:
        creds = operators.active_credentials(s, user)
        seq = operators.head_seq(s)
    if not creds:
        raise NotAuthorized(
            f"{user} has no active credential in the registry",
            hint="an operator needs an enrolled key of their own (keyadmin enrol USER …)",
        )
    rp_id = creds[0].rp_id
    assert rp_id is not None
    same_rp = [c for c in creds if c.rp_id == rp_id]
    stmt = statement(action, args, seq, at)
    challenge = challenge_of(stmt)
    request = AssertionRequest(
        rp_id=rp_id,
        origin=same_rp[0].origins[0],
        challenge=challenge,
        allow_credentials=tuple(c.credential_id for c in same_rp),
        timeout_ms=ASSERTION_TIMEOUT_MS,
    )
    try:
        assertion = device.get_assertion(request, interaction)
    except NoCredentials:
        from keyadmin.store import registry

        with transaction(db_url) as s:
            held = registry.list_credentials(s, user=user, status="active")
        raise NotAuthorized(
            f"this key holds none of {user}'s active credentials: "
            + "; ".join(c.label() for c in held),
            hint=f"{user} authorizes with their own key named above",
        ) from None
    cred = next((c for c in same_rp if c.credential_id == assertion.credential_id), None)
    if cred is None:
        raise NotAuthorized(f"the key answered with a credential that is not {user}'s")
    check_signature(
        cred.public_key_cose,
        assertion.authenticator_data,
        assertion.client_data_json,
        assertion.signature,
    )
    check_client_data(assertion.client_data_json, challenge=challenge, origins=cred.origins)
    auth = parse_auth_data(assertion.authenticator_data)
    check_auth_data(
        auth, rp_id=rp_id, registered_backup_eligible=cred.backup_eligible, device_bound=False
    )
    strict = not (auth.counter == 0 and cred.sign_count == 0)  # a key that never counts
    from keyadmin.store import state

    try:
        with transaction(db_url) as s:
            advanced = operators.advance_counter(
                s, cred.row_id, auth.counter, strict=strict, public_key=cred.public_key_cose,
                actor=user, action=action,
            )  # fmt: skip
    except state.NotBound as e:
        raise NotAuthorized(
            f"{user}'s credential row does not match the log: {e}",
            hint="the registry was edited outside keyadmin; run: keyadmin log verify",
        ) from None
    if not advanced:
        from keyadmin.notify import event, send

        send([event("counter-anomaly", f"the counter of operator {user}'s credential did not "
                    f"advance ({auth.counter} after {cred.sign_count}) authorizing {action}",
                    user=user, credential_id=cred.credential_id.hex())])  # fmt: skip
        raise CounterViolation(
            f"the signature counter of {user}'s credential did not advance "
            f"({auth.counter} after {cred.sign_count}): a cloned key or a replay"
        )
    evidence = {
        "operator": user,
        "role": ROLE_FOR.get(action),
        "statement": stmt,
        "assertion": {
            "credential": cred.credential_id.hex(),
            "authenticator_data": encode_url(assertion.authenticator_data),
            "client_data_json": encode_url(assertion.client_data_json),
            "signature": encode_url(assertion.signature),
        },
        "public_key": cred.public_key_cose.hex(),
        "rp_id": rp_id,
    }
    return Authority(
        user, False, evidence, credential_id=cred.credential_id.hex(), counter=auth.counter
    )


def _from_session(
    db_url: str, action: str, role: str | None, path: Path, now: datetime | None
) -> Authority:
    from keyadmin.store import operators
    from keyadmin.store.db import transaction

    how = "pass --operator-device DEV (your own key), or start a session: keyadmin operator login"
    if not path.is_file():
        raise NotAuthorized(f"{action} needs an operator's authorization", hint=how)
    if path.stat().st_mode & 0o077:
        raise NotAuthorized(
            f"the operator session file {path} is readable by others; it is not used",
            hint="keyadmin operator logout, then log in again",
        )
    try:
        data = json.loads(path.read_text())
        sid, secret = str(data["session"]), bytes.fromhex(str(data["secret"]))
    except (ValueError, KeyError, TypeError, OSError):
        raise NotAuthorized(f"the operator session file {path} is unreadable", hint=how) from None
    at = (now or datetime.now(UTC)).astimezone(UTC)
    with transaction(db_url) as s:
        rec = operators.get_session(s, sid)
        digest = hashlib.sha256(secret).hexdigest()
        if rec is None or not hmac.compare_digest(digest.encode(), rec.secret_sha256.encode()):
            raise NotAuthorized("the operator session is not valid for this registry", hint=how)
        if rec.revoked_at is not None or at >= rec.expires_at:
            raise NotAuthorized("the operator session has ended (logged out or expired)", hint=how)
        cred = operators.credential(s, rec.credential_id)
        if cred is None or cred.status != "active":
            raise NotAuthorized("the credential that opened the session is no longer active")
    require_role(db_url, rec.user, role, action)
    evidence = {"operator": rec.user, "role": role, "session": rec.id, "login_seq": rec.login_seq}
    return Authority(rec.user, False, evidence, session=rec.id)


# ----------------------------------------------------------------------------- dual control
@dataclass(frozen=True)
class WitnessProof:
    """The witness's assertion, in the shape keyadmin.flows.enrol takes as ``witness_proof``."""

    user: str
    credential_id: str
    counter: int
    challenge_id: str  # the statement's nonce
    action_hash: str  # the challenge (SHA-256 of the statement), hex
    audit_seq: int | None
    evidence: dict[str, Any]


def witness(
    db_url: str,
    *,
    witness: str,
    operator: Authority,
    subject: str,
    args: dict[str, Any],
    device: Device,
    interaction: Interaction,
) -> WitnessProof:
    """The witness proves presence with a UV assertion of their OWN credential over the
    enrolment's statement. Outside lab mode the witness must be an operator with the enrol
    role. The witness may be neither the operator (as authorized, not as claimed) nor the
    user being enrolled, and the witness's key may not hold the operator's credential."""
    from keyadmin.flows.enrol import check_witness

    check_witness(witness, user=subject, operator=operator.operator)
    if not operator.lab:
        _require_witness_role(db_url, witness)
    proof = prove(db_url, "enrol.witness", args, witness, device, interaction)
    if not operator.lab:
        ensure_not_on_key(
            db_url, device, interaction, operator.operator, why="the operator's own credential"
        )
    assert proof.credential_id is not None and proof.counter is not None
    stmt = proof.evidence["statement"]
    return WitnessProof(
        user=witness,
        credential_id=proof.credential_id,
        counter=proof.counter,
        challenge_id=stmt["nonce"],
        action_hash=challenge_of(stmt).hex(),
        audit_seq=None,
        evidence=proof.evidence,
    )


def _require_witness_role(db_url: str, user: str) -> None:
    from keyadmin.flows.enrol import EnrolmentRefused

    try:
        require_role(db_url, user, "enrol", "enrol.witness")
    except NotAuthorized as e:
        raise EnrolmentRefused(
            f"the witness must be an operator with the enrol role: {e.message}",
            hint="ask another operator with the enrol role (keyadmin operator list)",
        ) from None


def ensure_not_on_key(
    db_url: str, device: Device, interaction: Interaction, user: str, *, why: str
) -> None:
    """Refuse when ``device`` holds any credential of ``user`` in the registry.

    Credential management with the key's PIN lists every discoverable credential (keyadmin
    enrols discoverable credentials only), credProtect level 3 included; a silent getAssertion
    probe (up=false, no UV) would not see those, and always-UV keys refuse it. A key without
    credential management cannot be checked: refused (fail closed).
    """
    from keyadmin.device.interaction import pin_or_ask
    from keyadmin.errors import KeyadminError, PinError
    from keyadmin.flows.enrol import EnrolmentRefused
    from keyadmin.store import operators
    from keyadmin.store.db import transaction

    with transaction(db_url) as s:
        creds = operators.active_credentials(s, user)
    ids = {c.credential_id.hex() for c in creds}
    for rp_id in sorted({c.rp_id for c in creds if c.rp_id}):
        pin = pin_or_ask(interaction, rp_id)
        if not pin:
            raise PinError("the key's PIN is needed to check which credentials it holds")
        try:
            on_key = device.list_credentials(pin, rp_id)
        except PinError:
            raise
        except KeyadminError as e:
            raise EnrolmentRefused(
                f"cannot check that this key does not hold {why} ({e.message})",
                hint="dual control needs a key with credential management (CTAP 2.1)",
            ) from None
        if any(c.credential_id in ids for c in on_key):
            raise EnrolmentRefused(
                f"this key holds {why} ({user}): dual control needs the witness on another "
                "physical key (the same key cannot vouch for itself)",
                hint="the witness uses their own key; enrol this one with another witness",
            )
