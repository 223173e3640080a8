"""keyadmin sync and keyadmin audit: the application's credential table, and the estate audit."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from keyadmin.cli.authority import authorize_cli
from keyadmin.cli.options import (
    DbOpt,
    FormatCsvOpt,
    FormatJsonOpt,
    FormatOpt,
    JsonOpt,
    OperatorDeviceOpt,
    OperatorOpt,
    PolicyOpt,
    operator_name,
)
from keyadmin.cli.render import (
    clean,
    emit_csv,
    emit_json,
    emit_kv,
    emit_table,
    out,
    say,
    to_jsonable,
)

if TYPE_CHECKING:
    from keyadmin.flows.audit import AuditResult
    from keyadmin.flows.sync import SyncResult

MAPPING_OPT = typer.Option(
    None,
    "--mapping",
    help="Mapping file (TOML) naming the table and columns; default: the common schema "
    "(see policies/app-mapping.example.toml). Presets for real applications: "
    "policies/apps/flask-security.toml, policies/apps/django-otp-webauthn.toml.",
)


def sync(
    target: str = typer.Option(
        ...,
        "--target",
        envvar="KEYADMIN_SYNC_TARGET",
        help="The application's database URL (sqlite:///PATH or postgresql://USER@HOST/DB).",
    ),
    mapping: Path = MAPPING_OPT,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Show what would change; write nothing anywhere."
    ),
    check: bool = typer.Option(
        False,
        "--check",
        help="A full dry run that exits 3 when anything would change or drift is found (cron, CI).",
    ),
    prune: bool = typer.Option(
        False, "--prune", help="Delete rows keyadmin never approved (drift); logged."
    ),
    create_table: bool = typer.Option(
        False, "--create-table", help="Create the table with the common schema if missing."
    ),
    full: bool = typer.Option(
        False, "--full", help="Compare everything, not only the changes since the last run."
    ),
    policy: Path = typer.Option(
        None,
        "--policy",
        help="Policy whose step_up.counter_jump_threshold bounds the counters pulled back "
        "(default 1000).",
    ),
    operator: OperatorOpt = None,
    operator_device: OperatorDeviceOpt = None,
    db: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write active credentials into the application's credential table, in one transaction.

    Inserts new credentials, updates changed ones, deletes or disables (per the mapping)
    revoked, suspended and quarantined ones, and pulls back counters the application advanced
    (at most the policy's counter jump threshold above the registry's). Rows keyadmin never
    approved are reported, and deleted only with --prune. A row of an approved credential with
    another public key or user, or a counter far above, below or outside the registry's, is
    tampering: reported, logged, repaired where the registry's value can be written, and the
    exit code is 3. Only the changes since the last run are read (--full reads everything).
    --check compares everything, writes nothing, and exits 3 when the application's table is
    not what the registry says (a change to make, drift, tampering): a gate for cron or CI.

    Example: keyadmin sync --target postgresql://app@db/app --mapping app-mapping.toml --dry-run
    """
    from keyadmin.config import database_url
    from keyadmin.flows.sync import sync as run_sync
    from keyadmin.flows.tamper import TamperingFound, jump_threshold
    from keyadmin.store.appstore import load_mapping

    if check:
        dry_run, full = True, True
    loaded = None
    if policy is not None:
        from keyadmin.policy.loader import load_policy

        loaded = load_policy(policy)
    url = database_url(db, create=create_table)  # --create-table sets up a new desk
    actor, evidence = operator_name(operator), None
    if not dry_run:  # a dry run writes nothing
        args = {"requested_full": full, "requested_prune": prune}
        authority = authorize_cli(url, "sync", args, operator, operator_device)
        actor, evidence = authority.operator, authority.evidence
    result = run_sync(
        registry_url=url,
        target_url=target,
        mapping=load_mapping(mapping),
        actor=actor,
        authority=evidence,
        dry_run=dry_run,
        prune=prune,
        create_table=create_table,
        full=full,
        counter_jump_threshold=jump_threshold(loaded),
    )
    if json_out:
        emit_json(result)
    else:
        _sync_table(result, prune)
    if result.tampering_count:
        kinds = sorted({t.kind for t in result.tampering})
        raise TamperingFound(
            f"sync: {result.tampering_count} tampering finding(s) in the application's table "
            f"({', '.join(kinds)}); the registry's values stand"
            + ("" if result.dry_run else ", and it is logged (sync.tamper)"),
            hint="find out who wrote the application's table; keyadmin log show --action "
            "sync.tamper lists the rows",
        )
    pending = (
        result.inserted + result.updated + result.removed + result.disabled
        + result.counters_pulled + result.drift_count
    )  # fmt: skip
    if check and pending:
        from keyadmin.errors import PolicyRefused

        raise PolicyRefused(
            f"sync --check: the application's table differs from the registry: "
            f"{pending - result.drift_count} change(s) to write, {result.drift_count} row(s) "
            "keyadmin never approved (drift)",
            hint="run keyadmin sync (with --prune for the drift) to bring it in line",
        )


def _sync_table(result: SyncResult, prune: bool) -> None:
    title = "Sync (dry run, nothing written)" if result.dry_run else "Sync done"
    emit_kv(
        f"{title}: {result.target}",
        [
            ("mode", "full" if result.full else "incremental"),
            ("registry changes read", result.examined),
            ("application rows read", result.app_rows_read),
            ("inserted", result.inserted),
            ("updated", result.updated),
            ("removed", result.removed),
            ("disabled", result.disabled),
            ("counters pulled back", result.counters_pulled),
            ("tampering findings", result.tampering_count),
            ("repaired (tampered)", result.repaired),
            ("drift (never approved)", result.drift_count),
            ("pruned", result.pruned),
            ("writes to the application", result.app_writes),
            ("watermark", f"{result.last_seq_before} -> {result.last_seq_after}"),
            ("seconds", result.seconds),
        ],
    )
    for t in result.tampering:
        out(
            f"  TAMPERED: {t.credential_id[:32]}… {t.kind}: {clean(t.detail)}"
            f"{' (repaired)' if t.repaired else ''}\n"
        )
    for d in result.drift:
        count = d.sign_count if d.sign_count is not None else f"{d.stored_count!r} (not a counter)"
        out(
            f"  drift: {d.credential_id[:32]}… user {clean(d.user_id[:24])} counter {count}"
            f"{' (pruned)' if d.pruned else ''}\n"
        )
    for u in result.unknown_users:
        say(
            f"  user not in the application: {u.user} (credential {u.credential_id[:16]}…): "
            f"{u.reason}"
        )
    if result.unknown_users_count:
        say(
            f"{result.unknown_users_count} approved credential(s) not written: the application "
            "has no such user (checked again by every run)"
        )
    if result.drift_count and not prune:
        say(f"{result.drift_count} row(s) keyadmin never approved; --prune deletes them")


def audit(
    policy: PolicyOpt,
    enforce: bool = typer.Option(
        False, "--enforce", help="Quarantine every credential that fails (logged)."
    ),
    output: FormatOpt = "table",
    json_out: FormatJsonOpt = False,
    csv_out: FormatCsvOpt = False,
    target: str = typer.Option(
        None,
        "--target",
        envvar="KEYADMIN_SYNC_TARGET",
        help="Also check drift against the application's database at this URL.",
    ),
    mapping: Path = MAPPING_OPT,
    deep: bool = typer.Option(
        False, "--deep", help="Re-verify every credential's signature too (slow)."
    ),
    operator: OperatorOpt = None,
    operator_device: OperatorDeviceOpt = None,
    db: DbOpt = None,
) -> None:
    """Re-evaluate every credential against the current policy and metadata.

    Reports new status reports (e.g. ATTESTATION_KEY_COMPROMISE), models dropped from the
    allowlist, raised firmware floors, expired evidence chains, users below the minimum number
    of keys, stale metadata and (with --target) drift with the application's table.
    Exit 3 when anything fails; --enforce quarantines the failing credentials.

    Example: keyadmin audit --policy policies/fido-certified-hardware.toml --format csv
    """
    from keyadmin.config import database_url
    from keyadmin.errors import UsageError
    from keyadmin.flows.audit import AuditFailed
    from keyadmin.flows.audit import audit as run_audit
    from keyadmin.policy.loader import load_policy
    from keyadmin.policy.metadata import IndexMetadata
    from keyadmin.store.appstore import load_mapping
    from keyadmin.store.mds_index import MdsIndex

    fmt = "json" if json_out else "csv" if csv_out else output
    if fmt not in ("table", "json", "csv"):
        raise UsageError(f"unknown --format {output!r}", hint="one of table, json, csv")
    url = database_url(db)
    actor, evidence = operator_name(operator), None
    if target is not None and not target.strip():
        raise UsageError("--target is empty", hint="give the application's database URL")
    if enforce:  # quarantines: an operator with the audit role decides that
        args = {"requested_policy": str(policy)}
        authority = authorize_cli(url, "audit.enforce", args, operator, operator_device)
        actor, evidence = authority.operator, authority.evidence
    result = run_audit(
        registry_url=url,
        policy=load_policy(policy),
        metadata=IndexMetadata(MdsIndex(url)),
        actor=actor,
        authority=evidence,
        enforce=enforce,
        target_url=target,
        mapping=load_mapping(mapping) if target else None,
        deep=deep,
    )
    if fmt == "json":
        emit_json({**to_jsonable(result), "ok": result.ok})
    elif fmt == "csv":
        _csv(result)
    else:
        _table(result)
    if not result.ok:
        fails = sum(1 for f in result.findings if f.severity == "fail")
        tampered = len({f.subject for f in result.findings if f.kind == "tamper"})
        raise AuditFailed(
            f"audit: {fails} finding(s) fail the policy "
            f"({result.failed_credentials} credential(s)"
            + (f"; {tampered} tampered row(s) in the application's table" if tampered else "")
            + ")",
            hint=None if enforce else "review them; --enforce quarantines failing credentials",
        )


def _csv(result: AuditResult) -> None:
    emit_csv(
        ["kind", "severity", "subject", "user", "aaguid", "registry_id", "rule", "detail"],
        [
            [f.kind, f.severity, f.subject, f.user or "", f.aaguid or "", f.registry_id or "",
             f.rule, f.detail]
            for f in result.findings
        ],
    )  # fmt: skip


def _table(result: AuditResult) -> None:
    fails = [f for f in result.findings if f.severity == "fail"]
    warns = [f for f in result.findings if f.severity == "warn"]
    meta = result.metadata
    emit_kv(
        f"Audit under {result.policy} ({result.policy_sha256[:12]}…) at {result.at}",
        [
            (
                "metadata",
                f"no. {meta['no']} ({'signed' if meta['signed'] else 'UNSIGNED'}, "
                f"{'fresh' if meta['fresh'] else 'STALE'})"
                if meta
                else "none loaded",
            ),
            ("credentials checked", result.credentials_checked),
            ("evidence groups", result.evidence_groups),
            ("failing credentials", result.failed_credentials),
            ("findings", f"{len(fails)} fail, {len(warns)} warn"),
            ("quarantined", len(result.quarantined)),
            ("drift target", result.target),
            ("seconds", result.seconds),
        ],
    )
    if result.findings:
        out("\n")
        emit_table(
            ["severity", "kind", "subject", "rule", "detail"],
            [[f.severity, f.kind, f.subject if len(f.subject) <= 20 else f.subject[:18] + "…",
              f.rule, f.detail] for f in result.findings[:500]],
        )  # fmt: skip
        if len(result.findings) > 500:
            out(f"… {len(result.findings) - 500} more (use --format csv)\n")
    else:
        out("\nno findings: every credential passes the current policy\n")
