"""``keyadmin attestation …``: judge recorded registrations offline, for auditors.

Import-light: the attestation, policy and metadata modules (and through them cryptography)
are imported inside the command body, so ``keyadmin --help`` stays fast.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from keyadmin.cli.options import DbOpt, JsonOpt, PolicyOpt
from keyadmin.cli.render import emit_json, out

app = typer.Typer(
    help=(
        "Verify recorded registrations (attestation) against a policy, offline.\n\n"
        "Example:\n\n"
        "  keyadmin attestation verify --attestation-object o2NmbXRm... "
        "--client-data eyJ0eXBl... --policy policies/fido-certified-hardware.toml"
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
)


def _b64(value: str, option: str) -> bytes:
    """Decode base64url (padding optional) or standard base64; '@FILE' reads the text from FILE."""
    from keyadmin.errors import UsageError

    text = value
    if value.startswith("@"):
        try:
            from keyadmin.files import read_input

            text = read_input(value[1:]).decode("utf-8", "replace").strip()
        except OSError as e:
            raise UsageError(f"{option}: cannot read {value[1:]}: {e.strerror}") from None
    from keyadmin.b64 import decode_any

    text = "".join(text.split())
    try:
        if not text:
            raise ValueError("empty")
        return decode_any(text)
    except ValueError:
        raise UsageError(
            f"{option} is not base64url",
            hint=f"pass the raw bytes base64url-encoded, as a browser's response gives them "
            f"(or {option} @FILE)",
        ) from None


def parse_at(value: str | None) -> datetime:
    """``--at`` as an aware UTC datetime (a date alone means 00:00 UTC); now when absent."""
    from keyadmin.errors import UsageError

    if value is None:
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--at {value!r} is not an ISO 8601 date-time", hint="e.g. --at 2026-10-15T12:00:00Z"
        ) from None
    if at.tzinfo is None:
        if len(value) == 10:  # a bare date
            at = at.replace(tzinfo=UTC)
        else:
            raise UsageError(f"--at {value!r} has no time zone", hint="append Z or +00:00")
    return at.astimezone(UTC)


def open_metadata(db: str | None) -> Any:
    from keyadmin.config import database_url
    from keyadmin.policy import IndexMetadata
    from keyadmin.store.mds_index import MdsIndex

    return IndexMetadata(MdsIndex(database_url(db)))


def render_decision(decision: Any, as_json: bool, title: str) -> None:
    """The one view of a Decision: JSON, or a rule table for people."""
    if as_json:
        emit_json(decision.to_dict())
        return
    width = max(len(r.rule) for r in decision.reasons)
    lines = [title]
    for r in decision.reasons:
        mark = {"pass": "pass", "fail": "FAIL", "skip": "skip"}[r.outcome]
        lines.append(f"  {mark}  {r.rule.ljust(width)}  {r.detail}")
    verdict = "ALLOWED" if decision.allowed else "REFUSED"
    first = decision.first_failure
    if first is not None:
        verdict += f" (first failing rule: {first.rule})"
    lines.append(f"decision: {verdict}")
    out("\n".join(lines) + "\n")


@app.command("verify")
def verify_cmd(
    attestation_object: Annotated[
        str,
        typer.Option(
            "--attestation-object", help="attestationObject, base64url (or @FILE holding it)."
        ),
    ],
    client_data: Annotated[
        str,
        typer.Option("--client-data", help="clientDataJSON, base64url (or @FILE holding it)."),
    ],
    policy: PolicyOpt,
    rp_id: Annotated[
        str | None, typer.Option("--rp-id", help="Judge for this RP ID instead of the policy's.")
    ] = None,
    origin: Annotated[
        list[str] | None,
        typer.Option("--origin", help="Accepted origin instead of the policy's (repeatable)."),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at", help="Decision time, ISO 8601 (certificate validity, metadata freshness)."
        ),
    ] = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify one recorded registration against a policy, offline, rule by rule.

    Every rule of the policy is reported (pass, fail or skip) with its detail. --rp-id and
    --origin judge evidence captured for another relying party; --at fixes the time at which
    certificates must be valid and metadata fresh. Exit 0 when allowed, 3 when refused, 7 when
    refused because the metadata is stale or unsigned and the policy needs it fresh or signed.

    Example:

      keyadmin attestation verify --attestation-object @att.b64 --client-data @cd.b64
      --policy policies/fido-certified-hardware.toml --rp-id demo.yubico.com
      --origin https://demo.yubico.com --at 2026-10-15T00:00:00Z --json
    """
    from keyadmin.errors import ExitCode
    from keyadmin.policy import evaluate_registration, load_policy

    att = _b64(attestation_object, "--attestation-object")
    cdj = _b64(client_data, "--client-data")
    pol = load_policy(policy)
    when = parse_at(at)
    metadata = open_metadata(db)
    decision = evaluate_registration(
        pol, att, cdj, at=when, metadata=metadata, rp_id=rp_id, origins=origin or None
    )
    render_decision(decision, as_json, f"policy {pol.name} v{pol.version} at {when.isoformat()}")
    if not decision.allowed:
        failed = {r.rule for r in decision.reasons if r.outcome == "fail"}
        if failed & {"metadata.fresh", "metadata.signed"}:
            # the freshness gate: a decision that needs metadata refuses with the metadata
            # exit code when the metadata is stale or unsigned (keyadmin mds update / import)
            raise typer.Exit(int(ExitCode.METADATA))
        raise typer.Exit(int(ExitCode.POLICY_REFUSED))
