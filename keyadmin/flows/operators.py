"""Operator administration: bootstrap, roles, sessions; and the offline check of the log's
authority evidence (``verify_log``). See docs/operator-guide.md."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from keyadmin.errors import KeyadminError, UsageError
from keyadmin.flows.authority import (
    Authority,
    NotAuthorized,
    challenge_of,
    is_lab,
    prove,
    session_file,
)

DEFAULT_SESSION_MINUTES = 10
MAX_SESSION_MINUTES = 60
#: How long after its statement an authorized row may be written (the command's run time).
STATEMENT_WINDOW = timedelta(minutes=15)

#: Which log rows a signed command may authorize.
ROWS_FOR: dict[str, set[str]] = {
    "enrol": {"enrol.approved", "enrol.refused", "override.stale-metadata"},
    "credential.revoke": {"credential.revoke"},
    "credential.suspend": {"credential.suspend"},
    "credential.reinstate": {"credential.reinstate"},
    "operator.add": {"operator.add"},
    "operator.remove": {"operator.remove"},
    "operator.login": {"operator.login"},
    "operator.bootstrap": {"operator.bootstrap"},
}


@dataclass(frozen=True)
class OperatorChange:
    user: str
    action: str
    roles: tuple[str, ...]
    changed: tuple[str, ...]
    authorized_by: str
    audit_seq: int


@dataclass(frozen=True)
class SessionInfo:
    operator: str
    session: str
    expires_at: str
    minutes: int
    audit_seq: int
    file: str


def bootstrap(db_url: str, user: str, device: Any, interaction: Any) -> OperatorChange:
    """Make ``user`` the first operator, with every role. Refused once any operator exists;
    needs ``user``'s fresh UV assertion (an active enrolled credential on ``device``)."""
    from keyadmin.store import audit, operators
    from keyadmin.store.db import transaction

    roles = list(operators.ROLES)
    if not is_lab(db_url):
        raise NotAuthorized("an operator exists already; bootstrap happens once per registry")
    proof = prove(
        db_url, "operator.bootstrap", {"user": user, "roles": roles}, user, device, interaction
    )
    with transaction(db_url) as s:
        operators.lock(s)
        if operators.any_operator(s):  # another bootstrap won the race
            raise NotAuthorized("an operator exists already; bootstrap happens once per registry")
        entry = audit.append(
            s,
            actor=user,
            action="operator.bootstrap",
            subject=user,
            details={"roles": roles, "authority": proof.evidence},
        )
        operators.grant(s, user, roles, seq=entry.seq)
    return OperatorChange(user, "bootstrap", tuple(roles), tuple(roles), user, entry.seq)


def change_roles(
    db_url: str, authority: Authority, user: str, roles: list[str], *, add: bool
) -> OperatorChange:
    """``operator.add`` / ``operator.remove``: the caller authorized it with ``authority``
    (args ``{"user": user, "roles": sorted roles}``). The last operator-admin stays."""
    from keyadmin.store import audit, operators
    from keyadmin.store.db import transaction

    wanted = operators.check_roles(roles)
    action = "operator.add" if add else "operator.remove"
    with transaction(db_url) as s:
        operators.lock(s)
        if add and not operators.active_credentials(s, user):
            raise NotAuthorized(
                f"{user} has no active credential in the registry; an operator needs one",
                hint=f"enrol a key for {user} first (keyadmin enrol {user} --policy …)",
            )
        if not add and "operator-admin" in wanted:
            if operators.holders(s, "operator-admin") == [user]:
                raise NotAuthorized(
                    f"{user} is the last operator-admin; add another one first",
                    hint="keyadmin operator add OTHER --role operator-admin",
                )
        entry = audit.append(
            s,
            actor=authority.operator,
            action=action,
            subject=user,
            details={"roles": wanted, "authority": authority.evidence},
        )
        if add:
            changed = operators.grant(s, user, wanted, seq=entry.seq)
        else:
            changed = operators.take(s, user, wanted)
            if not operators.roles_of(s, user):
                operators.end_sessions(s, user=user)
        left = sorted(operators.roles_of(s, user))
    return OperatorChange(user, action, tuple(left), tuple(changed), authority.operator, entry.seq)


def list_operators(db_url: str) -> list[Any]:
    from keyadmin.store import operators
    from keyadmin.store.db import transaction

    with transaction(db_url) as s:
        return operators.list_operators(s)


# ----------------------------------------------------------------------------- sessions
def login(
    db_url: str,
    operator: str,
    minutes: int,
    device: Any,
    interaction: Any,
    *,
    sessions: Path | None = None,
) -> SessionInfo:
    """Start a short session: the operator's fresh UV assertion over {session id, minutes};
    the secret goes to a 0600 file outside the registry, its SHA-256 into the registry."""
    from keyadmin.flows.authority import require_role
    from keyadmin.store import audit, operators
    from keyadmin.store.db import transaction

    if not 1 <= minutes <= MAX_SESSION_MINUTES:
        raise UsageError(f"--minutes must be 1 to {MAX_SESSION_MINUTES}")
    if is_lab(db_url):
        raise NotAuthorized(
            "no operator is bootstrapped (lab mode): there is nothing to log in to",
            hint="keyadmin operator bootstrap USER",
        )
    require_role(db_url, operator, None, "operator.login")
    sid = secrets.token_hex(16)
    proof = prove(
        db_url,
        "operator.login",
        {"session": sid, "minutes": minutes},
        operator,
        device,
        interaction,
    )
    secret = os.urandom(32)
    now = datetime.now(UTC)
    expires = now + timedelta(minutes=minutes)
    assert proof.credential_id is not None
    with transaction(db_url) as s:
        entry = audit.append(
            s,
            actor=operator,
            action="operator.login",
            subject=operator,
            details={
                "session": sid,
                "minutes": minutes,
                "expires_at": expires.isoformat(),
                "authority": proof.evidence,
            },
        )
        operators.create_session(
            s,
            id=sid,
            user=operator,
            credential_id=bytes.fromhex(proof.credential_id),
            secret_sha256=hashlib.sha256(secret).hexdigest(),
            created_at=now,
            expires_at=expires,
            login_seq=entry.seq,
        )
    path = session_file(db_url, sessions)
    _write_private(path, {"session": sid, "secret": secret.hex(), "operator": operator})
    return SessionInfo(operator, sid, expires.isoformat(), minutes, entry.seq, str(path))


def _write_private(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def logout(db_url: str, *, sessions: Path | None = None) -> SessionInfo:
    """End this registry's operator session: revoked in the registry, its file deleted."""
    from keyadmin.store import audit, operators
    from keyadmin.store.db import transaction

    path = session_file(db_url, sessions)
    try:
        data = json.loads(path.read_text())
        sid = str(data["session"])
    except FileNotFoundError:
        raise UsageError("no operator session for this registry") from None
    except (ValueError, KeyError, TypeError, OSError):
        path.unlink(missing_ok=True)
        raise UsageError("the session file was unreadable; it is deleted") from None
    with transaction(db_url) as s:
        rec = operators.get_session(s, sid)
        operators.end_sessions(s, id=sid)
        seq = 0
        if rec is not None:
            seq = audit.append(
                s,
                actor=rec.user,
                action="operator.logout",
                subject=rec.user,
                details={
                    "session": sid,
                    "authority": {"operator": rec.user, "session": sid, "role": None},
                },
            ).seq
    path.unlink(missing_ok=True)
    if rec is None:  # not (or no longer) in this registry: the file is gone all the same
        return SessionInfo(str(data.get("operator", "")), sid, "", 0, 0, str(path))
    minutes = round((rec.expires_at - rec.created_at).total_seconds() / 60)
    return SessionInfo(rec.user, sid, rec.expires_at.isoformat(), minutes, seq, str(path))


# ----------------------------------------------------------------------------- offline check
@dataclass(frozen=True)
class AuthorityReport:
    ok: bool
    rows_checked: int
    assertions_verified: int
    session_rows: int
    lab_rows: int
    problems: list[dict[str, Any]] = field(default_factory=list)


def verify_log(db_url: str) -> AuthorityReport:
    """Check every log row's ``authority`` evidence: each assertion verifies under the public
    key logged (which must be that registry credential's key, of that operator), over
    SHA-256 of its statement, whose command and arguments are the row's; each
    session-authorized row falls inside a logged, verified, unended login; no lab-mode row
    after the bootstrap; no evidence used twice for the same kind of row."""
    from keyadmin.store import audit, operators
    from keyadmin.store.db import transaction

    problems: list[dict[str, Any]] = []
    verified = session_rows = lab_rows = checked = 0
    bootstrapped = False
    sessions: dict[str, tuple[str, datetime, bool]] = {}  # id -> (operator, expires, ended)
    seen: set[tuple[str, str]] = set()
    with transaction(db_url) as s:
        rows = audit.entries(s)

        def check(ev: Any, row: Any, command: str, actor: str | None) -> str | None:
            try:
                _check_assertion(s, operators, ev, row, command, actor)
            except (KeyadminError, KeyError, TypeError, ValueError, AttributeError) as e:
                return e.message if isinstance(e, KeyadminError) else f"malformed evidence ({e})"
            return None

        for row in rows:
            ev = row.details.get("authority") if isinstance(row.details, dict) else None
            if ev is None:
                continue
            checked += 1
            problem = None
            at = _aware(datetime.fromisoformat(row.at))
            if not isinstance(ev, dict):
                problem = "the authority evidence is not an object"
            elif ev.get("lab") is True:
                lab_rows += 1
                if bootstrapped:
                    problem = "a lab-mode row after the operator bootstrap"
            elif "assertion" in ev:
                command = str(ev.get("statement", {}).get("command", ""))
                problem = check(ev, row, command, row.actor)
                key = (str(ev.get("statement", {}).get("nonce")), row.action)
                if problem is None and key in seen:
                    problem = "this authorization evidence was used before for the same action"
                seen.add(key)
                if problem is None:
                    verified += 1
                    if row.action == "operator.bootstrap":
                        bootstrapped = True
                    if row.action == "operator.login":
                        minutes = int(row.details["minutes"])
                        sessions[row.details["session"]] = (
                            row.actor,
                            at + timedelta(minutes=minutes),
                            False,
                        )
            elif "session" in ev:
                session_rows += 1
                known = sessions.get(str(ev["session"]))
                if known is None:
                    problem = "the session has no verified login row before this row"
                elif known[0] != row.actor or ev.get("operator") != row.actor:
                    problem = "the session belongs to another operator"
                elif known[2] or at > known[1]:
                    problem = "the session had ended (logout or expiry) before this row"
                elif row.action in ("operator.login", "operator.bootstrap"):
                    problem = f"{row.action} cannot be authorized by a session"
                if problem is None and row.action == "operator.logout":
                    sessions[str(ev["session"])] = (known[0], known[1], True)  # type: ignore[index]
            else:
                problem = "the authority evidence names neither an assertion nor a session"
            if problem is None and isinstance(ev, dict) and isinstance(ev.get("witness"), dict):
                wit = ev["witness"]
                problem = check(wit, row, "enrol.witness", None)
                if problem is None and wit.get("operator") in (ev.get("operator"), row.subject):
                    problem = "the witness is the operator or the enrolled user"
                if problem is None:
                    verified += 1
            if problem is not None:
                problems.append({"seq": row.seq, "action": row.action, "problem": problem})
    return AuthorityReport(not problems, checked, verified, session_rows, lab_rows, problems)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _check_assertion(
    s: Any, operators: Any, ev: dict[str, Any], row: Any, command: str, actor: str | None
) -> None:
    from keyadmin.stepup.verify import (
        b64url_decode,
        check_auth_data,
        check_client_data,
        check_signature,
        parse_auth_data,
    )

    stmt = ev["statement"]
    if command == "enrol.witness":
        if stmt.get("command") != command:
            raise KeyadminError("the witness's statement is for another command")
    elif command not in ROWS_FOR or row.action not in ROWS_FOR[command]:
        raise KeyadminError(f"a {command!r} authorization cannot authorize a {row.action} row")
    for k, v in stmt["args"].items():
        if k == "user" and v != row.subject:
            raise KeyadminError("the statement names another user than the row")
        if k != "user" and k in row.details and row.details[k] != v:
            raise KeyadminError(f"the statement's {k} differs from the row's")
    if actor is not None and ev["operator"] != actor:
        raise KeyadminError("the row's actor is not the operator who signed")
    if not int(stmt["seq"]) < row.seq:
        raise KeyadminError("the statement is not older than the row")
    signed_at = datetime.fromisoformat(stmt["time"])
    row_at = _aware(datetime.fromisoformat(row.at))
    if not signed_at - timedelta(seconds=5) <= row_at <= signed_at + STATEMENT_WINDOW:
        raise KeyadminError("the row was written long after (or before) the signed statement")
    a = ev["assertion"]
    cred = operators.credential(s, bytes.fromhex(a["credential"]))
    if cred is None or cred.user != ev["operator"]:
        raise KeyadminError(f"the credential is not a registry credential of {ev['operator']}")
    if cred.public_key_cose.hex() != ev["public_key"]:
        raise KeyadminError("the logged public key is not the registry's key for the credential")
    auth_data = b64url_decode(a["authenticator_data"])
    client_data = b64url_decode(a["client_data_json"])
    check_signature(
        bytes.fromhex(ev["public_key"]), auth_data, client_data, b64url_decode(a["signature"])
    )
    check_client_data(client_data, challenge=challenge_of(stmt), origins=cred.origins)
    check_auth_data(
        parse_auth_data(auth_data),
        rp_id=str(ev["rp_id"]),
        registered_backup_eligible=cred.backup_eligible,
        device_bound=False,
    )
    if ev["rp_id"] != cred.rp_id:
        raise KeyadminError("the assertion is for another relying party than the credential's")
