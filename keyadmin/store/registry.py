"""The registry's operations: users, credentials, evidence, policy versions, status changes.

Each function takes a session from ``keyadmin.store.db.transaction`` (so the caller decides
what commits together) and returns frozen records, never ORM rows. Every state change
appends to the audit log in the same transaction.
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from keyadmin.errors import KeyadminError, UsageError
from keyadmin.store import audit, state

if TYPE_CHECKING:
    from sqlmodel import Session
    from sqlmodel.sql.expression import Select

    from keyadmin.store.models import CredentialRow, UserRow

_Row = TypeVar("_Row", "UserRow", "CredentialRow")

STATUSES = ("active", "suspended", "revoked", "quarantined")
#: WebAuthn signature counters are unsigned 32-bit.
MAX_SIGN_COUNT = 2**32 - 1


class NotFound(KeyadminError):
    pass


class DuplicateCredential(KeyadminError):
    """The credential (or the same key) is registered already."""


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands back naive UTC
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


@dataclass(frozen=True)
class UserRecord:
    id: int
    name: str
    display_name: str | None
    user_handle: bytes
    created_at: str


@dataclass(frozen=True)
class CredentialRecord:
    id: int
    credential_id: str  # hex
    user: str
    user_handle: str  # hex
    aaguid: str
    sign_count: int
    status: str
    status_reason: str | None
    nickname: str | None
    transports: tuple[str, ...]
    backup_eligible: bool
    backed_up: bool
    created_at: str
    last_used_at: str | None
    metadata_no: int | None
    policy_sha256: str | None
    operator: str
    witness: str | None
    public_key_cose: str  # hex
    key_serial: str | None = None  # the physical key's serial (enterprise attestation)
    firmware: str | None = None  # the key's firmware at enrolment

    def label(self) -> str:
        """How people name the key: ``alice's key "primary" (enrolled 2026-12-01, last used
        never) [id 3]`` (never the number alone)."""
        nick = f'"{self.nickname}"' if self.nickname else "(no nickname)"
        used = self.last_used_at[:10] if self.last_used_at else "never"
        return (
            f"{self.user}'s key {nick} (enrolled {self.created_at[:10] or '?'}, last used "
            f"{used}) [id {self.id}]"
        )


def _id(row: UserRow | CredentialRow) -> int:
    """A stored row's id (rows are flushed before they are read back)."""
    if row.id is None:
        raise KeyadminError(f"a {type(row).__name__} was read before it was stored")
    return row.id


def _stored(session: Session, model: type[_Row], id: int) -> _Row:
    """The row ``id`` of ``model``, read in this transaction (it must exist)."""
    row = session.get(model, id)
    if row is None:
        raise NotFound(f"{model.__name__} {id} is not in the registry")
    return row


def _user_record(row: UserRow) -> UserRecord:
    return UserRecord(
        _id(row), row.name, row.display_name, row.user_handle, _iso(row.created_at) or ""
    )


def _cred_record(row: CredentialRow, user: UserRow, policy_sha: str | None) -> CredentialRecord:
    return CredentialRecord(
        id=_id(row),
        credential_id=row.credential_id.hex(),
        user=user.name,
        user_handle=user.user_handle.hex(),
        aaguid=row.aaguid,
        sign_count=row.sign_count,
        status=row.status,
        status_reason=row.status_reason,
        nickname=row.nickname,
        transports=tuple(json.loads(row.transports or "[]")),
        backup_eligible=row.backup_eligible,
        backed_up=row.backed_up,
        created_at=_iso(row.created_at) or "",
        last_used_at=_iso(row.last_used_at),
        metadata_no=row.metadata_no,
        policy_sha256=policy_sha,
        operator=row.operator,
        witness=row.witness,
        public_key_cose=row.public_key.hex(),
        key_serial=row.key_serial,
        firmware=row.firmware,
    )


# ----------------------------------------------------------------------------- users
def user_name(name: str, what: str = "user name") -> str:
    """The NFC form of a user (or display) name; refused (UsageError) when empty, longer than
    200 characters, with leading or trailing spaces, or holding any character Python does
    not call printable: controls (C0, DEL, C1 such as 0x9b), format characters (bidi
    overrides and isolates, zero-width spaces and joiners, BOM), separators other than the
    ASCII space, surrogates, private-use and unassigned code points. Mixed-script look-alikes
    are not detected."""
    norm = unicodedata.normalize("NFC", name)
    bad = [c for c in norm if not c.isprintable()]
    if bad or not norm or len(norm) > 200 or norm != norm.strip(" "):
        shown = ", ".join(f"U+{ord(c):04X}" for c in dict.fromkeys(bad))
        raise UsageError(
            f"bad {what} {norm!r}" + (f": it holds {shown}" if bad else ""),
            hint="1 to 200 printable characters; no control, direction-changing or "
            "invisible characters, no leading or trailing spaces",
        )
    return norm


def find_user(session: Session, name: str) -> UserRecord | None:
    from sqlmodel import select

    from keyadmin.store.models import UserRow

    name = unicodedata.normalize("NFC", name)
    row = session.exec(select(UserRow).where(UserRow.name == name)).first()
    return _user_record(row) if row else None


def get_or_create_user(
    session: Session,
    name: str,
    display_name: str | None = None,
    user_handle: bytes | None = None,
) -> UserRecord:
    from keyadmin.store.models import UserRow

    name = user_name(name)
    if display_name is not None:
        display_name = user_name(display_name, "display name")
    found = find_user(session, name)
    if found:
        return found
    row = UserRow(
        name=name,
        display_name=display_name or name,
        user_handle=user_handle or os.urandom(32),
        created_at=_now(),
    )
    session.add(row)
    session.flush()
    return _user_record(row)


# ----------------------------------------------------------------------------- policy versions
def record_policy(
    session: Session,
    *,
    sha256: str,
    name: str,
    path: str,
    content: str,
    authority: Mapping[str, object] | None = None,
) -> int:
    """Store a policy's text once per hash; log the first sighting (with the ``authority``
    of the command that brought it, when given). Returns its row id."""
    from sqlmodel import select

    from keyadmin.store.models import PolicyVersionRow

    row = session.exec(select(PolicyVersionRow).where(PolicyVersionRow.sha256 == sha256)).first()
    if row and row.id is not None:
        return row.id
    row = PolicyVersionRow(sha256=sha256, name=name, path=path, content=content, first_seen=_now())
    session.add(row)
    session.flush()
    audit.append(
        session,
        actor="keyadmin",
        action="policy.new-version",
        subject=name,
        details={
            "sha256": sha256,
            "path": path,
            **({"authority": authority} if authority is not None else {}),
        },
    )
    assert row.id is not None
    return row.id


# ----------------------------------------------------------------------------- credentials
def add_credential(
    session: Session,
    *,
    user: UserRecord,
    credential_id: bytes,
    public_key_cose: bytes,
    sign_count: int,
    aaguid: str,
    transports: list[str],
    backup_eligible: bool,
    backed_up: bool,
    nickname: str | None,
    evidence: Mapping[str, object],
    decision: Mapping[str, object],
    attestation_object: bytes,
    client_data_json: bytes,
    policy_version_id: int,
    metadata_no: int | None,
    operator: str,
    witness: str | None,
    authority: Mapping[str, object] | None = None,
    key_serial: str | None = None,
    firmware: str | None = None,
    flags: list[str] | None = None,
) -> CredentialRecord:
    """``key_serial``: read from a verified enterprise attestation only (flows.enterprise)."""
    from sqlmodel import select

    from keyadmin.store.models import CredentialRow, EvidenceRow, PolicyVersionRow, UserRow

    if session.exec(
        select(CredentialRow).where(CredentialRow.credential_id == credential_id)
    ).first():
        raise DuplicateCredential("this credential is registered already")
    now = _now()
    ev = EvidenceRow(
        attestation_object=attestation_object,
        client_data_json=client_data_json,
        evidence_json=json.dumps(evidence, sort_keys=True),
        decision_json=json.dumps(decision, sort_keys=True),
        verified_at=now,
    )
    session.add(ev)
    session.flush()
    row = CredentialRow(
        credential_id=credential_id,
        user_id=user.id,
        public_key=public_key_cose,
        sign_count=sign_count,
        aaguid=aaguid,
        transports=json.dumps(sorted(transports)),
        backup_eligible=backup_eligible,
        backed_up=backed_up,
        status="active",
        nickname=nickname,
        created_at=now,
        updated_at=now,
        evidence_id=ev.id,
        policy_version_id=policy_version_id,
        metadata_no=metadata_no,
        operator=operator,
        witness=witness,
        key_serial=key_serial,
        firmware=firmware,
    )
    session.add(row)
    session.flush()
    policy = session.get(PolicyVersionRow, policy_version_id)
    entry = audit.append(
        session,
        actor=operator,
        action="enrol.approved",
        subject=user.name,
        details={
            "credential": credential_id.hex(),
            "aaguid": aaguid,
            "policy_sha256": policy.sha256 if policy else None,
            "metadata_no": metadata_no,
            "witness": witness,
            **({"key_serial": key_serial} if key_serial is not None else {}),
            **({"flags": flags} if flags else {}),
            "state": state.credential_state(
                credential_id=credential_id,
                user=user.name,
                public_key=public_key_cose,
                aaguid=aaguid,
                status="active",
                counter=sign_count,
                seen=sign_count,
            ),  # fmt: skip
            **({"authority": authority} if authority is not None else {}),
        },
    )
    row.change_seq = entry.seq
    session.add(row)
    session.flush()
    owner = _stored(session, UserRow, user.id)
    return _cred_record(row, owner, policy.sha256 if policy else None)


def _query_credentials(session: Session) -> Select[CredentialRow, UserRow, str]:
    from sqlmodel import select

    from keyadmin.store.models import CredentialRow, PolicyVersionRow, UserRow

    return (
        select(CredentialRow, UserRow, PolicyVersionRow.sha256)
        .join(UserRow, UserRow.id == CredentialRow.user_id)  # type: ignore[arg-type]
        .outerjoin(
            PolicyVersionRow,
            PolicyVersionRow.id == CredentialRow.policy_version_id,  # type: ignore[arg-type]
        )
    )


def list_credentials(
    session: Session, *, user: str | None = None, status: str | None = None
) -> list[CredentialRecord]:
    from keyadmin.store.models import CredentialRow, UserRow

    if status is not None and status not in STATUSES:
        raise UsageError(f"unknown status {status!r}", hint=f"one of {', '.join(STATUSES)}")
    q = _query_credentials(session)
    if user is not None:
        q = q.where(UserRow.name == unicodedata.normalize("NFC", user))
    if status is not None:
        q = q.where(CredentialRow.status == status)
    q = q.order_by(CredentialRow.id)  # type: ignore[arg-type]
    return [_cred_record(c, u, sha) for c, u, sha in session.exec(q).all()]


def get_credential(session: Session, ref: str | int) -> CredentialRecord:
    """By registry id (an int; or text: a number under 8 digits, or ``#N`` of any size), by
    ``USER/NICKNAME``, or by credential id (hex, or a unique hex prefix >= 8). keyadmin's own
    code passes ints."""
    from keyadmin.store.models import CredentialRow, UserRow

    q = _query_credentials(session)
    if not isinstance(ref, str):
        rows = session.exec(q.where(CredentialRow.id == int(ref))).all()
    elif ref.startswith("#") and ref[1:].isdigit():
        rows = session.exec(q.where(CredentialRow.id == int(ref[1:]))).all()
    elif ref.isdigit() and len(ref) < 8:
        rows = session.exec(q.where(CredentialRow.id == int(ref))).all()
    elif "/" in ref:  # USER/NICKNAME, as the desk names a key
        name, _, nickname = ref.partition("/")
        rows = session.exec(
            q.where(
                UserRow.name == unicodedata.normalize("NFC", name),
                CredentialRow.nickname == nickname,
            )
        ).all()
        if not rows:
            raise NotFound(
                f"{name} has no key nicknamed {nickname!r}",
                hint=f"see: keyadmin creds list --user {name}",
            )
    else:
        try:
            bytes.fromhex(ref if len(ref) % 2 == 0 else ref + "0")
        except ValueError:
            raise UsageError(f"{ref!r} is neither a registry id nor a hex credential id") from None
        rows = [
            r for r in session.exec(q).all() if r[0].credential_id.hex().startswith(ref.lower())
        ]
    if not rows:
        raise NotFound(f"no credential {ref!r} in the registry", hint="see: keyadmin creds list")
    if len(rows) > 1:
        raise UsageError(f"{ref!r} matches {len(rows)} credentials; give more of the id")
    c, u, sha = rows[0]
    return _cred_record(c, u, sha)


ALLOWED_TRANSITIONS = {
    "suspend": ({"active"}, "suspended"),
    "revoke": ({"active", "suspended", "quarantined"}, "revoked"),
    "reinstate": ({"suspended", "quarantined"}, "active"),
    "quarantine": ({"active", "suspended"}, "quarantined"),
}


def plan_status_change(
    session: Session, ref: str | int, verb: str, reason: str
) -> tuple[CredentialRecord, str]:
    """The credential ``ref`` and the status ``verb`` would give it, or the error the change
    itself raises (unknown verb, no reason, unknown ref, a transition not allowed). Writes
    nothing: change_status and the commands' --dry-run both start here."""
    if verb not in ALLOWED_TRANSITIONS:
        raise UsageError(f"unknown status change {verb!r}")
    if not reason.strip():
        raise UsageError("a reason is required", hint="pass --reason TEXT")
    before, after = ALLOWED_TRANSITIONS[verb]
    record = get_credential(session, ref)
    if record.status not in before:
        raise UsageError(
            f"credential {record.credential_id[:16]}… is {record.status}; cannot {verb} it",
            hint="revoked credentials stay revoked" if record.status == "revoked" else None,
        )
    return record, after


def change_status(
    session: Session,
    ref: str | int | None,
    verb: str,
    *,
    reason: str,
    actor: str,
    authority: Mapping[str, object] | None = None,
) -> CredentialRecord:
    """``authority`` (keyadmin.flows.authority's evidence) goes into the log row's details.
    ``ref`` None is a row's id before it was stored (``CredentialRow.id`` is optional):
    NotFound."""
    from keyadmin.store.models import CredentialRow

    if ref is None:
        raise NotFound("no credential without a registry id", hint="see: keyadmin creds list")
    record, after = plan_status_change(session, ref, verb, reason)
    row = _stored(session, CredentialRow, record.id)
    row.status, row.status_reason, row.updated_at = after, reason, _now()
    before_state = state.logged_state(session, row.change_seq, row.credential_id)
    entry = audit.append(
        session,
        actor=actor,
        action=f"credential.{verb}",
        subject=record.user,
        details={
            "credential": record.credential_id,
            "from": record.status,
            "to": after,
            "reason": reason,
            "state": state.credential_state(
                credential_id=row.credential_id,
                user=record.user,
                public_key=row.public_key,
                aaguid=row.aaguid,
                status=after,
                counter=row.sign_count,
                seen=state.seen_of(before_state) if before_state else row.sign_count,
            ),  # fmt: skip
            **({"authority": authority} if authority is not None else {}),
        },
    )
    row.change_seq = entry.seq
    session.add(row)
    session.flush()
    return get_credential(session, record.id)


def plan_set_counter(session: Session, ref: str | int, value: int, reason: str) -> CredentialRecord:
    """The credential whose counter set_counter would set, or its error; writes nothing."""
    if not reason.strip():
        raise UsageError("a reason is required", hint="pass --reason TEXT")
    if not 0 <= value <= MAX_SIGN_COUNT:
        raise UsageError(
            f"counter {value} is outside 0..{MAX_SIGN_COUNT}",
            hint="WebAuthn signature counters are unsigned 32-bit numbers",
        )
    return get_credential(session, ref)


def set_counter(
    session: Session,
    ref: str | int,
    value: int,
    *,
    reason: str,
    actor: str,
    authority: Mapping[str, object] | None = None,
) -> CredentialRecord:
    """Set a credential's signature counter on purpose (a repair), logged with the old and
    new value. Compare-and-set on the value read: a step-up committed meanwhile makes this
    fail (run it again) rather than be overwritten unseen."""
    from sqlalchemy import update

    from keyadmin.store.models import CredentialRow

    record = plan_set_counter(session, ref, value, reason)
    entry = audit.append(
        session,
        actor=actor,
        action="credential.set-counter",
        subject=record.user,
        details={
            "credential": record.credential_id,
            "from": record.sign_count,
            "to": value,
            "reason": reason,
            "state": state.credential_state(
                credential_id=bytes.fromhex(record.credential_id),
                user=record.user,
                public_key=bytes.fromhex(record.public_key_cose),
                aaguid=record.aaguid,
                status=record.status,
                counter=value,
                seen=value,
            ),
            **({"authority": authority} if authority is not None else {}),
        },
    )
    t = CredentialRow.__table__  # type: ignore[attr-defined]
    done = session.exec(
        update(t)
        .where(t.c.id == record.id, t.c.sign_count == record.sign_count)
        .values(sign_count=value, change_seq=entry.seq, updated_at=_now())
    ).rowcount
    if done != 1:
        raise KeyadminError(
            f"the counter of credential #{record.id} changed while it was being set "
            "(a step-up meanwhile?); nothing was changed",
            hint="check it with keyadmin creds show, then run the command again",
        )
    session.flush()
    session.expire_all()  # the ORM's copy of the row predates the UPDATE
    return get_credential(session, record.id)


@dataclass(frozen=True)
class UserCoverage:
    user: str
    active: int
    suspended: int
    revoked: int
    quarantined: int
    minimum: int | None
    compliant: bool | None


def user_coverage(session: Session, minimum: int | None = None) -> list[UserCoverage]:
    from sqlmodel import select

    from keyadmin.store.models import CredentialRow, UserRow

    users = session.exec(select(UserRow).order_by(UserRow.name)).all()  # type: ignore[arg-type]
    counts: dict[int, dict[str, int]] = {}
    for uid, status in session.exec(select(CredentialRow.user_id, CredentialRow.status)).all():
        counts.setdefault(uid, {}).setdefault(status, 0)
        counts[uid][status] += 1
    out = []
    for u in users:
        c = counts.get(_id(u), {})
        active = c.get("active", 0)
        out.append(
            UserCoverage(
                user=u.name,
                active=active,
                suspended=c.get("suspended", 0),
                revoked=c.get("revoked", 0),
                quarantined=c.get("quarantined", 0),
                minimum=minimum,
                compliant=None if minimum is None else active >= minimum,
            )
        )
    return out
