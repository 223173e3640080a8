"""The registry's security-relevant state, bound to the tamper-evident log.

Every log row that changes a credential carries the credential's whole state after the
change under ``details["state"]`` (one credential) or ``details["states"]`` (a batch):

    {"cred": <credential id, hex>, "user": <user name>, "pk": <SHA-256 of the COSE public
     key, hex>, "aaguid": <AAGUID>, "status": <status>, "ctr": <signature counter floor>}

and the credential row's ``change_seq`` names that row. So:

* ``replay`` (run by ``keyadmin log verify``) rebuilds every credential's state from the log
  alone and names each registry row that differs from it, each row the log never recorded
  and each recorded credential whose row is missing;
* ``check_bound`` (run by step-up before it trusts a credential row) reads the log row that
  ``change_seq`` names, recomputes that row's hash, and refuses a credential whose public
  key, user, AAGUID, status or counter differs from what the log recorded.

Rows written before this binding (no ``state``) are replayed for what they did record
(``enrol.approved``: user and AAGUID; ``credential.*``: status; ``stepup.ok``: counter);
such credentials are reported as not bound until ``keyadmin log bind-state`` records them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from keyadmin.store import audit

if TYPE_CHECKING:
    from sqlmodel import Session


FIELDS = ("cred", "user", "pk", "aaguid", "status", "ctr")
#: What a difference in each field means, for the messages.
_NAMES = {
    "user": "user",
    "pk": "public key",
    "aaguid": "AAGUID",
    "status": "status",
    "ctr": "signature counter",
}


def pk_hash(public_key_cose: bytes) -> str:
    return hashlib.sha256(bytes(public_key_cose)).hexdigest()


def credential_state(
    *,
    credential_id: bytes,
    user: str,
    public_key: bytes,
    aaguid: str,
    status: str,
    counter: int,
    seen: int | None = None,
) -> dict[str, Any]:
    """The state a log row records for one credential. ``seen`` (optional) is the highest
    counter keyadmin verified itself (enrolment, step-up, an operator's repair), as opposed to
    one adopted from the application's table: only a counter at or below it proves a clone."""
    out = {
        "cred": bytes(credential_id).hex(),
        "user": user,
        "pk": pk_hash(public_key),
        "aaguid": aaguid,
        "status": status,
        "ctr": int(counter),
    }
    if seen is not None:
        out["seen"] = int(seen)
    return out


def seen_of(recorded: dict[str, Any] | None) -> int:
    """The counter keyadmin itself last verified, from a recorded state (its ``ctr`` when the
    state predates ``seen``)."""
    if not recorded:
        return 0
    seen = recorded.get("seen", recorded.get("ctr", 0))
    return seen if isinstance(seen, int) and not isinstance(seen, bool) else 0


def _state_in(details: Any, hexid: str) -> dict[str, Any] | None:
    try:
        recorded = json.loads(details) if isinstance(details, str) else None
    except ValueError:
        return None
    return next((x for x in states_of(recorded) if x["cred"] == hexid), None)


def logged_state(session: Session, change_seq: int, credential_id: bytes) -> dict[str, Any] | None:
    """The state that log row ``change_seq`` recorded for this credential, if any."""
    from sqlalchemy import text

    details = session.execute(
        text("SELECT details FROM ka_audit WHERE seq = :s"), {"s": int(change_seq or 0)}
    ).scalar()
    return _state_in(details, bytes(credential_id).hex())


def states_of(details: Any) -> list[dict[str, Any]]:
    """The full states a row's details record (``state`` and ``states``), well-formed only."""
    if not isinstance(details, dict):
        return []
    found = []
    one = details.get("state")
    if one is not None:
        found.append(one)
    many = details.get("states")
    if isinstance(many, list):
        found.extend(many)
    return [s for s in found if isinstance(s, dict) and all(k in s for k in FIELDS)]


def read_states(session: Session, credential_ids: Iterable[bytes]) -> list[dict[str, Any]]:
    """The current state of each credential, read from the registry (for batch log rows),
    with ``seen`` carried over from the state its ``change_seq`` row recorded."""
    from sqlalchemy import select

    from keyadmin.store.models import AuditRow, CredentialRow, UserRow

    ct = CredentialRow.__table__  # type: ignore[attr-defined]
    ut = UserRow.__table__  # type: ignore[attr-defined]
    at = AuditRow.__table__  # type: ignore[attr-defined]
    ids = list(credential_ids)
    out = []
    for i in range(0, len(ids), 1000):
        q = (
            select(
                ct.c.credential_id,
                ut.c.name,
                ct.c.public_key,
                ct.c.aaguid,
                ct.c.status,
                ct.c.sign_count,
                at.c.details,
            )  # fmt: skip
            .join_from(ct, ut, ct.c.user_id == ut.c.id)
            .join(at, at.c.seq == ct.c.change_seq, isouter=True)
            .where(ct.c.credential_id.in_(ids[i : i + 1000]))
            .order_by(ct.c.id)
        )
        for cid, user, pk, aaguid, status, ctr, details in session.execute(q):
            before = _state_in(details, bytes(cid).hex())
            out.append(
                credential_state(
                    credential_id=cid,
                    user=user,
                    public_key=pk,
                    aaguid=aaguid,
                    status=status,
                    counter=ctr,
                    seen=seen_of(before) if before else ctr,
                )  # fmt: skip
            )
    return out


# ----------------------------------------------------------------------------- step-up's check
class NotBound(Exception):
    """The credential row does not match what the log recorded (the message says how)."""


def check_bound(
    *,
    credential_id: bytes,
    user: str,
    public_key: bytes,
    aaguid: str,
    status: str,
    counter: int,
    change_seq: int,
    log_row: tuple[Any, ...] | None,
    next_prev_hash: Any,
    head_seq: int | None = None,
) -> dict[str, Any]:
    """Refuse a credential row that differs from its state in the log row ``change_seq``;
    return that state.

    ``log_row`` is (seq, at, actor, action, subject, details, prev_hash, hash) of that row;
    ``next_prev_hash`` the following row's prev_hash (None when it is the newest row). The
    row's hash is recomputed from its fields and must link to the next row, so an edit of
    the state in the log row alone is refused too. ``head_seq``, when given, is the log
    head's seq: a row after it is not sealed yet (audit.seal) and only its state is checked.
    """
    if log_row is None or change_seq <= 0:
        raise NotBound(
            f"the log has no record of this credential's state (change_seq {change_seq})"
        )
    seq, at, actor, action, subject, details, prev_hash, stored_hash = log_row
    if head_seq is not None and seq > head_seq:
        # Written, not sealed yet (PostgreSQL: a step-up between its commit and its seal):
        # there is no hash to check yet, only the state it records.
        if prev_hash != audit.UNSEALED or stored_hash != audit.UNSEALED:
            raise NotBound(f"log row {seq}, which records this credential, was edited")
    else:
        digest = audit.recompute(prev_hash, seq, at, actor, action, subject, details)
        if not audit.same(stored_hash, digest) or (
            next_prev_hash is not None
            and not (next_prev_hash == audit.UNSEALED and head_seq == seq)
            and not audit.same(next_prev_hash, digest)
        ):
            raise NotBound(f"log row {seq}, which records this credential, was edited")
    try:
        recorded = json.loads(details)
    except (TypeError, ValueError):
        recorded = None
    want = credential_id.hex()
    state = next((s for s in states_of(recorded) if s.get("cred") == want), None)
    if state is None:
        raise NotBound(f"log row {seq} does not record this credential")
    actual = credential_state(
        credential_id=credential_id, user=user, public_key=public_key, aaguid=aaguid,
        status=status, counter=counter,
    )  # fmt: skip
    differs = [n for n in FIELDS[1:] if not _equal(state.get(n), actual[n])]
    if differs:
        what = ", ".join(_NAMES[n] for n in differs)
        raise NotBound(f"its {what} differs from log row {seq}")
    return state


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return hmac.compare_digest(a.encode(), b.encode())
    return type(a) is type(b) and a == b


# ----------------------------------------------------------------------------- replay
@dataclass
class Replay:
    """What ``replay`` found: ``ok`` when every registry credential matches the log."""

    ok: bool = True
    credentials_checked: int = 0
    unbound: int = 0  # recorded before the binding: public key not recorded
    problems: list[str] = field(default_factory=list)


def _legacy(action: str, subject: Any, details: dict[str, Any]) -> dict[str, Any] | None:
    """The partial state a row written before the binding recorded, if any."""
    cred = details.get("credential")
    if not isinstance(cred, str):
        return None
    if action == "enrol.approved":
        return {"cred": cred, "user": subject, "aaguid": details.get("aaguid"),
                "status": "active"}  # fmt: skip
    if action.startswith("credential.") and isinstance(details.get("to"), str):
        return {"cred": cred, "status": details["to"]}
    if action == "stepup.ok" and isinstance(details.get("counter"), int):
        return {"cred": cred, "ctr": details["counter"]}
    return None


def replay(session: Session, rows: Iterable[tuple[int, str, Any, Any]] | None = None) -> Replay:
    """Rebuild every credential's state from the log; compare it with ka_credential.

    ``rows`` is (seq, action, subject, details text) of the log in order (read here when
    not given; ``keyadmin log verify`` passes the rows it has just chain-checked).
    """
    from sqlalchemy import select

    from keyadmin.store.models import CredentialRow, UserRow

    logged: dict[str, dict[str, Any]] = {}
    seq_of: dict[str, int] = {}
    if rows is None:
        rows = session.connection().exec_driver_sql(
            "SELECT seq, action, subject, details FROM ka_audit ORDER BY seq"
        )
    for seq, action, subject, details in rows:
        if not isinstance(details, str) or '"cred' not in details and '"credential"' not in details:
            continue
        try:
            d = json.loads(details)
        except ValueError:
            continue  # the chain check names an unreadable row
        if not isinstance(d, dict):
            continue
        full = states_of(d)
        for s in full:
            logged[s["cred"]] = dict(s)
            seq_of[s["cred"]] = seq
        if not full and isinstance(action, str):
            part = _legacy(action, subject, d)
            if part is not None:
                logged.setdefault(part["cred"], {}).update(part)
                seq_of[part["cred"]] = seq
    ct = CredentialRow.__table__  # type: ignore[attr-defined]
    ut = UserRow.__table__  # type: ignore[attr-defined]
    result = Replay()
    seen: set[str] = set()
    q = (
        select(
            ct.c.id,
            ct.c.credential_id,
            ut.c.name,
            ct.c.public_key,
            ct.c.aaguid,
            ct.c.status,
            ct.c.sign_count,
        )  # fmt: skip
        .join_from(ct, ut, ct.c.user_id == ut.c.id, isouter=True)
        .order_by(ct.c.id)
    )
    for rid, cid, user, pk, aaguid, status, ctr in session.execute(q):
        result.credentials_checked += 1
        hexid = bytes(cid).hex()
        seen.add(hexid)
        name = f"credential #{rid} ({hexid[:16]}…)"
        want = logged.get(hexid)
        if want is None:
            result.problems.append(f"{name}: in the registry but never recorded in the log")
            continue
        have = credential_state(
            credential_id=cid, user=user if user is not None else "", public_key=pk,
            aaguid=aaguid, status=status, counter=ctr if isinstance(ctr, int) else -1,
        )  # fmt: skip
        if "pk" not in want:
            result.unbound += 1
        for n in FIELDS[1:]:
            if n in want and not _equal(want[n], have[n]):
                result.problems.append(
                    f"{name}: its {_NAMES[n]} is {_show(n, have[n])} but log row "
                    f"{seq_of[hexid]} recorded {_show(n, want[n])}"
                )
    for hexid, want in logged.items():
        if hexid not in seen:
            result.problems.append(
                f"credential {hexid[:16]}… (user {want.get('user', '?')}): recorded in the log "
                f"(row {seq_of[hexid]}) but missing from the registry (deleted)"
            )
    result.ok = not result.problems
    return result


def _show(name: str, value: Any) -> str:
    if name == "pk" and isinstance(value, str):
        return f"sha256:{value[:16]}…"
    return repr(value)


# ----------------------------------------------------------------------------- upgrade
def bind_unbound(
    session: Session, *, actor: str, authority: dict[str, Any] | None = None
) -> list[str]:
    """Record the current state of every credential whose ``change_seq`` row has none.

    For registries written before the binding. Trust on first use: it records what the
    registry holds now, in a log row that says so. Returns the credential ids bound (hex).
    """
    from sqlalchemy import select, update

    from keyadmin.store.models import AuditRow, CredentialRow

    ct = CredentialRow.__table__  # type: ignore[attr-defined]
    at = AuditRow.__table__  # type: ignore[attr-defined]
    todo: list[bytes] = []
    q = select(ct.c.credential_id, at.c.details).join_from(
        ct, at, at.c.seq == ct.c.change_seq, isouter=True
    )
    for cid, details in session.execute(q):
        hexid = bytes(cid).hex()
        try:
            recorded = json.loads(details) if isinstance(details, str) else None
        except ValueError:
            recorded = None
        if not any(s["cred"] == hexid for s in states_of(recorded)):
            todo.append(bytes(cid))
    bound: list[str] = []
    for i in range(0, len(todo), 200):
        batch = todo[i : i + 200]
        states = read_states(session, batch)
        entry = audit.append(
            session,
            actor=actor,
            action="log.bind-state",
            subject=None,
            details={
                "note": "trust on first use: the registry's state as found",
                "states": states,
                **({"authority": authority} if authority is not None else {}),
            },
        )
        session.execute(
            update(ct).where(ct.c.credential_id.in_(batch)).values(change_seq=entry.seq)
        )
        bound += [cid.hex() for cid in batch]
    session.flush()
    return bound
