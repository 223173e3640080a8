"""keyadmin enrol, creds, users, log: the registry and its tamper-evident log."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any

import typer

from keyadmin.cli.render import clean, emit_json, emit_kv, out, say
from keyadmin.errors import UsageError

DB_OPT = typer.Option(
    None, "--db", envvar="KEYADMIN_DATABASE_URL", help="Registry URL (default: SQLite file)."
)
JSON_OPT = typer.Option(False, "--json", help="Print JSON on stdout.")
DEVICE_OPT = typer.Option(
    None, "--device", "-d", envvar="KEYADMIN_DEVICE", help="hid:PATH, nfc:READER or sim:FILE."
)

creds_app = typer.Typer(help="Credentials in the registry: list, show, revoke, suspend, reinstate.")
users_app = typer.Typer(help="Users in the registry and their key coverage.")
log_app = typer.Typer(help="The tamper-evident log of everything keyadmin did.")


REF_HELP = "Registry id (3; #12345678 for any size), or credential id (hex prefix)."


def _operator() -> str:
    return os.environ.get("KEYADMIN_OPERATOR") or getpass.getuser()


def _db(db: str | None) -> str:
    from keyadmin.config import database_url

    return database_url(db)


def enrol(
    user: str = typer.Argument(..., help="The user (account name) the key is enrolled for."),
    policy: Path = typer.Option(..., "--policy", help="The policy file (TOML)."),
    device: str = DEVICE_OPT,
    nickname: str = typer.Option(None, "--nickname", help="A name for the key, e.g. 'backup'."),
    display_name: str = typer.Option(None, "--display-name", help="The user's display name."),
    witness: str = typer.Option(
        None, "--witness", help="The witnessing operator (dual control); needs --witness-device."
    ),
    witness_device: str = typer.Option(
        None, "--witness-device", help="The witness's own enrolled key (hid:, nfc:, sim:)."
    ),
    allow_stale_metadata: bool = typer.Option(
        False, "--allow-stale-metadata", help="Enrol although metadata is stale (logged)."
    ),
    db: str = DB_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Enrol a key for USER: make a credential with direct attestation and keep it only if the
    policy approves. A refused credential is deleted from the key again.

    The PIN is asked once (hidden prompt, or a line on stdin). Exit 3 when refused.
    Example: keyadmin enrol alice --policy policies/fido-certified-hardware.toml
    """
    from keyadmin.cli.device import _session
    from keyadmin.cli.interact import CliInteraction
    from keyadmin.flows.enrol import enrol as run_enrol
    from keyadmin.policy.loader import load_policy
    from keyadmin.policy.metadata import IndexMetadata
    from keyadmin.store.mds_index import MdsIndex

    url = _db(db)
    loaded = load_policy(policy)
    metadata = IndexMetadata(MdsIndex(url))
    proof = None
    if witness is not None:
        if witness_device is None:
            raise UsageError("--witness needs --witness-device: the witness's own key")
        from keyadmin.flows.enrol import check_witness
        from keyadmin.flows.stepup import witness_presence

        check_witness(witness, user=user, operator=_operator())  # before any key is touched

        with _session(witness_device) as wsession:
            say(f"Witness {witness}: prove presence with your own key (your PIN)")
            proof = witness_presence(
                witness,
                loaded,
                wsession,
                CliInteraction(),
                url,
                subject=user,
                metadata=metadata if loaded.metadata.required else None,
            )
    with _session(device) as session:
        say(f"Enrolling a key for {user} under policy {loaded.name} ({loaded.sha256[:12]}…)")
        result = run_enrol(
            user=user,
            display_name=display_name,
            policy=loaded,
            session=session,
            interaction=CliInteraction(),
            db_url=url,
            metadata=metadata,
            operator=_operator(),
            nickname=nickname,
            witness=witness,
            witness_proof=proof,
            override_stale_metadata=allow_stale_metadata,
        )
    if json_out:
        emit_json(result)
        return
    emit_kv(
        f"Enrolled: {user} now holds credential #{result.registry_id}",
        [
            ("credential id", result.credential_id),
            ("aaguid", result.aaguid),
            ("device", result.device),
            ("policy", f"{result.policy} {result.policy_sha256[:16]}…"),
            ("metadata no.", result.metadata_no),
            ("operator", result.operator),
            ("witness", result.witness),
            ("rules passed", sum(1 for r in result.reasons if r["outcome"] == "pass")),
        ],
    )


# ---------------------------------------------------------------------------- creds
@creds_app.command("list")
def creds_list(
    user: str = typer.Option(None, "--user", help="Only this user's credentials."),
    status: str = typer.Option(None, "--status", help="active, suspended, revoked, quarantined."),
    db: str = DB_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """List credentials in the registry.

    Example: keyadmin creds list --user alice --status active --json
    """
    from keyadmin.store import registry
    from keyadmin.store.db import transaction

    with transaction(_db(db)) as s:
        creds = registry.list_credentials(s, user=user, status=status)
    if json_out:
        emit_json(creds)
        return
    if not creds:
        say("no credentials match")
        return

    out(f"{'id':>5}  {'user':<16} {'status':<11} {'counter':>7}  aaguid / credential\n")
    for c in creds:
        out(
            f"{c.id:>5}  {clean(c.user):<16} {c.status:<11} {c.sign_count:>7}  {c.aaguid}  "
            f"{c.credential_id[:16]}…\n"
        )


@creds_app.command("show")
def creds_show(
    ref: str = typer.Argument(..., help=REF_HELP),
    db: str = DB_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Show one credential with its evidence summary.

    Example: keyadmin creds show 3 --json
    """
    from keyadmin.store import registry
    from keyadmin.store.db import transaction

    with transaction(_db(db)) as s:
        c = registry.get_credential(s, ref)
    if json_out:
        emit_json(c)
    else:
        emit_kv(f"Credential #{c.id}", list(vars(c).items()))


def _status_command(verb: str) -> Any:
    def command(
        ref: str = typer.Argument(..., help=REF_HELP),
        reason: str = typer.Option(..., "--reason", help="Why (recorded in the log)."),
        force: bool = typer.Option(False, "--force", help="Do not ask for confirmation."),
        db: str = DB_OPT,
        json_out: bool = JSON_OPT,
    ) -> None:
        from keyadmin.cli.interact import confirm
        from keyadmin.store import registry
        from keyadmin.store.db import transaction

        url = _db(db)
        if not force:
            with transaction(url) as s:
                c = registry.get_credential(s, ref)
            confirm(f"{verb.capitalize()} credential #{c.id} of {c.user} ({c.status})?")
        with transaction(url) as s:
            changed = registry.change_status(s, ref, verb, reason=reason, actor=_operator())
        if json_out:
            emit_json(changed)
        else:
            emit_kv(f"Credential #{changed.id} is now {changed.status}", [("reason", reason)])

    command.__doc__ = (
        f"{verb.capitalize()} a credential (asks first unless --force; logged).\n\n"
        f"Example: keyadmin creds {verb} 3 --reason 'key reported lost'"
    )
    return command


for _verb in ("revoke", "suspend", "reinstate"):
    creds_app.command(_verb)(_status_command(_verb))


# ---------------------------------------------------------------------------- users
@users_app.command("list")
def users_list(
    policy: Path = typer.Option(None, "--policy", help="Judge coverage by this policy's minimum."),
    db: str = DB_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """List users with how many active keys each holds against the policy's minimum.

    A lost key must not lock an admin out: a policy can demand a backup key (minimum 2).
    Example: keyadmin users list --policy policies/yubikey-fips.toml
    """
    from keyadmin.store import registry
    from keyadmin.store.db import transaction

    minimum = None
    if policy is not None:
        from keyadmin.policy.loader import load_policy

        minimum = load_policy(policy).keys_per_user.minimum
    with transaction(_db(db)) as s:
        rows = registry.user_coverage(s, minimum)
    if json_out:
        emit_json(rows)
        return

    for r in rows:
        verdict = "" if r.compliant is None else ("ok" if r.compliant else "BELOW MINIMUM")
        out(
            f"{clean(r.user):<20} active {r.active}  suspended {r.suspended}  revoked {r.revoked}  "
            f"quarantined {r.quarantined}  {verdict}\n"
        )


# ---------------------------------------------------------------------------- log
@log_app.command("show")
def log_show(
    since: str = typer.Option(None, "--since", help="ISO 8601 time, e.g. 2026-11-01."),
    action: str = typer.Option(None, "--action", help="Only this action, e.g. enrol.approved."),
    limit: int = typer.Option(None, "--limit", help="Only the last N rows."),
    db: str = DB_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Show the log.

    Example: keyadmin log show --since 2026-11-01 --json
    """
    from datetime import UTC, datetime

    from keyadmin.store import audit
    from keyadmin.store.db import transaction

    start = None
    if since:
        try:
            start = datetime.fromisoformat(since)
        except ValueError:
            raise UsageError(f"--since {since!r} is not an ISO 8601 time") from None
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
    with transaction(_db(db)) as s:
        rows = audit.entries(s, since=start, action=action, limit=limit)
    if json_out:
        emit_json(rows)
        return
    import json

    for r in rows:
        out(
            f"{r.seq:>6}  {r.at[:19]}  {clean(r.actor):<12} {r.action:<24} "
            f"{clean(r.subject or '-'):<16} "
            f"{json.dumps(r.details, sort_keys=True)[:120]}\n"
        )


@log_app.command("verify")
def log_verify(db: str = DB_OPT, json_out: bool = JSON_OPT) -> None:
    """Recompute the hash chain; name the first edited, deleted, inserted or moved row.

    Exit 1 when the log does not verify. Keep the printed head hash elsewhere to anchor it.
    Example: keyadmin log verify --json
    """
    from keyadmin.store import audit
    from keyadmin.store.db import transaction

    with transaction(_db(db)) as s:
        result = audit.verify(s)
    if json_out:
        emit_json(result)
    elif result.ok:
        emit_kv(
            "The log verifies",
            [("rows", result.rows_checked), ("head", f"{result.head_seq} {result.head_hash}")],
        )
    else:
        emit_kv(
            "THE LOG DOES NOT VERIFY",
            [("first bad row", result.first_bad_seq), ("problem", result.problem)],
        )
    if not result.ok:
        raise typer.Exit(1)
