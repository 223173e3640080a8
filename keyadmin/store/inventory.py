"""The physical key inventory: one row per key (``ka_key``), its lifecycle state, and every
change as a row of the tamper-evident log in the same transaction.

States: in-stock -> issued -> lost / returned -> destroyed (TRANSITIONS). A key becomes
issued only through enrolment (``bind``), which ties the credential, the serial and the user.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

from keyadmin.errors import KeyadminError, UsageError
from keyadmin.store import audit

if TYPE_CHECKING:
    from sqlmodel import Session

    from keyadmin.store.models import KeyRow
    from keyadmin.store.registry import CredentialRecord, UserRecord

STATES = ("in-stock", "issued", "lost", "returned", "destroyed")
#: verb -> (states it may start from, the state it leaves the key in)
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "lost": (frozenset({"in-stock", "issued", "returned"}), "lost"),
    "returned": (frozenset({"issued", "lost"}), "returned"),
    "restocked": (frozenset({"returned"}), "in-stock"),
    "destroyed": (frozenset({"in-stock", "issued", "lost", "returned"}), "destroyed"),
}
#: credentials that still open doors
LIVE = ("active", "suspended", "quarantined")
MAX_FIELD = 200


class KeyNotFound(KeyadminError):
    pass


@dataclass(frozen=True)
class KeyRecord:
    serial: str
    model: str | None
    aaguid: str | None
    batch: str | None
    location: str | None
    state: str
    user: str | None
    firmware: str | None
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class NewKey:
    """One parsed, checked row of an import file."""

    serial: str
    model: str | None
    aaguid: str | None
    batch: str | None
    location: str | None


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def normal_serial(text: str) -> str:
    """A serial as keyadmin compares it: NFC, surrounding spaces dropped; printable only."""
    serial = unicodedata.normalize("NFC", text).strip()
    if not serial or len(serial) > 128 or not serial.isprintable():
        raise UsageError(
            f"bad key serial {text!r}", hint="1 to 128 printable characters, e.g. 23456789"
        )
    return serial


def _record(row: KeyRow, user: str | None) -> KeyRecord:
    return KeyRecord(
        serial=row.serial,
        model=row.model,
        aaguid=row.aaguid,
        batch=row.batch,
        location=row.location,
        state=row.state,
        user=user,
        firmware=row.firmware,
        created_at=_iso(row.created_at),
        updated_at=_iso(row.updated_at),
    )


def _user_name(session: Session, user_id: int | None) -> str | None:
    from keyadmin.store.models import UserRow

    if user_id is None:
        return None
    row = session.get(UserRow, user_id)
    return row.name if row else None


def _row(session: Session, serial: str) -> KeyRow | None:
    from sqlmodel import select

    from keyadmin.store.models import KeyRow

    return session.exec(select(KeyRow).where(KeyRow.serial == normal_serial(serial))).first()


def find_key(session: Session, serial: str) -> KeyRecord | None:
    row = _row(session, serial)
    return _record(row, _user_name(session, row.user_id)) if row else None


def get_key(session: Session, serial: str) -> KeyRecord:
    found = find_key(session, serial)
    if found is None:
        raise KeyNotFound(f"no key {serial!r} in the inventory", hint="see: keyadmin keys list")
    return found


def list_keys(
    session: Session, *, state: str | None = None, user: str | None = None
) -> list[KeyRecord]:
    from sqlmodel import select

    from keyadmin.store.models import KeyRow, UserRow

    if state is not None and state not in STATES:
        raise UsageError(f"unknown key state {state!r}", hint=f"one of {', '.join(STATES)}")
    q = select(KeyRow, UserRow.name).outerjoin(
        UserRow,
        UserRow.id == KeyRow.user_id,  # type: ignore[arg-type]
    )
    if state is not None:
        q = q.where(KeyRow.state == state)
    if user is not None:
        q = q.where(UserRow.name == unicodedata.normalize("NFC", user))
    q = q.order_by(KeyRow.serial)  # type: ignore[arg-type]
    return [_record(row, name) for row, name in session.exec(q).all()]


def credentials_on(session: Session, serial: str) -> list[CredentialRecord]:
    """The registry's credentials (CredentialRecord) enrolled on the key with this serial."""
    from keyadmin.store import registry
    from keyadmin.store.models import CredentialRow

    q = registry._query_credentials(session).where(CredentialRow.key_serial == serial)
    q = q.order_by(CredentialRow.id)  # type: ignore[arg-type]
    return [registry._cred_record(c, u, sha) for c, u, sha in session.exec(q).all()]


def import_keys(
    session: Session,
    keys: list[NewKey],
    *,
    actor: str,
    authority: Mapping[str, object] | None = None,
) -> int:
    """Add keys in stock, one log row each; all or nothing (a known serial is refused)."""
    from sqlmodel import select

    from keyadmin.store.models import KeyRow

    serials = [k.serial for k in keys]
    known: set[str] = set()
    for start in range(0, len(serials), 500):
        chunk = serials[start : start + 500]
        known.update(
            session.exec(select(KeyRow.serial).where(KeyRow.serial.in_(chunk))).all()  # type: ignore[attr-defined]
        )
    if known:
        first = sorted(known)[0]
        raise UsageError(
            f"key {first} is already in the inventory ({len(known)} of the file's serials are)",
            hint="remove the keys already imported from the file; nothing was imported",
        )
    now = _now()
    for k in keys:
        row = KeyRow(
            serial=k.serial,
            model=k.model,
            aaguid=k.aaguid,
            batch=k.batch,
            location=k.location,
            state="in-stock",
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        entry = audit.append(
            session,
            actor=actor,
            action="key.import",
            subject=k.serial,
            details={
                "serial": k.serial,
                "model": k.model,
                "aaguid": k.aaguid,
                "batch": k.batch,
                "location": k.location,
                "to": "in-stock",
                **({"authority": authority} if authority is not None else {}),
            },
        )
        row.change_seq = entry.seq
    session.flush()
    return len(keys)


def _log_change(
    session: Session,
    row: KeyRow,
    action: str,
    *,
    actor: str,
    before: str,
    details: Mapping[str, object],
    authority: Mapping[str, object] | None,
) -> None:
    entry = audit.append(
        session,
        actor=actor,
        action=action,
        subject=row.serial,
        details={
            "serial": row.serial,
            "from": before,
            "to": row.state,
            **details,
            **({"authority": authority} if authority is not None else {}),
        },
    )
    row.change_seq = entry.seq
    row.updated_at = _now()
    session.add(row)
    session.flush()


def _plan(session: Session, serial: str, verb: str, reason: str) -> tuple[KeyRow, str]:
    """The key's row and the state ``verb`` would give it, or the change's own error."""
    if verb not in TRANSITIONS:
        raise UsageError(f"unknown key state change {verb!r}")
    if not reason.strip():
        raise UsageError("a reason is required", hint="pass --reason TEXT")
    row = _row(session, serial)
    if row is None:
        raise KeyNotFound(f"no key {serial!r} in the inventory", hint="see: keyadmin keys list")
    allowed, after = TRANSITIONS[verb]
    if row.state not in allowed:
        raise UsageError(
            f"key {row.serial} is {row.state}; it cannot be marked {after}",
            hint="a destroyed key stays destroyed" if row.state == "destroyed" else None,
        )
    return row, after


def _to_suspend(session: Session, serial: str, after: str) -> list[CredentialRecord]:
    """The active credentials a key going to state ``after`` takes down with it."""
    if after not in ("lost", "destroyed"):
        return []
    return [c for c in credentials_on(session, serial) if c.status == "active"]


def plan_state_change(
    session: Session, serial: str, verb: str, reason: str
) -> tuple[KeyRecord, str, list[CredentialRecord]]:
    """What change_state would do, writing nothing: the key, its new state and the
    credentials it would suspend; or the error change_state raises."""
    row, after = _plan(session, serial, verb, reason)
    key = _record(row, _user_name(session, row.user_id))
    return key, after, _to_suspend(session, row.serial, after)


def change_state(
    session: Session,
    serial: str,
    verb: str,
    *,
    reason: str,
    actor: str,
    authority: Mapping[str, object] | None = None,
) -> tuple[KeyRecord, list[CredentialRecord]]:
    """Move a key along TRANSITIONS, logged as ``key.VERB``. A key that is lost (or destroyed
    while issued) has its active credentials suspended in the same transaction, each with its
    own ``credential.suspend`` log row. Returns the key and the suspended credentials."""
    from keyadmin.store import registry

    row, after = _plan(session, serial, verb, reason)
    before = row.state
    user = _user_name(session, row.user_id)
    row.state = after
    if after in ("in-stock", "returned", "destroyed"):
        row.user_id = None
    _log_change(
        session,
        row,
        f"key.{verb}",
        actor=actor,
        before=before,
        details={"reason": reason, "user": user},
        authority=authority,
    )
    suspended = [
        registry.change_status(
            session,
            cred.id,
            "suspend",
            reason=f"key {row.serial} marked {after}: {reason}",
            actor=actor,
            authority=authority,
        )
        for cred in _to_suspend(session, row.serial, after)
    ]
    return _record(row, _user_name(session, row.user_id)), suspended


def bind(
    session: Session,
    serial: str,
    *,
    user: UserRecord,
    credential_id: str,
    firmware: str | None,
    actor: str,
    authority: Mapping[str, object] | None = None,
) -> None:
    """Enrolment: the key (when in the inventory, in stock or returned) is issued to ``user``
    with this credential. A key already issued to the same user stays issued (a second
    credential on it); a lost, destroyed or another user's key keeps its state."""
    row = _row(session, serial)
    if row is None:
        return
    if firmware:
        row.firmware = firmware
    if row.state == "issued" and row.user_id == user.id:
        session.add(row)
        return
    if row.state not in ("in-stock", "returned"):
        # lost, destroyed or someone else's: enrolment flagged it (policy [inventory]); the
        # key's state is the desk's to change, not enrolment's
        session.add(row)
        return
    before = row.state
    row.state, row.user_id = "issued", user.id
    _log_change(
        session,
        row,
        "key.issued",
        actor=actor,
        before=before,
        details={"user": user.name, "credential": credential_id},
        authority=authority,
    )


@dataclass(frozen=True)
class Estate:
    """Every key and credential as plain tuples, read in three queries (keys report and
    advisories run over 100,000 of each)."""

    keys: list[EstateKey]
    credentials: list[EstateCredential]
    users: list[str]


#: (serial, state, user, model, aaguid, firmware)
EstateKey = tuple[str, str, str | None, str | None, str | None, str | None]
#: (registry id, credential id hex, user, status, key serial, aaguid, firmware, metadata no.,
#: enrolment date YYYY-MM-DD UTC)
EstateCredential = tuple[int, str, str, str, str | None, str, str | None, int | None, str]
#: SQL_ESTATE_CREDENTIALS's row as the driver returns it (created_at: SQLite's text or a
#: PostgreSQL datetime)
_CredentialColumns = tuple[
    int, bytes, str, str, str | None, str, str | None, int | None, "datetime | str"
]


def _day(value: datetime | str) -> str:
    """A stored timestamp's UTC date (SQLite hands back text, PostgreSQL a datetime)."""
    if isinstance(value, datetime):
        return (
            (value if value.tzinfo else value.replace(tzinfo=UTC))
            .astimezone(UTC)
            .date()
            .isoformat()
        )
    return str(value)[:10]


#: plain SQL: no per-value type processing on 100,000 rows (the column types are simple)
SQL_ESTATE_KEYS = (
    "SELECT k.serial, k.state, u.name, k.model, k.aaguid, k.firmware FROM ka_key k "
    "LEFT JOIN ka_user u ON u.id = k.user_id ORDER BY k.serial"
)
SQL_ESTATE_CREDENTIALS = (
    "SELECT c.id, c.credential_id, u.name, c.status, c.key_serial, c.aaguid, c.firmware, "
    "c.metadata_no, c.created_at FROM ka_credential c JOIN ka_user u ON u.id = c.user_id "
    "ORDER BY c.id"
)
SQL_ESTATE_USERS = "SELECT name FROM ka_user ORDER BY name"


def _rows(session: Session, sql: str) -> list[tuple[object, ...]]:
    """Rows of a parameterless query straight from the DB-API cursor (sqlite3, psycopg)."""
    dbapi = session.connection().connection.dbapi_connection
    if dbapi is None:  # a pooled connection that was invalidated under the session
        raise KeyadminError("the registry connection was closed", hint="retry the command")
    cursor = dbapi.cursor()
    try:
        cursor.execute(sql)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def read_estate(session: Session) -> Estate:
    # the column types are the SQL's (and the schema's): named here, not converted per value
    creds = cast("list[_CredentialColumns]", _rows(session, SQL_ESTATE_CREDENTIALS))
    return Estate(
        keys=cast("list[EstateKey]", [tuple(r) for r in _rows(session, SQL_ESTATE_KEYS)]),
        credentials=[
            (r[0], bytes(r[1]).hex(), r[2], r[3], r[4], r[5], r[6], r[7], _day(r[8])) for r in creds
        ],
        users=[r[0] for r in cast("list[tuple[str]]", _rows(session, SQL_ESTATE_USERS))],
    )
