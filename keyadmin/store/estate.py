"""Whole-estate reads and bulk writes on the registry, for audit and for large imports.

* :func:`iter_audit_rows` streams every credential to re-evaluate with its stored evidence
  bytes (one Core query, no ORM objects).
* :func:`recorded_firmware` reads the firmware version recorded with a credential's decision
  (``decision_json["device"]["firmware"]``) when enrolment recorded one.
* :func:`bulk_add_credentials` inserts many already-approved credentials in one transaction
  with one audit entry per batch (data generators for tests and benchmarks use it; so could an
  import from another registry).
* :func:`bulk_change_status` changes many credentials' status, one audit entry each.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from keyadmin.errors import UsageError
from keyadmin.store import audit, state

AuditRow = tuple[int, bytes, bytes]
"""(registry id, attestation object, client data JSON)"""


def iter_audit_rows(session: Any, statuses: Sequence[str]) -> Iterator[AuditRow]:
    """Every credential in ``statuses`` with its evidence bytes (no particular order).

    Only what grouping needs is read; names and ids of the few credentials that fail come
    from :func:`credential_details` afterwards.
    """
    from sqlalchemy import select

    from keyadmin.store.models import CredentialRow, EvidenceRow

    c = CredentialRow.__table__.c  # type: ignore[attr-defined]
    e = EvidenceRow.__table__.c  # type: ignore[attr-defined]
    q = (
        select(c.id, e.attestation_object, e.client_data_json)
        .select_from(CredentialRow.__table__)  # type: ignore[attr-defined]
        .outerjoin(EvidenceRow.__table__, e.id == c.evidence_id)  # type: ignore[attr-defined]
        .where(c.status.in_(list(statuses)))
    )
    # The driver's own cursor: SQLAlchemy's per-row result processing would cost as much as
    # the read itself at 100,000 rows. The statement has no user input (constant statuses are
    # rendered as literals by SQLAlchemy's compiler for this dialect).
    conn = session.connection()
    sql = str(q.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    cur = conn.connection.dbapi_connection.cursor()
    try:
        cur.execute(sql)
        while True:
            chunk = cur.fetchmany(5000)
            if not chunk:
                break
            for r in chunk:
                yield (r[0], bytes(r[1] or b""), bytes(r[2] or b""))
    finally:
        cur.close()


def credential_details(session: Any, ids: Sequence[int]) -> dict[int, tuple[bytes, str, str]]:
    """Registry id -> (credential id, user name, AAGUID)."""
    from sqlalchemy import select

    from keyadmin.store.models import CredentialRow, UserRow

    c = CredentialRow.__table__.c  # type: ignore[attr-defined]
    u = UserRow.__table__.c  # type: ignore[attr-defined]
    out: dict[int, tuple[bytes, str, str]] = {}
    ids = list(ids)
    for i in range(0, len(ids), 1000):
        q = (
            select(c.id, c.credential_id, u.name, c.aaguid)
            .join_from(CredentialRow.__table__, UserRow.__table__, c.user_id == u.id)  # type: ignore[attr-defined]
            .where(c.id.in_(ids[i : i + 1000]))
        )
        for rid, cid, name, aaguid in session.execute(q):
            out[int(rid)] = (bytes(cid), name, aaguid)
    return out


def users_below(session: Any, minimum: int) -> list[tuple[str, int]]:
    """(user, active keys) for every user holding fewer than ``minimum`` active keys."""
    from sqlalchemy import case, func, select

    from keyadmin.store.models import CredentialRow, UserRow

    c = CredentialRow.__table__.c  # type: ignore[attr-defined]
    u = UserRow.__table__.c  # type: ignore[attr-defined]
    active = func.coalesce(func.sum(case((c.status == "active", 1), else_=0)), 0)
    q = (
        select(u.name, active)
        .select_from(UserRow.__table__.outerjoin(CredentialRow.__table__, c.user_id == u.id))  # type: ignore[attr-defined]
        .group_by(u.name)
        .having(active < minimum)
        .order_by(u.name)
    )
    return [(name, int(n)) for name, n in session.execute(q)]


def recorded_firmware(
    session: Any, aaguids: Sequence[str], statuses: Sequence[str]
) -> dict[int, tuple[str, str | None]]:
    """Registry id -> (AAGUID, firmware recorded at enrolment or None), for these models."""
    from sqlalchemy import select

    from keyadmin.store.models import CredentialRow, EvidenceRow

    if not aaguids:
        return {}
    c = CredentialRow.__table__.c  # type: ignore[attr-defined]
    e = EvidenceRow.__table__.c  # type: ignore[attr-defined]
    q = (
        select(c.id, c.aaguid, e.decision_json)
        .select_from(CredentialRow.__table__)  # type: ignore[attr-defined]
        .outerjoin(EvidenceRow.__table__, e.id == c.evidence_id)  # type: ignore[attr-defined]
        .where(c.aaguid.in_(list(aaguids)), c.status.in_(list(statuses)))
    )
    out: dict[int, tuple[str, str | None]] = {}
    for rid, aaguid, text in session.execute(q):
        try:
            device = json.loads(text or "{}").get("device") or {}
        except ValueError:
            device = {}
        fw = device.get("firmware") if isinstance(device, dict) else None
        out[int(rid)] = (aaguid, str(fw) if fw is not None else None)
    return out


@dataclass(frozen=True)
class NewCredential:
    """One approved credential with its evidence, for :func:`bulk_add_credentials`."""

    user: str
    user_handle: bytes
    credential_id: bytes
    public_key_cose: bytes
    sign_count: int
    aaguid: str
    transports: tuple[str, ...]
    attestation_object: bytes
    client_data_json: bytes
    evidence: dict[str, Any]
    decision: dict[str, Any]
    backup_eligible: bool = False
    backed_up: bool = False


def bulk_add_credentials(
    session: Any,
    creds: Sequence[NewCredential],
    *,
    operator: str,
    policy_version_id: int | None,
    metadata_no: int | None = None,
    reason: str,
) -> int:
    """Insert approved credentials (and their users) in the caller's transaction.

    One ``credential.bulk-import`` audit entry names them all (by credential id); every new
    row's ``change_seq`` is that entry's seq. Returns the number inserted.
    """
    from sqlalchemy import insert, select

    from keyadmin.store.models import CredentialRow, EvidenceRow, UserRow

    if not reason.strip():
        raise UsageError("a reason is required for a bulk import")
    if not creds:
        return 0
    now = datetime.now(UTC)
    ut = UserRow.__table__  # type: ignore[attr-defined]
    et = EvidenceRow.__table__  # type: ignore[attr-defined]
    ct = CredentialRow.__table__  # type: ignore[attr-defined]
    names = sorted({c.user for c in creds})
    users: dict[str, int] = {}
    for i in range(0, len(names), 1000):
        chunk = names[i : i + 1000]
        for uid, name in session.execute(select(ut.c.id, ut.c.name).where(ut.c.name.in_(chunk))):
            users[name] = uid
    handles = {c.user: c.user_handle for c in creds}
    missing = [n for n in names if n not in users]
    if missing:
        session.execute(
            insert(ut),
            [
                {"name": n, "display_name": n, "user_handle": handles[n], "created_at": now}
                for n in missing
            ],
        )
        for i in range(0, len(missing), 1000):
            chunk = missing[i : i + 1000]
            for uid, name in session.execute(
                select(ut.c.id, ut.c.name).where(ut.c.name.in_(chunk))
            ):
                users[name] = uid
    entry = audit.append(
        session,
        actor=operator,
        action="credential.bulk-import",
        subject=None,
        details={
            "reason": reason,
            "count": len(creds),
            "states": [
                state.credential_state(
                    credential_id=c.credential_id,
                    user=c.user,
                    public_key=c.public_key_cose,
                    aaguid=c.aaguid,
                    status="active",
                    counter=c.sign_count,
                    seen=c.sign_count,
                )  # fmt: skip
                for c in creds
            ],
        },
    )
    ev_rows = [
        {
            "attestation_object": c.attestation_object,
            "client_data_json": c.client_data_json,
            "evidence_json": json.dumps(c.evidence, sort_keys=True),
            "decision_json": json.dumps(c.decision, sort_keys=True),
            "verified_at": now,
        }
        for c in creds
    ]
    ev_ids = [
        r[0]
        for r in session.execute(
            insert(et).returning(et.c.id, sort_by_parameter_order=True), ev_rows
        )
    ]
    cred_rows = [
        {
            "credential_id": c.credential_id,
            "user_id": users[c.user],
            "public_key": c.public_key_cose,
            "sign_count": c.sign_count,
            "aaguid": c.aaguid,
            "transports": json.dumps(sorted(c.transports)),
            "backup_eligible": c.backup_eligible,
            "backed_up": c.backed_up,
            "status": "active",
            "created_at": now,
            "updated_at": now,
            "evidence_id": ev_ids[i],
            "policy_version_id": policy_version_id,
            "metadata_no": metadata_no,
            "operator": operator,
            "change_seq": entry.seq,
        }
        for i, c in enumerate(creds)
    ]
    session.execute(insert(ct), cred_rows)
    session.flush()
    return len(creds)


def bulk_change_status(
    session: Any, credential_ids: Sequence[bytes], verb: str, *, reason: str, actor: str
) -> int:
    """Change many credentials' status (same transitions as ``registry.change_status``).

    One audit entry per credential; each row's ``change_seq`` is its entry's seq. Credentials
    whose current status does not allow ``verb`` are left alone. Returns the number changed.
    """
    from sqlalchemy import select, update

    from keyadmin.store.models import CredentialRow, UserRow
    from keyadmin.store.registry import ALLOWED_TRANSITIONS

    if verb not in ALLOWED_TRANSITIONS:
        raise UsageError(f"unknown status change {verb!r}")
    if not reason.strip():
        raise UsageError("a reason is required", hint="pass --reason TEXT")
    before, after = ALLOWED_TRANSITIONS[verb]
    ct = CredentialRow.__table__  # type: ignore[attr-defined]
    ut = UserRow.__table__  # type: ignore[attr-defined]
    changed = 0
    ids = list(credential_ids)
    for i in range(0, len(ids), 1000):
        rows = session.execute(
            select(
                ct.c.id,
                ct.c.credential_id,
                ct.c.status,
                ut.c.name,
                ct.c.public_key,
                ct.c.aaguid,
                ct.c.sign_count,
            )  # fmt: skip
            .join_from(ct, ut, ct.c.user_id == ut.c.id)
            .where(ct.c.credential_id.in_(ids[i : i + 1000]))
        ).all()
        for rid, cid, status, user, pk, aaguid, ctr in rows:
            if status not in before:
                continue
            entry = audit.append(
                session,
                actor=actor,
                action=f"credential.{verb}",
                subject=user,
                details={
                    "credential": bytes(cid).hex(),
                    "from": status,
                    "to": after,
                    "reason": reason,
                    "state": state.credential_state(
                        credential_id=cid,
                        user=user,
                        public_key=pk,
                        aaguid=aaguid,
                        status=after,
                        counter=ctr,
                    ),  # fmt: skip
                },
            )
            session.execute(
                update(ct)
                .where(ct.c.id == rid)
                .values(
                    status=after,
                    status_reason=reason,
                    updated_at=datetime.now(UTC),
                    change_seq=entry.seq,
                )
            )
            changed += 1
    session.flush()
    return changed
