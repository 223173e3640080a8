"""keyadmin enrol, creds, users, log: the registry and its tamper-evident log."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from keyadmin.cli.authority import authorize_cli
from keyadmin.cli.dryrun import credential_change, emit_plan
from keyadmin.cli.options import (
    CoveragePolicyOpt,
    CsvOpt,
    DbOpt,
    DeviceOpt,
    DryRunOpt,
    ForceOpt,
    JsonOpt,
    OperatorDeviceOpt,
    OperatorOpt,
    PolicyOpt,
    ReasonOpt,
)
from keyadmin.cli.render import emit_json, emit_kv, emit_table, list_format, out, say
from keyadmin.errors import UsageError

if TYPE_CHECKING:
    from keyadmin.store.registry import CredentialRecord

creds_app = typer.Typer(
    help="Credentials in the registry: list, show, lost, revoke, suspend, reinstate, "
    "set-counter.\n\nExample: keyadmin creds list --user alice"
)
users_app = typer.Typer(
    help="Users in the registry and their key coverage.\n\n"
    "Example: keyadmin users list --policy policies/yubikey-fips.toml"
)
log_app = typer.Typer(
    help="The tamper-evident log of everything keyadmin did.\n\nExample: keyadmin log verify"
)


REF_HELP = (
    "USER/NICKNAME (alice/backup), registry id (3; #12345678 for any size), or credential id "
    "(hex prefix)."
)
RefArg = Annotated[str, typer.Argument(help=REF_HELP)]


def _db(db: str | None, *, create: bool = False) -> str:
    """The registry's URL (keyadmin.config.database_url: a named SQLite file must exist
    unless ``create``, for the commands that make a registry)."""
    from keyadmin.config import database_url

    return database_url(db, create=create)


def enrol(
    user: Annotated[str, typer.Argument(help="The user (account name) the key is enrolled for.")],
    policy: PolicyOpt,
    device: DeviceOpt = None,
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
    user_handle: str = typer.Option(
        None,
        "--user-handle",
        help="A new user's WebAuthn user handle: the application's own (its UTF-8 text, or "
        "hex:… for raw bytes; 1-64 bytes). Default: 32 random bytes. See docs/sync.md.",
    ),
    operator: OperatorOpt = None,
    operator_device: OperatorDeviceOpt = None,
    db: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Enrol a key for USER: make a credential with direct attestation and keep it only if the
    policy approves. A refused credential is deleted from the key again.

    Once an operator is bootstrapped, an operator with the enrol role authorizes it (their
    key, --operator-device, or their session). PINs are read in order: the operator's, the
    witness's, the enrolled key's (hidden prompt, or lines on stdin). Exit 3 when refused.
    Example: keyadmin enrol alice --policy policies/fido-certified-hardware.toml
    --operator olivia --operator-device hid:/dev/hidraw4 --witness bob --witness-device nfc:ACS
    """
    from keyadmin.cli.device import _session
    from keyadmin.cli.interact import CliInteraction
    from keyadmin.flows.authority import ensure_not_on_key
    from keyadmin.flows.authority import witness as prove_witness
    from keyadmin.flows.enrol import enrol as run_enrol
    from keyadmin.policy.loader import load_policy
    from keyadmin.policy.metadata import IndexMetadata
    from keyadmin.store.mds_index import MdsIndex

    url = _db(db, create=True)  # enrolment makes a registry
    handle = _user_handle(user_handle)
    loaded = load_policy(policy)
    metadata = IndexMetadata(MdsIndex(url))
    if witness is not None and witness_device is None:
        raise UsageError("--witness needs --witness-device: the witness's own key")
    args = {"user": user, "policy_sha256": loaded.sha256, "witness": witness}
    authority = authorize_cli(url, "enrol", args, operator, operator_device)
    evidence = dict(authority.evidence)
    proof = None
    if witness is not None:
        with _session(witness_device) as wsession:
            say(f"Witness {witness}: prove presence with your own key (your PIN)")
            proof = prove_witness(
                url,
                witness=witness,
                operator=authority,
                subject=user,
                args={**args, "operator": authority.operator},
                device=wsession,
                interaction=CliInteraction(),
            )
        evidence["witness"] = proof.evidence
    interaction = CliInteraction()
    with _session(device) as session:
        if witness is not None:  # the witness's credential must not be on the enrolled key
            ensure_not_on_key(
                url, session, interaction, witness, why="the witness's own credential"
            )
        say(f"Enrolling a key for {user} under policy {loaded.name} ({loaded.sha256[:12]}…)")
        result = run_enrol(
            user=user,
            display_name=display_name,
            policy=loaded,
            session=session,
            interaction=interaction,
            db_url=url,
            metadata=metadata,
            operator=authority.operator,
            nickname=nickname,
            witness=witness,
            witness_proof=proof,
            override_stale_metadata=allow_stale_metadata,
            authority=evidence,
            user_handle=handle,
        )
    _next_after_enrol(url, user, loaded.keys_per_user.minimum)
    if json_out:
        emit_json(result)
        return
    emit_kv(
        f"Enrolled: {user} now holds key {nickname or '(no nickname)'} [id {result.registry_id}]",
        [
            ("credential id", result.credential_id),
            ("aaguid", result.aaguid),
            ("key serial", result.key_serial),
            ("device", result.device),
            ("policy", f"{result.policy} {result.policy_sha256[:16]}…"),
            ("metadata no.", result.metadata_no),
            ("operator", result.operator),
            ("witness", result.witness),
            ("rules passed", sum(1 for r in result.reasons if r["outcome"] == "pass")),
        ],
    )


def _next_after_enrol(url: str, user: str, minimum: int | None) -> None:
    from keyadmin.cli.naming import coverage_steps, print_next, sync_step

    steps = [sync_step()]
    more = coverage_steps(url, user, minimum)
    print_next(steps + [s.replace("a replacement", "a backup key") for s in more])


def _user_handle(text: str | None) -> bytes | None:
    """--user-handle: UTF-8 text, or hex:… for raw bytes; 1-64 bytes (WebAuthn user.id)."""
    if text is None:
        return None
    if text.startswith("hex:"):
        try:
            raw = bytes.fromhex(text[4:])
        except ValueError:
            raise UsageError("--user-handle hex:… is not hex", hint="e.g. hex:0a1b2c") from None
    else:
        raw = text.encode("utf-8")
    if not 1 <= len(raw) <= 64:
        raise UsageError(
            f"--user-handle is {len(raw)} bytes", hint="a WebAuthn user handle is 1-64 bytes"
        )
    return raw


# ---------------------------------------------------------------------------- creds
@creds_app.command("list")
def creds_list(
    user: str = typer.Option(None, "--user", help="Only this user's credentials."),
    status: str = typer.Option(None, "--status", help="active, suspended, revoked, quarantined."),
    db: DbOpt = None,
    json_out: JsonOpt = False,
    csv_out: CsvOpt = False,
) -> None:
    """List credentials in the registry (a table, --json or --csv).

    Example: keyadmin creds list --user alice --status active --json
    """
    from keyadmin.store import registry
    from keyadmin.store.db import transaction

    fmt = list_format(json_out, csv_out)
    with transaction(_db(db)) as s:
        creds = registry.list_credentials(s, user=user, status=status)
    if fmt == "json":
        emit_json(creds)
        return
    if not creds and fmt == "table":
        say("no credentials match")
        return
    from keyadmin.cli.naming import day

    short = fmt == "table"  # CSV keeps every id whole
    emit_table(
        ["id", "user", "nickname", "status", "enrolled", "last used", "counter", "key serial",
         "aaguid", "credential"],
        [
            [c.id, c.user, c.nickname or "-", c.status, day(c.created_at), day(c.last_used_at),
             c.sign_count, c.key_serial or "-", c.aaguid,
             c.credential_id[:16] + "…" if short else c.credential_id]
            for c in creds
        ],
        fmt=fmt,
    )  # fmt: skip


@creds_app.command("show")
def creds_show(
    ref: RefArg,
    db: DbOpt = None,
    json_out: JsonOpt = False,
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


def _status_command(verb: str) -> None:
    """Register ``keyadmin creds VERB``."""

    def command(
        ref: RefArg,
        reason: ReasonOpt,
        force: ForceOpt = False,
        dry_run: DryRunOpt = False,
        operator: OperatorOpt = None,
        operator_device: OperatorDeviceOpt = None,
        db: DbOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        from keyadmin.cli.interact import confirm
        from keyadmin.cli.naming import describe
        from keyadmin.store import registry
        from keyadmin.store.db import transaction

        url = _db(db)
        with transaction(url) as s:
            c = registry.get_credential(s, ref)
            if dry_run:
                c, after = registry.plan_status_change(s, c.id, verb, reason)
        if dry_run:
            emit_plan([credential_change(c, verb, after)], json_out)
            return
        if not force:
            confirm(f"{verb.capitalize()} {describe(c)}, now {c.status}?")
        args = {"credential": c.credential_id, "reason": reason}
        authority = authorize_cli(url, f"credential.{verb}", args, operator, operator_device)
        with transaction(url) as s:
            changed = registry.change_status(
                s,
                c.id,
                verb,
                reason=reason,
                actor=authority.operator,
                authority=authority.evidence,
            )
        if json_out:
            emit_json(changed)
        else:
            emit_kv(f"{describe(changed)} is now {changed.status}", [("reason", reason)])
        _next_after_status(url, changed, verb)

    command.__doc__ = (
        f"{verb.capitalize()} a credential (asks first unless --force; logged). Once an "
        "operator is bootstrapped, an operator with the lifecycle role authorizes it.\n\n"
        "--dry-run prints what would change and changes nothing.\n\n"
        f"Examples: keyadmin creds {verb} 3 --reason 'key reported lost' "
        "--operator olivia --operator-device hid:/dev/hidraw4\n"
        f"keyadmin creds {verb} alice/primary --reason 'key reported lost' --dry-run"
    )
    creds_app.command(verb)(command)


def _next_after_status(url: str, c: CredentialRecord, verb: str) -> None:
    from keyadmin.cli.naming import (
        configured_minimum,
        coverage_steps,
        print_next,
        ref_of,
        sync_step,
    )

    steps = [sync_step()]
    if verb == "suspend":
        steps.append(f"found again: keyadmin creds reinstate {ref_of(c)} --reason found")
        steps.append(f"gone for good: keyadmin creds revoke {ref_of(c)} --reason REASON")
    if verb in ("suspend", "revoke"):
        steps += coverage_steps(url, c.user, configured_minimum())
    print_next(steps)


for _verb in ("revoke", "suspend", "reinstate"):
    _status_command(_verb)


@creds_app.command("set-counter")
def creds_set_counter(
    ref: RefArg,
    value: Annotated[
        int, typer.Argument(min=0, max=2**32 - 1, help="The new counter, 0..4294967295.")
    ],
    reason: ReasonOpt,
    force: ForceOpt = False,
    dry_run: DryRunOpt = False,
    operator: OperatorOpt = None,
    operator_device: OperatorDeviceOpt = None,
    db: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Set a credential's signature counter on purpose: a repair, e.g. after a wrong value
    was adopted (asks first unless --force; logged with the old and new value and the reason).

    A step-up then needs a counter above VALUE. keyadmin sync never lowers the application's
    counter: fix the application's row first, or the next sync may pull its value back.

    --dry-run prints the old and new counter and changes nothing.

    Examples: keyadmin creds set-counter 3 1207 --reason 'restored after incident 42'
    keyadmin creds set-counter 3 1207 --reason 'restored after incident 42' --dry-run
    """
    from keyadmin.cli.interact import confirm
    from keyadmin.store import registry
    from keyadmin.store.db import transaction

    url = _db(db)
    with transaction(url) as s:
        c = registry.get_credential(s, ref)
        if dry_run:
            c = registry.plan_set_counter(s, c.id, value, reason)
    if dry_run:
        from keyadmin.cli.dryrun import change
        from keyadmin.cli.naming import describe

        planned = change("credential.set-counter", describe(c), c.sign_count, value,
                         credential_id=c.credential_id)  # fmt: skip
        emit_plan([planned], json_out)
        return
    if not force:
        from keyadmin.cli.naming import describe

        confirm(f"Set the counter of {describe(c)} from {c.sign_count} to {value}?")
    args = {"credential": c.credential_id, "value": value, "reason": reason}
    authority = authorize_cli(url, "credential.set-counter", args, operator, operator_device)
    with transaction(url) as s:
        before = registry.get_credential(s, c.id).sign_count
        changed = registry.set_counter(
            s, c.id, value, reason=reason, actor=authority.operator, authority=authority.evidence
        )
    if json_out:
        emit_json(changed)
    else:
        emit_kv(
            f"{changed.label()}: counter {before} -> {changed.sign_count}",
            [("reason", reason)],
        )
    from keyadmin.cli.naming import print_next

    print_next(
        [
            "sync never lowers the application's counter: if its row is above "
            f"{changed.sign_count}, fix it first (keyadmin sync --dry-run shows it), then "
            "run keyadmin sync"
        ]
    )


# ---------------------------------------------------------------------------- users
@users_app.command("list")
def users_list(
    policy: CoveragePolicyOpt = None,
    check: bool = typer.Option(
        False, "--check", help="Exit 3 when a user is below the minimum (cron, CI); needs --policy."
    ),
    db: DbOpt = None,
    json_out: JsonOpt = False,
    csv_out: CsvOpt = False,
) -> None:
    """List users with how many active keys each holds against the policy's minimum.

    A lost key must not lock an admin out: a policy can demand a backup key (minimum 2).
    With --check the list is printed as usual and the exit code is 3 when anyone is below.

    Example: keyadmin users list --policy policies/yubikey-fips.toml --check
    """
    from keyadmin.store import registry
    from keyadmin.store.db import transaction

    fmt = list_format(json_out, csv_out)
    if check and policy is None:
        raise UsageError("--check needs --policy: the minimum comes from the policy")
    minimum = None
    if policy is not None:
        from keyadmin.policy.loader import load_policy

        minimum = load_policy(policy).keys_per_user.minimum
    with transaction(_db(db)) as s:
        rows = registry.user_coverage(s, minimum)
    if fmt == "json":
        emit_json(rows)
    else:
        emit_table(
            ["user", "active", "suspended", "revoked", "quarantined", "minimum", "coverage"],
            [
                [r.user, r.active, r.suspended, r.revoked, r.quarantined, r.minimum,
                 "" if r.compliant is None else ("ok" if r.compliant else "BELOW MINIMUM")]
                for r in rows
            ],
            fmt=fmt,
        )  # fmt: skip
    below = [r for r in rows if r.compliant is False]
    if check and below:
        from keyadmin.errors import PolicyRefused

        raise PolicyRefused(
            f"{len(below)} user(s) below the policy's minimum of {minimum} active key(s)",
            hint="enrol a further key for each (keyadmin enrol USER --policy …)",
            reasons=[
                {
                    "rule": "keys_per_user.minimum",
                    "outcome": "fail",
                    "detail": f"{r.user}: {r.active} active",
                }
                for r in below
            ],  # fmt: skip
        )


# ---------------------------------------------------------------------------- log
@log_app.command("show")
def log_show(
    since: str = typer.Option(None, "--since", help="ISO 8601 time, e.g. 2026-11-01."),
    action: str = typer.Option(None, "--action", help="Only this action, e.g. enrol.approved."),
    limit: int = typer.Option(None, "--limit", min=1, help="Only the last N rows."),
    db: DbOpt = None,
    json_out: JsonOpt = False,
    csv_out: CsvOpt = False,
) -> None:
    """Show the log (a table, --json or --csv; the details column is JSON).

    Example: keyadmin log show --since 2026-11-01 --json
    """
    from datetime import UTC, datetime

    from keyadmin.store import audit
    from keyadmin.store.db import transaction

    fmt = list_format(json_out, csv_out)
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
    if fmt == "json":
        emit_json(rows)
        return
    import json

    emit_table(
        ["seq", "at", "actor", "action", "subject", "details"],
        [
            [r.seq, r.at[:19] if fmt == "table" else r.at, r.actor, r.action, r.subject or "-",
             json.dumps(r.details, sort_keys=True)[: 120 if fmt == "table" else None]]
            for r in rows
        ],
        fmt=fmt,
    )  # fmt: skip


LOG_KEY_OPT = typer.Option(
    None,
    "--log-key",
    envvar="KEYADMIN_LOG_KEY",
    help="The log signing key (default: log-key.pem in the data directory).",
)
ENV_LOG_PASSPHRASE = "KEYADMIN_LOG_PASSPHRASE"  # noqa: S105 - the variable's name


def _log_key(path: Path | None) -> Path:
    from keyadmin.config import data_dir

    return path if path is not None else data_dir() / "log-key.pem"


@log_app.command("verify")
def log_verify(
    anchor: Path = typer.Option(
        None, "--anchor", help="An anchor from `keyadmin log anchor`: the log must extend it."
    ),
    public_key: Path = typer.Option(
        None,
        "--log-public-key",
        help="The log key's public half (default: the .pub.pem beside the default log key).",
    ),
    db: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Recompute the hash chain and replay the registry's state from the log.

    Names the first edited, deleted, inserted or moved log row, and every credential row
    whose user, public key, AAGUID, status or counter differs from what the log recorded
    (or that the log never recorded, or that is missing). With --anchor, refuses a log that
    does not extend the anchored head (truncated or rewritten). Exit 1 when anything fails.
    Example: keyadmin log verify --anchor /mnt/offline/keyadmin.anchor --json
    """
    from keyadmin.store import audit, state
    from keyadmin.store.db import transaction

    pinned = None
    if anchor is not None:
        from keyadmin.stepup.receipts import load_public_key, public_path
        from keyadmin.store import anchor as anchors

        key = load_public_key(public_key or public_path(_log_key(None)))
        try:
            from keyadmin.files import read_input

            token = read_input(anchor, 65536).decode("ascii", "replace")
        except OSError as e:
            raise UsageError(f"cannot read the anchor {anchor}: {e.strerror}") from None
        pinned = anchors.read(token, key)
    rows: list[tuple[int, str, object, object]] = []
    with transaction(_db(db)) as s:
        result = audit.verify(s, anchor=(pinned.seq, pinned.hash) if pinned else None, rows=rows)
        replayed = state.replay(s, rows)
    ok = result.ok and replayed.ok
    if json_out:
        from dataclasses import asdict

        anchored = None
        if pinned:
            anchored = {"seq": pinned.seq, "hash": pinned.hash, "issued_at": pinned.issued_at}
        emit_json(
            {
                **asdict(result),
                "ok": ok,
                "chain_ok": result.ok,
                "anchor": anchored,
                "state": replayed,
            }  # fmt: skip
        )
    else:
        chain_rows: list[tuple[str, object]] = [
            ("rows", result.rows_checked),
            ("head", f"{result.head_seq} {result.head_hash}"),
        ]
        if pinned:
            chain_rows.append(("anchor", f"{pinned.seq} {pinned.hash} ({pinned.issued_at})"))
        if not result.ok:
            chain_rows += [("first bad row", result.first_bad_seq), ("problem", result.problem)]
        if result.unsealed:
            chain_rows.append(
                ("not sealed yet", f"{result.unsealed} rows after the head (the next write seals)")
            )
        chain_rows.append(("credentials replayed", replayed.credentials_checked))
        if replayed.unbound:
            chain_rows.append(
                (
                    "not bound",
                    f"{replayed.unbound} (logged before state binding: keyadmin log bind-state)",
                )  # fmt: skip
            )
        title = "The log verifies" if ok else "THE LOG OR THE REGISTRY DOES NOT VERIFY"
        if pinned and result.ok:
            title += f" and extends the anchor of {pinned.issued_at}"
        emit_kv(title, chain_rows)
        for problem in replayed.problems:
            say(f"  registry differs from the log: {problem}")
    if not ok:
        from keyadmin.notify import event, send

        first = result.problem or (replayed.problems[0] if replayed.problems else "")
        summary = f"log verify failed: {first}"[:500]
        bad = {"first_bad_seq": result.first_bad_seq, "differing": len(replayed.problems)}
        send([event("tampering", summary, **bad)])
        raise typer.Exit(1)


@log_app.command("keygen")
def log_keygen(
    log_key: Path = LOG_KEY_OPT,
    no_passphrase: bool = typer.Option(
        False, "--no-passphrase", help="Store unencrypted (mode 0600 is then enforced)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing key."),
    json_out: JsonOpt = False,
) -> None:
    """Create the log signing key (P-256, PKCS#8, mode 0600): it signs anchors of the log head.

    Keep it off the registry's machine if you can. The passphrase comes from
    KEYADMIN_LOG_PASSPHRASE, else a hidden prompt (or one line on stdin).
    Example: keyadmin log keygen --log-key /secure/log-key.pem
    """
    from keyadmin.stepup.receipts import generate_key

    passphrase = None
    if not no_passphrase:
        text = os.environ.get(ENV_LOG_PASSPHRASE) or _read_line("Log key passphrase: ")
        if not text:
            raise UsageError("an empty passphrase", hint="or pass --no-passphrase")
        passphrase = text.encode()
    files = generate_key(_log_key(log_key), passphrase, force=force)
    if json_out:
        emit_json(files)
    else:
        emit_kv("Log key created", [("private", files.private), ("public", files.public),
                                    ("kid", files.kid)])  # fmt: skip


def _read_line(prompt: str) -> str:
    from keyadmin.cli.stepup import _read_secret

    return _read_secret(prompt)


@log_app.command("anchor")
def log_anchor(
    out_file: Path = typer.Option(
        None, "--out", "-o", help="Write the anchor here (default: stdout). Keep it elsewhere."
    ),
    log_key: Path = LOG_KEY_OPT,
    db: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Sign the log head with the log key: a statement that later logs must extend.

    Verifies the chain and the state first (a broken log is never anchored). Store the
    anchor where a registry writer cannot reach (another machine, write-once storage).
    Example: keyadmin log anchor --out /mnt/offline/keyadmin-$(date +%F).anchor
    """
    from keyadmin.stepup.receipts import ReceiptSigner, key_is_encrypted
    from keyadmin.store import anchor as anchors
    from keyadmin.store import audit, state
    from keyadmin.store.db import transaction

    path = _log_key(log_key)
    passphrase = None
    if key_is_encrypted(path):
        text = os.environ.get(ENV_LOG_PASSPHRASE) or _read_line("Log key passphrase: ")
        passphrase = text.encode() or None
    signer = ReceiptSigner.load(path, passphrase)
    rows: list[tuple[int, str, object, object]] = []
    with transaction(_db(db)) as s:
        result = audit.verify(s, rows=rows)
        replayed = state.replay(s, rows)
    if not result.ok or not replayed.ok:
        from keyadmin.errors import KeyadminError

        raise KeyadminError(
            "the log does not verify; it is not anchored",
            hint="see: keyadmin log verify",
        )
    if result.head_seq < 1:
        raise UsageError("the log is empty; nothing to anchor")
    made = anchors.make(signer, seq=result.head_seq, head_hash=result.head_hash)
    if out_file is not None:
        from keyadmin.files import write_atomic

        write_atomic(out_file, (made.token + "\n").encode("ascii"), 0o644)
    if json_out:
        emit_json(made)
    elif out_file is not None:
        emit_kv(
            "Log head anchored",
            [("seq", made.seq), ("hash", made.hash), ("file", str(out_file))],
        )
    else:
        out(made.token + "\n")


@log_app.command("bind-state")
def log_bind_state(
    operator: OperatorOpt = None,
    operator_device: OperatorDeviceOpt = None,
    db: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Record in the log the state of credentials enrolled before state binding.

    Trust on first use, once, after an upgrade: until then `log verify` reports such
    credentials as not bound and step-up refuses them. Review `keyadmin creds list` first.
    Example: keyadmin log bind-state
    """
    from keyadmin.store import state
    from keyadmin.store.db import transaction

    url = _db(db)
    authority = authorize_cli(url, "log.bind-state", {}, operator, operator_device)
    with transaction(url) as s:
        bound = state.bind_unbound(s, actor=authority.operator, authority=authority.evidence)
    if json_out:
        emit_json({"bound": len(bound), "credentials": bound})
    else:
        emit_kv("State bound", [("credentials", len(bound))])
        for cid in bound:
            say(f"  bound as found: {cid}")


def _register_lost() -> None:
    from keyadmin.cli.lost import lost

    creds_app.command("lost")(lost)


_register_lost()
