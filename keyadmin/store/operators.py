"""Operators in the registry: their roles, their credentials' keys, their sessions.

An operator is a registry user with at least one row in ka_operator_role. Functions take a
session from ``keyadmin.store.db.transaction`` and return frozen records, never ORM rows.
``lock`` serialises writers that must check-then-insert (bootstrap, the last
operator-admin): it holds the audit head row, which every log append locks anyway.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement
    from sqlmodel import Session

from keyadmin.errors import UsageError

#: Every role an operator can hold (docs/operator-guide.md says what each allows).
ROLES = ("enrol", "lifecycle", "device", "metadata", "sync", "audit", "operator-admin")


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class OperatorRecord:
    user: str
    roles: tuple[str, ...]
    granted_at: str


@dataclass(frozen=True)
class OperatorCredential:
    """One credential of a user, with what verifying its assertions needs."""

    row_id: int
    user: str
    credential_id: bytes
    public_key_cose: bytes
    sign_count: int
    backup_eligible: bool
    status: str
    rp_id: str | None
    origins: tuple[str, ...]


@dataclass(frozen=True)
class SessionRecord:
    id: str
    user: str
    credential_id: bytes
    secret_sha256: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    login_seq: int


def lock(session: Session) -> None:
    """Hold the audit head row (FOR UPDATE) until the transaction ends."""
    from sqlmodel import select

    from keyadmin.store.models import AuditHeadRow

    session.exec(select(AuditHeadRow).where(AuditHeadRow.id == 1).with_for_update()).one()


def head_seq(session: Session) -> int:
    from sqlmodel import select

    from keyadmin.store.models import AuditHeadRow

    return int(session.exec(select(AuditHeadRow.seq).where(AuditHeadRow.id == 1)).one())


def any_operator(session: Session) -> bool:
    from sqlmodel import select

    from keyadmin.store.models import OperatorRoleRow

    return session.exec(select(OperatorRoleRow.id).limit(1)).first() is not None


def _user_id(session: Session, user: str) -> int | None:
    from sqlmodel import select

    from keyadmin.store.models import UserRow

    return session.exec(select(UserRow.id).where(UserRow.name == user)).first()


def roles_of(session: Session, user: str) -> set[str]:
    from sqlmodel import select

    from keyadmin.store.models import OperatorRoleRow, UserRow

    q = (
        select(OperatorRoleRow.role)
        .join(UserRow, UserRow.id == OperatorRoleRow.user_id)  # type: ignore[arg-type]
        .where(UserRow.name == user)
    )
    return set(session.exec(q).all())


def holders(session: Session, role: str) -> list[str]:
    from sqlmodel import select

    from keyadmin.store.models import OperatorRoleRow, UserRow

    q = (
        select(UserRow.name)
        .join(OperatorRoleRow, UserRow.id == OperatorRoleRow.user_id)  # type: ignore[arg-type]
        .where(OperatorRoleRow.role == role)
    )
    return sorted(session.exec(q).all())


def list_operators(session: Session) -> list[OperatorRecord]:
    from sqlmodel import select

    from keyadmin.store.models import OperatorRoleRow, UserRow

    q = select(UserRow.name, OperatorRoleRow.role, OperatorRoleRow.granted_at).join(
        UserRow,
        UserRow.id == OperatorRoleRow.user_id,  # type: ignore[arg-type]
    )
    by_user: dict[str, tuple[list[str], datetime]] = {}
    for name, role, at in session.exec(q).all():
        roles, first = by_user.setdefault(name, ([], at))
        roles.append(role)
        by_user[name] = (roles, min(first, at))
    return [
        OperatorRecord(name, tuple(sorted(roles)), _aware(at).isoformat())
        for name, (roles, at) in sorted(by_user.items())
    ]


def check_roles(roles: list[str]) -> list[str]:
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise UsageError(
            f"unknown role(s): {', '.join(unknown)}" if unknown else "name at least one --role",
            hint=f"roles: {', '.join(ROLES)}",
        )
    return sorted(set(roles))


def grant(session: Session, user: str, roles: list[str], *, seq: int) -> list[str]:
    """Give ``user`` these roles; returns the ones that were new."""
    from keyadmin.store.models import OperatorRoleRow

    uid = _user_id(session, user)
    if uid is None:
        raise UsageError(f"{user} is not a registry user", hint="enrol a key for them first")
    have = roles_of(session, user)
    new = [r for r in check_roles(roles) if r not in have]
    now = datetime.now(UTC)
    for role in new:
        session.add(OperatorRoleRow(user_id=uid, role=role, granted_at=now, granted_seq=seq))
    session.flush()
    return new


def take(session: Session, user: str, roles: list[str]) -> list[str]:
    """Remove these roles from ``user``; returns the ones that were held."""
    from sqlmodel import col, delete

    from keyadmin.store.models import OperatorRoleRow

    uid = _user_id(session, user)
    held = [r for r in check_roles(roles) if r in roles_of(session, user)]
    if uid is not None and held:
        session.exec(
            delete(OperatorRoleRow).where(
                col(OperatorRoleRow.user_id) == uid, col(OperatorRoleRow.role).in_(held)
            )
        )
        session.flush()
    return held


# ----------------------------------------------------------------------------- credentials
def _relying_party(content: str | None) -> tuple[str | None, tuple[str, ...]]:
    """rp_id and origins from a stored policy text (None when it names none)."""
    if not content:
        return None, ()
    try:
        rp = tomllib.loads(content).get("relying_party", {})
    except tomllib.TOMLDecodeError:
        return None, ()
    origins = rp.get("origins") or []
    rp_id = rp.get("rp_id")
    return (rp_id if isinstance(rp_id, str) else None), tuple(
        o for o in origins if isinstance(o, str)
    )


def _credentials(session: Session, where: ColumnElement[bool]) -> list[OperatorCredential]:
    from sqlmodel import select

    from keyadmin.store.models import CredentialRow, PolicyVersionRow, UserRow

    q = (
        select(CredentialRow, UserRow.name, PolicyVersionRow.content)
        .join(UserRow, UserRow.id == CredentialRow.user_id)  # type: ignore[arg-type]
        .outerjoin(
            PolicyVersionRow,
            PolicyVersionRow.id == CredentialRow.policy_version_id,  # type: ignore[arg-type]
        )
        .where(where)
        .order_by(CredentialRow.id)  # type: ignore[arg-type]
    )
    out = []
    for c, name, content in session.exec(q).all():
        rp_id, origins = _relying_party(content)
        assert c.id is not None  # a stored row
        out.append(
            OperatorCredential(
                row_id=c.id,
                user=name,
                credential_id=bytes(c.credential_id),
                public_key_cose=bytes(c.public_key),
                sign_count=int(c.sign_count),
                backup_eligible=bool(c.backup_eligible),
                status=c.status,
                rp_id=rp_id,
                origins=origins,
            )
        )
    return out


def active_credentials(session: Session, user: str) -> list[OperatorCredential]:
    from sqlmodel import col

    from keyadmin.store.models import UserRow

    return [
        c
        for c in _credentials(session, col(UserRow.name) == user)
        if c.status == "active" and c.rp_id and c.origins
    ]


def credential(session: Session, credential_id: bytes) -> OperatorCredential | None:
    """Any credential by id, whatever its status now (for checking old log rows)."""
    from sqlmodel import col

    from keyadmin.store.models import CredentialRow

    found = _credentials(session, col(CredentialRow.credential_id) == credential_id)
    return found[0] if found else None


def advance_counter(
    session: Session,
    row_id: int,
    new: int,
    *,
    strict: bool,
    public_key: bytes,
    actor: str,
    action: str,
) -> bool:
    """Check the operator's credential row against its state in the log, then compare-and-set
    its counter and record the new state (``operator.assertion``), in the caller's
    transaction. False when ``strict`` and the counter did not advance; raises
    ``state.NotBound`` when the row (or its public key) is not what the log recorded."""
    import hmac

    from sqlalchemy import text, update

    from keyadmin.store import audit, state
    from keyadmin.store.models import CredentialRow

    row = session.execute(
        text(
            "SELECT k.credential_id, u.name, k.public_key, k.aaguid, k.status, k.sign_count, "
            "k.change_seq, a.seq, a.at, a.actor, a.action, a.subject, a.details, a.prev_hash, "
            "a.hash, n.prev_hash FROM ka_credential k JOIN ka_user u ON u.id = k.user_id "
            "LEFT JOIN ka_audit a ON a.seq = k.change_seq "
            "LEFT JOIN ka_audit n ON n.seq = k.change_seq + 1 WHERE k.id = :id"
        ),
        {"id": row_id},
    ).one_or_none()
    if row is None or not hmac.compare_digest(bytes(row[2]), bytes(public_key)):
        raise state.NotBound("the credential row changed while it was being checked")
    state.check_bound(
        credential_id=bytes(row[0]), user=row[1], public_key=bytes(row[2]), aaguid=row[3],
        status=row[4], counter=int(row[5]), change_seq=int(row[6] or 0),
        log_row=tuple(row[7:15]) if row[7] is not None else None, next_prev_hash=row[15],
    )  # fmt: skip
    t = CredentialRow.__table__  # type: ignore[attr-defined]
    q = update(t).where(t.c.id == row_id)
    if strict:
        q = q.where(t.c.sign_count < new)
    if session.exec(q.values(sign_count=new)).rowcount != 1:
        return False
    entry = audit.append(
        session,
        actor=actor,
        action="operator.assertion",
        subject=row[1],
        details={
            "credential": bytes(row[0]).hex(),
            "for": action,
            "state": state.credential_state(
                credential_id=bytes(row[0]),
                user=row[1],
                public_key=bytes(row[2]),
                aaguid=row[3],
                status=row[4],
                counter=new,
                seen=new,
            ),  # fmt: skip
        },
    )
    session.execute(update(t).where(t.c.id == row_id).values(change_seq=entry.seq))
    return True


# ----------------------------------------------------------------------------- sessions
def create_session(
    session: Session,
    *,
    id: str,
    user: str,
    credential_id: bytes,
    secret_sha256: str,
    created_at: datetime,
    expires_at: datetime,
    login_seq: int,
) -> None:
    from keyadmin.store.models import OperatorSessionRow

    uid = _user_id(session, user)
    assert uid is not None
    session.add(
        OperatorSessionRow(
            id=id,
            user_id=uid,
            credential_id=credential_id,
            secret_sha256=secret_sha256,
            created_at=created_at,
            expires_at=expires_at,
            login_seq=login_seq,
        )
    )
    session.flush()


def get_session(session: Session, id: str) -> SessionRecord | None:
    from sqlmodel import select

    from keyadmin.store.models import OperatorSessionRow, UserRow

    row = session.exec(
        select(OperatorSessionRow, UserRow.name)
        .join(UserRow, UserRow.id == OperatorSessionRow.user_id)  # type: ignore[arg-type]
        .where(OperatorSessionRow.id == id)
    ).first()
    if row is None:
        return None
    s, name = row
    return SessionRecord(
        id=s.id,
        user=name,
        credential_id=bytes(s.credential_id),
        secret_sha256=s.secret_sha256,
        created_at=_aware(s.created_at),
        expires_at=_aware(s.expires_at),
        revoked_at=_aware(s.revoked_at) if s.revoked_at else None,
        login_seq=s.login_seq,
    )


def end_sessions(session: Session, *, id: str | None = None, user: str | None = None) -> list[str]:
    """Revoke one session, or every live session of a user; returns the ids revoked."""
    from sqlmodel import col, select

    from keyadmin.store.models import OperatorSessionRow

    q = select(OperatorSessionRow).where(col(OperatorSessionRow.revoked_at).is_(None))
    if id is not None:
        q = q.where(OperatorSessionRow.id == id)
    if user is not None:
        q = q.where(OperatorSessionRow.user_id == _user_id(session, user))
    now = datetime.now(UTC)
    ended = []
    for row in session.exec(q).all():
        row.revoked_at = now
        session.add(row)
        ended.append(row.id)
    session.flush()
    return ended
