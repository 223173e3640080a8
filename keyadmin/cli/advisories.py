"""keyadmin advisories: which enrolled (and stocked) keys a vendor advisory affects, per user,
and the metadata status changes since each enrolment."""

from __future__ import annotations

from pathlib import Path

import typer

from keyadmin.cli.keys import emit_findings, output_format
from keyadmin.cli.options import DbOpt, FormatJsonOpt, FormatOpt
from keyadmin.cli.registry import _db
from keyadmin.errors import UsageError

SHIPPED = Path(__file__).resolve().parents[2] / "policies" / "advisories.toml"
COLUMNS = [
    "kind", "id", "user", "serial", "registry_id", "credential_id", "model", "firmware",
    "firmware_source", "detail", "action", "url",
]  # fmt: skip


def advisories(
    file: Path = typer.Option(
        None,
        "--advisories",
        envvar="KEYADMIN_ADVISORIES",
        help="The advisory file (default: policies/advisories.toml of this checkout).",
    ),
    output: FormatOpt = "table",
    json_out: FormatJsonOpt = False,
    db: DbOpt = None,
) -> None:
    """List the keys a vendor advisory affects, per user, with what to do; and the FIDO
    metadata status changes (REVOKED, ATTESTATION_KEY_COMPROMISE, …) dated after each
    credential's enrolment. Firmware is the key's (recorded at enrolment from getInfo), else
    the metadata's authenticatorVersion. Exit 3 when anything is found.

    Example: keyadmin advisories --format csv > affected-keys.csv
    """
    from keyadmin.flows.fleet import ActionNeeded, advisories_report
    from keyadmin.policy.advisories import load_advisories
    from keyadmin.policy.metadata import IndexMetadata
    from keyadmin.store.mds_index import MdsIndex

    fmt = output_format(output, json_out)
    path = file or SHIPPED
    if file is None and not SHIPPED.is_file():
        raise UsageError("no advisory file", hint="pass --advisories FILE (see docs/inventory.md)")
    known = load_advisories(path)  # a bad file is named before the registry is opened
    url = _db(db)
    result = advisories_report(url, known, IndexMetadata(MdsIndex(url)))
    users = len({f.user for f in result.findings if f.user})
    emit_findings(
        fmt,
        result,
        f"Advisories ({', '.join(result.advisories)}) over {result.credentials} credential(s) "
        f"and {result.keys} inventory key(s): {len(result.findings)} finding(s), {users} user(s)",
        COLUMNS,
        label="id",
    )
    if not result.ok:
        raise ActionNeeded(f"advisories: {len(result.findings)} finding(s) need action")
