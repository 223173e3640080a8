"""``keyadmin policy …``: check a policy file, explain a model, list the models it admits.

Import-light: the policy and metadata modules are imported inside the command bodies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from keyadmin.cli.options import DbOpt, JsonOpt
from keyadmin.cli.render import emit_json, emit_kv, err, out

app = typer.Typer(
    help=(
        "Policy files (policies/*.toml): check them, and review them against FIDO metadata.\n\n"
        "Example:\n\n"
        "  keyadmin policy check policies/fido-certified-hardware.toml"
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
)

_AT = typer.Option("--at", help="Evaluation time, ISO 8601 (metadata freshness); default now.")


@app.command("check")
def check_cmd(
    file: Annotated[
        Path | None,
        typer.Argument(help="The policy TOML file (default: the configured policy)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Load a policy file (default: the configured one) and report its rules, version and
    SHA-256, or the first error.

    An error names the file, the line and the key (unknown keys, wrong types, an allowlist
    without verified attestation, an empty trust set, a missing root file). Exit 0 when the
    policy is valid, 1 when it is not.

    Example:

      keyadmin policy check policies/yubikey-fips.toml --json
    """
    from keyadmin.policy import PolicyLoadError, load_policy

    if file is None:
        from keyadmin.errors import UsageError
        from keyadmin.settings import value

        configured = value("policy")
        if not configured:
            raise UsageError(
                "no policy file given and none configured",
                hint="keyadmin policy check FILE, or policy = in the configuration file",
            )
        file = Path(configured)
    try:
        pol = load_policy(file)
    except PolicyLoadError as e:
        if as_json:
            emit_json(
                {
                    "valid": False,
                    "file": str(e.path),
                    "line": e.line,
                    "key": e.key,
                    "problem": e.problem,
                }
            )
        else:
            err(f"error: {e.message}\n")
            if e.hint:
                err(f"hint: {e.hint}\n")
        raise typer.Exit(1) from None
    summary = pol.summary()
    if as_json:
        emit_json({"valid": True, **summary})
        return
    a = summary["authenticators"]
    emit_kv(
        f"policy {pol.name} v{pol.version}: valid",
        [
            ("file", summary["path"]),
            ("sha256", pol.sha256),
            ("rp_id", summary["rp_id"]),
            ("origins", summary["origins"]),
            ("formats", summary["formats"]),
            ("attestation types", summary["attestation_types"]),
            (
                "trust roots",
                [f"{r['subject']} ({r['sha256'][:16]}…)" for r in summary["trust_roots"]],
            ),
            ("metadata", summary["metadata"]),
            ("allow AAGUIDs", a["allow_aaguids"]),
            ("allow vendor roots", a["allow_vendor_roots"]),
            ("any metadata model", a["allow_any_metadata_model"]),
            ("deny AAGUIDs", a["deny_aaguids"]),
            ("attachment", a["attachment"]),
            ("key protection", a["key_protection"]),
            ("credential", summary["credential"]),
            ("device", summary["device"]),
            ("step-up", summary["step_up"]),
            ("keys per user", summary["keys_per_user"]),
        ],
    )


@app.command("explain")
def explain_cmd(
    file: Annotated[Path, typer.Argument(help="The policy TOML file.")],
    aaguid: Annotated[str, typer.Argument(help="The model's AAGUID.")],
    at: Annotated[str | None, _AT] = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Would this authenticator model pass the policy, and if not, why not.

    Judges what the metadata can tell (entry, status, certification, allowlist, attachment,
    key protection, attestation types, trust anchors, firmware floor); what only a
    registration shows is listed as skipped. Exit 0 when the model would pass, 3 when not.

    Example:

      keyadmin policy explain policies/fido-certified-hardware.toml
      2fc0579f-8113-47ea-b116-bb5a8db9202a
    """
    import uuid

    from keyadmin.cli.attestation import open_metadata, parse_at, render_decision
    from keyadmin.errors import ExitCode, UsageError
    from keyadmin.policy import explain_model, load_policy

    try:
        uuid.UUID(aaguid)
    except ValueError:
        raise UsageError(f"{aaguid!r} is not an AAGUID", hint="e.g. 2fc0579f-8113-…") from None
    pol = load_policy(file)
    decision = explain_model(pol, open_metadata(db), aaguid, at=parse_at(at))
    title = f"policy {pol.name} v{pol.version}, model {decision.subject['aaguid']}"
    if decision.subject.get("description"):
        title += f" ({decision.subject['description']})"
    render_decision(decision, as_json, title)
    if not decision.allowed:
        raise typer.Exit(int(ExitCode.POLICY_REFUSED))


@app.command("models")
def models_cmd(
    file: Annotated[Path, typer.Argument(help="The policy TOML file.")],
    diff: Annotated[
        Path | None,
        typer.Option("--diff", help="A previous `policy models --json` output to compare with."),
    ] = None,
    at: Annotated[str | None, _AT] = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the metadata models the policy admits, with the list's SHA-256, for review.

    Under each model, why it qualifies: every rule it passed, with the metadata fields that
    satisfied it ([hardware] criteria one per line). Review it before deploying (docs/policy.md).
    Save the --json output with each policy or metadata change; --diff PREVIOUS shows the
    models added, removed or changed since then.

    Example:

      keyadmin policy models policies/fido-certified-hardware.toml --json > models-v1.json

      keyadmin policy models policies/fido-certified-hardware.toml --diff models-v1.json
    """
    from keyadmin.cli.attestation import open_metadata, parse_at
    from keyadmin.errors import UsageError
    from keyadmin.mds.errors import MetadataMissing
    from keyadmin.policy import admitted_models, diff_models, load_policy

    pol = load_policy(file)
    metadata = open_metadata(db)
    if metadata.snapshot() is None:
        raise MetadataMissing(f"no FIDO metadata in the registry ({metadata.index.url})")
    listing = admitted_models(pol, metadata, at=parse_at(at))
    data: dict[str, Any] = listing.to_dict()
    if diff is not None:
        try:
            from keyadmin.files import read_input

            previous = json.loads(read_input(diff))
        except (OSError, ValueError, RecursionError) as e:
            raise UsageError(
                f"--diff {diff}: not a saved `keyadmin policy models --json` output ({e})"
            ) from None
        if not isinstance(previous, dict):
            raise UsageError(f"--diff {diff}: not a saved `keyadmin policy models --json` output")
        data = {**data, "diff": diff_models(previous, listing)}
    if as_json:
        emit_json(data)
        return
    text = [
        f"policy {pol.name} v{pol.version} admits {len(listing.models)} model(s) "
        f"of metadata no. {listing.metadata_no}",
        f"  list sha256: {listing.sha256}",
    ]
    for m in listing.models:
        floor = f"  firmware >= {m['firmware_minimum']}" if m["firmware_minimum"] else ""
        text.append(f"  {m['aaguid']}  {m['description']}  [{m['certification'] or '-'}]{floor}")
        text += [f"      {rule}: {detail}" for rule, detail in m["why"].items()]
    if "diff" in data:
        d = data["diff"]
        text.append(f"changes since {diff} (sha256 {d['previous_sha256']}):")
        text += [f"  + {m['aaguid']}  {m['description']}" for m in d["added"]]
        text += [f"  - {m['aaguid']}  {m['description']}" for m in d["removed"]]
        text += [f"  ~ {c['aaguid']}  {c['after']['description']}" for c in d["changed"]]
        if not (d["added"] or d["removed"] or d["changed"]):
            text.append("  (none)")
    out("\n".join(text) + "\n")
