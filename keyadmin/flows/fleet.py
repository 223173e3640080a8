"""The fleet's reconciliation report (``keyadmin keys report``): the inventory against the
registry, every finding with what to do about it.

Categories:
- ``issued-without-credential``: a key issued to a user holds no active credential;
- ``credential-not-in-inventory``: a live credential's key serial is not in the inventory;
- ``lost-key-with-active-credential`` / ``destroyed-key-with-active-credential``;
- ``user-below-minimum``: fewer compliant keys than the policy's keys_per_user.minimum. A
  compliant key is a physical key (by serial; a credential without a serial counts as a key of
  its own) holding an active credential of the user, not lost or destroyed, and, when the
  policy's [inventory] is required, in the inventory issued to that user.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from keyadmin.errors import PolicyRefused

CATEGORIES = (
    "issued-without-credential",
    "credential-not-in-inventory",
    "lost-key-with-active-credential",
    "destroyed-key-with-active-credential",
    "user-below-minimum",
)
LIVE = frozenset({"active", "suspended", "quarantined"})


class ActionNeeded(PolicyRefused):
    """The report found something an operator must act on (exit 3)."""


@dataclass(frozen=True)
class Finding:
    category: str
    serial: str | None
    user: str | None
    registry_id: int | None
    credential_id: str | None
    detail: str
    action: str


@dataclass(frozen=True)
class KeysReport:
    at: str
    policy: str | None
    minimum: int | None
    keys: int
    credentials: int
    findings: list[Finding]
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.findings


def keys_report(db_url: str, policy: Any | None) -> KeysReport:
    from keyadmin.store.db import transaction
    from keyadmin.store.inventory import read_estate

    started = time.monotonic()
    with transaction(db_url) as s:
        estate = read_estate(s)
    findings = reconcile(estate, policy)
    counts = {c: 0 for c in CATEGORIES}
    for f in findings:
        counts[f.category] += 1
    return KeysReport(
        at=datetime.now(UTC).isoformat(),
        policy=policy.name if policy is not None else None,
        minimum=policy.keys_per_user.minimum if policy is not None else None,
        keys=len(estate.keys),
        credentials=len(estate.credentials),
        findings=findings,
        counts=counts,
        seconds=round(time.monotonic() - started, 3),
    )


def reconcile(estate: Any, policy: Any | None) -> list[Finding]:
    keys = {serial: (state, user) for serial, state, user, *_ in estate.keys}
    active_on: dict[str, int] = {}
    findings: list[Finding] = []
    for reg_id, cred_id, user, status, serial, *_ in estate.credentials:
        if serial is None:
            continue
        if status == "active":
            active_on[serial] = active_on.get(serial, 0) + 1
        key = keys.get(serial)
        if key is None and status in LIVE:
            findings.append(
                Finding(
                    "credential-not-in-inventory", serial, user, reg_id, cred_id,
                    f"{user}'s {status} credential #{reg_id} is on key {serial}, which is not "
                    "in the inventory",
                    f"import the key (keyadmin keys import FILE.csv) or revoke the credential "
                    f"(keyadmin creds revoke {reg_id} --reason …)",
                )
            )  # fmt: skip
        elif key is not None and status == "active" and key[0] in ("lost", "destroyed"):
            findings.append(
                Finding(
                    f"{key[0]}-key-with-active-credential", serial, user, reg_id, cred_id,
                    f"{user}'s credential #{reg_id} is active on key {serial}, marked {key[0]}",
                    f"keyadmin creds revoke {reg_id} --reason 'key {key[0]}', then keyadmin sync",
                )
            )  # fmt: skip
    for serial, (state, user) in keys.items():
        if state == "issued" and not active_on.get(serial):
            findings.append(
                Finding(
                    "issued-without-credential", serial, user, None, None,
                    f"key {serial} is issued to {user} but holds no active credential",
                    f"enrol it (keyadmin enrol {user} …) or take it back "
                    f"(keyadmin keys return {serial} --reason …)",
                )
            )  # fmt: skip
    if policy is not None:
        findings.extend(_below_minimum(estate, keys, policy))
    return findings


def _below_minimum(estate: Any, keys: dict[str, Any], policy: Any) -> list[Finding]:
    minimum = policy.keys_per_user.minimum
    required = policy.inventory.required
    compliant: dict[str, set[str]] = {}
    for _, cred_id, user, status, serial, *_ in estate.credentials:
        if status != "active":
            continue
        key = keys.get(serial) if serial is not None else None
        if key is not None and key[0] in ("lost", "destroyed"):
            continue
        if required and (key is None or key[0] != "issued" or key[1] != user):
            continue
        compliant.setdefault(user, set()).add(serial if serial is not None else f"cred:{cred_id}")
    out = []
    for user in estate.users:
        have = len(compliant.get(user, ()))
        if have < minimum:
            out.append(
                Finding(
                    "user-below-minimum", None, user, None, None,
                    f"{user} holds {have} compliant key(s); the policy {policy.name} asks for "
                    f"at least {minimum}",
                    f"enrol another key for {user} (keyadmin enrol {user} --policy {policy.path})",
                )
            )  # fmt: skip
    return out
