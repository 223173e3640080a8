"""Operator administration: bootstrap, roles, sessions. See docs/operator-guide.md."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from keyadmin.errors import UsageError
from keyadmin.flows.authority import (
    Authority,
    NotAuthorized,
    is_lab,
    prove,
    session_file,
)

DEFAULT_SESSION_MINUTES = 10
MAX_SESSION_MINUTES = 60


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
