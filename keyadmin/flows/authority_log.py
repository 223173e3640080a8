"""The offline check of the authority evidence in the log (``keyadmin operator verify-log``).

Walks the log in order, replaying who held which role (``operator.bootstrap``/``add``/
``remove`` rows) and which sessions were open (``operator.login``/``logout`` rows), and checks
every row that carries ``details.authority``:

* an assertion verifies (keyadmin.stepup.verify) under the public key logged, which must be
  the registry's key of that credential, of that operator; over SHA-256 of the logged
  statement; whose command may authorize this row, whose arguments are the row's, whose log
  head is older than the row and whose time is shortly before the row's; by an operator who
  held the command's role at that point of the log; and it was not used for such a row before;
* a session row lies inside a verified login of the same operator that had not ended, and
  that operator held the role;
* a lab-mode row does not follow the bootstrap (someone deleted the roles to get lab mode back);
* a witness signed the same enrolment, is neither the operator nor the enrolled user, and
  (after the bootstrap) held the enrol role.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from keyadmin.errors import KeyadminError
from keyadmin.flows.authority import ROLE_FOR, challenge_of

#: How long after its statement an authorized row may be written (the command's run time).
STATEMENT_WINDOW = timedelta(minutes=15)

#: Which log rows a signed command may authorize.
ROWS_FOR: dict[str, set[str]] = {
    "enrol": {"enrol.approved", "enrol.refused", "override.stale-metadata", "policy.new-version"},
    "credential.revoke": {"credential.revoke"},
    "credential.suspend": {"credential.suspend"},
    "credential.reinstate": {"credential.reinstate"},
    "credential.set-counter": {"credential.set-counter"},
    "log.bind-state": {"log.bind-state"},
    "sync": {"sync.run", "sync.counter-pulled", "sync.tamper"},
    "audit.enforce": {"credential.quarantine"},
    "mds.import": {"mds.import"},
    "mds.update": {"mds.update"},
    "device.pin.set": {"device.pin.set"},
    "device.pin.change": {"device.pin.change"},
    "device.config.always-uv": {"device.config.always-uv"},
    "device.config.min-pin-length": {"device.config.min-pin-length"},
    "device.config.enable-ep": {"device.config.enable-ep"},
    "device.credential.delete": {"device.credential.delete"},
    "device.reset": {"device.reset"},
    "device.prepare": {"device.prepare"},
    "operator.add": {"operator.add"},
    "operator.remove": {"operator.remove"},
    "operator.login": {"operator.login"},
    "operator.bootstrap": {"operator.bootstrap"},
}
#: The command a session-authorized row stands for (its role is checked).
SESSION_COMMAND = {row: command for command, rows in ROWS_FOR.items() for row in rows}


@dataclass(frozen=True)
class AuthorityReport:
    ok: bool
    rows_checked: int
    assertions_verified: int
    session_rows: int
    lab_rows: int
    problems: list[dict[str, Any]] = field(default_factory=list)


class _Problem(Exception):
    pass


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass
class _Replay:
    """What the log says so far: roles, sessions, the bootstrap, evidence already used."""

    roles: dict[str, set[str]] = field(default_factory=dict)
    sessions: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    bootstrapped: bool = False
    seen: set[tuple[str, str]] = field(default_factory=set)

    def need_role(self, user: str, command: str) -> None:
        role = ROLE_FOR.get(command)
        held = self.roles.get(user, set())
        if command == "operator.bootstrap":
            if self.bootstrapped:
                raise _Problem("a second bootstrap")
        elif not held:
            raise _Problem(f"{user} was not an operator at this point of the log")
        elif role is not None and role not in held:
            raise _Problem(f"{user} did not hold the {role} role at this point of the log")

    def apply(self, row: Any, at: datetime) -> None:
        """A verified operator row changes the replayed state."""
        d = row.details
        if row.action == "operator.bootstrap":
            self.bootstrapped = True
            self.roles[row.subject] = set(d["roles"])
        elif row.action == "operator.add":
            self.roles.setdefault(row.subject, set()).update(d["roles"])
        elif row.action == "operator.remove":
            left = self.roles.get(row.subject, set()) - set(d["roles"])
            self.roles[row.subject] = left
            if not left:
                self.sessions = {k: v for k, v in self.sessions.items() if v[0] != row.subject}
        elif row.action == "operator.login":
            self.sessions[d["session"]] = (row.actor, at + timedelta(minutes=int(d["minutes"])))
        elif row.action == "operator.logout":
            self.sessions.pop(str(d.get("session")), None)


def verify_log(db_url: str) -> AuthorityReport:
    from keyadmin.store import audit, operators
    from keyadmin.store.db import transaction

    problems: list[dict[str, Any]] = []
    counts = {"rows": 0, "assertions": 0, "sessions": 0, "lab": 0}
    state = _Replay()
    with transaction(db_url) as s:
        for row in audit.entries(s):
            ev = row.details.get("authority") if isinstance(row.details, dict) else None
            if ev is None:
                continue
            counts["rows"] += 1
            at = _aware(datetime.fromisoformat(row.at))
            try:
                _check_row(s, operators, state, ev, row, at, counts)
                state.apply(row, at)
            except _Problem as e:
                problems.append({"seq": row.seq, "action": row.action, "problem": str(e)})
            except (KeyadminError, KeyError, TypeError, ValueError, AttributeError) as e:
                why = e.message if isinstance(e, KeyadminError) else f"malformed evidence ({e!r})"
                problems.append({"seq": row.seq, "action": row.action, "problem": why})
    return AuthorityReport(
        not problems,
        counts["rows"],
        counts["assertions"],
        counts["sessions"],
        counts["lab"],
        problems,
    )


def _check_row(
    s: Any, operators: Any, state: _Replay, ev: Any, row: Any, at: datetime, counts: dict
) -> None:
    if not isinstance(ev, dict):
        raise _Problem("the authority evidence is not an object")
    # keyadmin itself writes a policy's first sighting; the operator's evidence rides along
    actor = None if row.action == "policy.new-version" else row.actor
    if ev.get("lab") is True:
        counts["lab"] += 1
        if state.bootstrapped:
            raise _Problem("a lab-mode row after the operator bootstrap")
    elif "assertion" in ev:
        command = str(ev["statement"]["command"])
        _check_assertion(s, operators, ev, row, command, actor=actor)
        key = (str(ev["statement"]["nonce"]), row.action)
        if key in state.seen:
            raise _Problem("this authorization evidence was used before for the same action")
        state.seen.add(key)
        state.need_role(str(ev["operator"]), command)
        counts["assertions"] += 1
    elif "session" in ev:
        counts["sessions"] += 1
        known = state.sessions.get(str(ev["session"]))
        if known is None:
            raise _Problem("the session has no open, verified login before this row")
        if ev.get("operator") != known[0] or actor not in (None, known[0]):
            raise _Problem("the session belongs to another operator")
        if at > known[1]:
            raise _Problem("the session had expired before this row")
        if row.action in ("operator.login", "operator.bootstrap"):
            raise _Problem(f"{row.action} cannot be authorized by a session")
        if row.action != "operator.logout":
            state.need_role(known[0], SESSION_COMMAND.get(row.action, row.action))
    else:
        raise _Problem("the authority evidence names neither an assertion nor a session")
    witness = ev.get("witness")
    if witness is not None:
        _check_assertion(s, operators, witness, row, "enrol.witness", actor=None)
        if witness["operator"] in (ev.get("operator"), row.subject):
            raise _Problem("the witness is the operator or the enrolled user")
        if witness["statement"]["args"].get("operator") != ev.get("operator"):
            raise _Problem("the witness signed for another operator's enrolment")
        if state.bootstrapped:
            state.need_role(witness["operator"], "enrol.witness")
        counts["assertions"] += 1


def _check_assertion(
    s: Any, operators: Any, ev: dict[str, Any], row: Any, command: str, actor: str | None
) -> None:
    stmt = ev["statement"]
    if command == "enrol.witness":
        if stmt["command"] != command:
            raise _Problem("the witness's statement is for another command")
    elif command not in ROWS_FOR or row.action not in ROWS_FOR[command]:
        raise _Problem(f"a {command!r} authorization cannot authorize a {row.action} row")
    if row.action == "policy.new-version":  # the policy the enrolment brought in
        if stmt["args"].get("policy_sha256") != row.details.get("sha256"):
            raise _Problem("the statement names another policy than the row")
        return _check_signed(s, operators, ev, row, actor)
    for k, v in stmt["args"].items():
        if k == "user" and v != row.subject:
            raise _Problem("the statement names another user than the row")
        if k != "user" and k in row.details and row.details[k] != v:
            raise _Problem(f"the statement's {k} differs from the row's")
    _check_signed(s, operators, ev, row, actor)


def _check_signed(s: Any, operators: Any, ev: dict[str, Any], row: Any, actor: str | None) -> None:
    from keyadmin.b64 import decode_url
    from keyadmin.stepup.verify import (
        check_auth_data,
        check_client_data,
        check_signature,
        parse_auth_data,
    )

    stmt = ev["statement"]
    if actor is not None and ev["operator"] != actor:
        raise _Problem("the row's actor is not the operator who signed")
    if not int(stmt["seq"]) < row.seq:
        raise _Problem("the statement is not older than the row")
    signed_at = datetime.fromisoformat(stmt["time"])
    row_at = _aware(datetime.fromisoformat(row.at))
    if not signed_at - timedelta(seconds=5) <= row_at <= signed_at + STATEMENT_WINDOW:
        raise _Problem("the row was written long after (or before) the signed statement")
    a = ev["assertion"]
    cred = operators.credential(s, bytes.fromhex(a["credential"]))
    if cred is None or cred.user != ev["operator"]:
        raise _Problem(f"the credential is not a registry credential of {ev['operator']}")
    if cred.public_key_cose.hex() != ev["public_key"]:
        raise _Problem("the logged public key is not the registry's key for the credential")
    if ev["rp_id"] != cred.rp_id:
        raise _Problem("the assertion is for another relying party than the credential's")
    auth_data = decode_url(a["authenticator_data"])
    client_data = decode_url(a["client_data_json"])
    check_signature(
        bytes.fromhex(ev["public_key"]), auth_data, client_data, decode_url(a["signature"])
    )
    check_client_data(client_data, challenge=challenge_of(stmt), origins=cred.origins)
    check_auth_data(
        parse_auth_data(auth_data),
        rp_id=str(ev["rp_id"]),
        registered_backup_eligible=cred.backup_eligible,
        device_bound=False,
    )
