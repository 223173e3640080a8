"""TEST/BENCH ONLY: bulk writes that make large registries fast (no part of keyadmin).

* :func:`bulk_add_credentials` inserts many already-approved credentials in one transaction
  with one audit entry per batch (tests/support/bulk.py's generator, the benchmarks).
* :func:`bulk_change_status` changes many credentials' status, one audit entry each.

Both write through keyadmin's own log (``keyadmin.store.audit.append``) and state records
(``keyadmin.store.state``), so a registry made here verifies like one made by enrolment.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from keyadmin.errors import UsageError
from keyadmin.store import audit, state


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
