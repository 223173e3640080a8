"""Tolerant parsing of an MDS3 payload: each entry on its own.

An entry that lacks a member the MDS3 specification requires, or carries one of the wrong
type, is kept raw as a :class:`SkippedEntry` with the reason; the rest of the payload is
unaffected. (python-fido2's ``MetadataBlobPayload.from_dict`` raises on the whole payload for
one such entry, e.g. Dashlane in BLOB no. 291, and takes seconds; this parser takes tens of
milliseconds for the same 520 entries.)
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import date
from typing import Any

from keyadmin.b64 import decode_std, encode_std
from keyadmin.mds.errors import PayloadInvalid
from keyadmin.mds.model import (
    BLOCKING_STATUSES,
    CERTIFICATION_LEVELS,
    Entry,
    ParsedPayload,
    RootCertificate,
    SkippedEntry,
    StatusReport,
    latest_report,
    lifecycle,
)

#: Members the MDS3 specification requires in a metadataStatement.
REQUIRED_STATEMENT_MEMBERS: dict[str, type | tuple[type, ...]] = {
    "description": str,
    "authenticatorVersion": int,
    "schema": int,
    "upv": list,
    "attestationTypes": list,
    "userVerificationDetails": list,
    "keyProtection": list,
    "matcherProtection": list,
    "attachmentHint": list,
    "tcDisplay": list,
    "attestationRootCertificates": list,
}

_HEX40 = re.compile(r"^[0-9a-fA-F]{40}$")
_AAID = re.compile(r"^[0-9A-Fa-f]{4}#[0-9A-Fa-f]{4}$")


class EntryInvalid(ValueError):
    """Internal: why one entry was skipped."""


def _iso_date(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise EntryInvalid(f"{what} is not a date string")
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError as e:
        raise EntryInvalid(f"{what} {value!r} is not an ISO date") from e


def _str_list(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise EntryInvalid(f"{what} is not a list of strings")
    return tuple(value)


def _opt_str(d: dict[str, Any], key: str) -> str | None:
    v = d.get(key)
    return v if isinstance(v, str) else None


def _opt_int(d: dict[str, Any], key: str, what: str) -> int | None:
    v = d.get(key)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise EntryInvalid(f"{what}.{key} is not a non-negative integer")
    return v


def _status_report(raw: Any, i: int) -> StatusReport:
    if not isinstance(raw, dict) or not isinstance(raw.get("status"), str):
        raise EntryInvalid(f"statusReports[{i}] has no status")
    what = f"statusReports[{i}]"
    eff = raw.get("effectiveDate")
    av = raw.get("authenticatorVersion")
    sunset = raw.get("sunsetDate")
    profiles = raw.get("certificationProfiles")
    return StatusReport(
        status=raw["status"],
        effective_date=_iso_date(eff, f"statusReports[{i}].effectiveDate") if eff else None,
        authenticator_version=av if isinstance(av, int) else None,
        certificate_number=_opt_str(raw, "certificateNumber"),
        certification_descriptor=_opt_str(raw, "certificationDescriptor"),
        certification_policy_version=_opt_str(raw, "certificationPolicyVersion"),
        certification_requirements_version=_opt_str(raw, "certificationRequirementsVersion"),
        url=_opt_str(raw, "url"),
        certificate=_opt_str(raw, "certificate"),
        certification_profiles=tuple(
            p.lower() for p in _str_list(profiles, f"{what}.certificationProfiles")
        )
        if profiles is not None
        else (),
        sunset_date=_iso_date(sunset, f"{what}.sunsetDate") if sunset is not None else None,
        fips_revision=_opt_int(raw, "fipsRevision", what),
        fips_physical_security_level=_opt_int(raw, "fipsPhysicalSecurityLevel", what),
        batch_certificate=_opt_str(raw, "batchCertificate"),
    )


def _root_certificate(b64: Any, i: int) -> RootCertificate:
    """Summarise one attestation root. A DER that ``cryptography`` refuses (some real entries
    carry roots with negative serial numbers) keeps the entry: the root is recorded with
    ``subject=None`` and any attestation that needs it will fail verification, not this parse."""
    import warnings

    from cryptography import x509
    from cryptography.x509.oid import NameOID

    if not isinstance(b64, str):
        raise EntryInvalid(f"attestationRootCertificates[{i}] is not a string")
    # Real entries carry line breaks, spaces and missing padding inside the base64.
    compact = "".join(b64.split())
    try:
        der = decode_std(compact)
    except ValueError as e:
        raise EntryInvalid(f"attestationRootCertificates[{i}] is not base64") from e
    digest = hashlib.sha256(der).hexdigest()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cert = x509.load_der_x509_certificate(der)
    except ValueError as e:
        return RootCertificate(digest, None, None, None, encode_std(der), parse_error=str(e))
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return RootCertificate(
        sha256=digest,
        subject=cert.subject.rfc4514_string(),
        organization=str(orgs[0].value) if orgs else None,
        not_after=cert.not_valid_after_utc.isoformat(),
        der_b64=encode_std(der),
    )


def parse_entry(raw: Any, index: int) -> Entry:
    """Parse one payload entry; raises EntryInvalid with the reason."""
    if not isinstance(raw, dict):
        raise EntryInvalid("entry is not a JSON object")
    aaguid = raw.get("aaguid")
    if aaguid is not None:
        try:
            aaguid = str(uuid.UUID(str(aaguid)))
        except ValueError as e:
            raise EntryInvalid(f"aaguid {aaguid!r} is not a UUID") from e
    aaid = raw.get("aaid")
    if aaid is not None and (not isinstance(aaid, str) or not _AAID.match(aaid)):
        raise EntryInvalid(f"aaid {aaid!r} is not of the form VVVV#MMMM")
    keyids = raw.get("attestationCertificateKeyIdentifiers") or []
    if not isinstance(keyids, list) or not all(
        isinstance(k, str) and _HEX40.match(k) for k in keyids
    ):
        raise EntryInvalid("attestationCertificateKeyIdentifiers is not a list of 40-hex strings")
    keyids_t = tuple(k.lower() for k in keyids)
    if not (aaguid or aaid or keyids_t):
        raise EntryInvalid("entry has no aaguid, aaid or attestationCertificateKeyIdentifiers")

    reports_raw = raw.get("statusReports")
    if not isinstance(reports_raw, list):
        raise EntryInvalid("statusReports is missing")
    reports = tuple(_status_report(r, i) for i, r in enumerate(reports_raw))
    if "timeOfLastStatusChange" not in raw:
        raise EntryInvalid("timeOfLastStatusChange is missing")
    tolsc = _iso_date(raw["timeOfLastStatusChange"], "timeOfLastStatusChange")

    ms = raw.get("metadataStatement")
    if not isinstance(ms, dict):
        raise EntryInvalid("metadataStatement is missing")
    missing = [k for k in REQUIRED_STATEMENT_MEMBERS if k not in ms]
    if missing:
        raise EntryInvalid(f"metadataStatement lacks required {', '.join(missing)}")
    for k, typ in REQUIRED_STATEMENT_MEMBERS.items():
        if not isinstance(ms[k], typ) or (typ is int and isinstance(ms[k], bool)):
            raise EntryInvalid(f"metadataStatement.{k} has the wrong type")
    ms_aaguid = ms.get("aaguid")
    if aaguid and ms_aaguid and str(ms_aaguid).lower() != aaguid:
        raise EntryInvalid(f"metadataStatement.aaguid {ms_aaguid} differs from entry aaguid")

    uvms: list[str] = []
    for combo in ms["userVerificationDetails"]:
        if not isinstance(combo, list):
            raise EntryInvalid("userVerificationDetails is not a list of lists")
        for m in combo:
            if not isinstance(m, dict):
                raise EntryInvalid("userVerificationDetails holds a non-object")
            method = m.get("userVerificationMethod")
            if isinstance(method, str) and method not in uvms:
                uvms.append(method)

    raw_roots = ms["attestationRootCertificates"]
    roots = tuple(_root_certificate(b, i) for i, b in enumerate(raw_roots))
    gi = ms.get("authenticatorGetInfo")
    transports: tuple[str, ...] = ()
    if isinstance(gi, dict) and isinstance(gi.get("transports"), list):
        transports = tuple(str(t) for t in gi["transports"])
    latest = latest_report(reports, lambda r: True)
    cert = latest_report(reports, lambda r: r.status in CERTIFICATION_LEVELS)
    blocking = tuple(sorted({r.status for r in reports if r.status in BLOCKING_STATUSES}))
    fn = ms.get("friendlyNames")
    cs = ms.get("cryptoStrength")
    lc = lifecycle(reports)
    return Entry(
        index=index,
        description=ms["description"],
        aaguid=aaguid,
        aaid=aaid,
        attestation_certificate_key_identifiers=keyids_t,
        vendor=next((r.organization for r in roots if r.organization), None),
        protocol_family=_opt_str(ms, "protocolFamily"),
        authenticator_version=ms["authenticatorVersion"],
        status=latest.status if latest else "NO_STATUS",
        status_date=latest.effective_date if latest else None,
        certification_level=cert.status if cert else None,
        blocking_statuses=blocking,
        time_of_last_status_change=tolsc,
        status_reports=reports,
        key_protection=_str_list(ms["keyProtection"], "keyProtection"),
        matcher_protection=_str_list(ms["matcherProtection"], "matcherProtection"),
        attachment_hint=_str_list(ms["attachmentHint"], "attachmentHint"),
        transports=transports,
        attestation_types=_str_list(ms["attestationTypes"], "attestationTypes"),
        user_verification_methods=tuple(uvms),
        attestation_root_certificates=roots,
        crypto_strength=cs if isinstance(cs, int) else None,
        friendly_names={str(k): str(v) for k, v in fn.items()} if isinstance(fn, dict) else {},
        icon_dark=_opt_str(ms, "iconDark"),
        provider_logo_light=_opt_str(ms, "providerLogoLight"),
        provider_logo_dark=_opt_str(ms, "providerLogoDark"),
        multi_device_credential_support=_opt_str(ms, "multiDeviceCredentialSupport"),
        cx_config_url=_opt_str(ms, "cxConfigURL"),
        fips_level=lc.fips_level,
        fips_revision=lc.fips_revision,
        fips_physical_security_level=lc.fips_physical_security_level,
        certification_profiles=lc.certification_profiles,
        retired=lc.retired,
        sunset_date=lc.sunset_date,
    )


def _skipped(raw: Any, index: int, reason: str) -> SkippedEntry:
    d = raw if isinstance(raw, dict) else {}
    ms = d.get("metadataStatement") if isinstance(d.get("metadataStatement"), dict) else {}
    assert isinstance(ms, dict)
    aaguid = d.get("aaguid")
    return SkippedEntry(
        index=index,
        reason=reason,
        aaguid=str(aaguid).lower() if isinstance(aaguid, str) else None,
        aaid=d.get("aaid") if isinstance(d.get("aaid"), str) else None,
        description=ms.get("description") if isinstance(ms.get("description"), str) else None,
    )


def payload_header(payload: Any) -> tuple[int, str, str, list[Any]]:
    """Check the payload's own members: (no, nextUpdate, legalHeader, entries)."""
    if not isinstance(payload, dict):
        raise PayloadInvalid("the payload is not a JSON object")
    no = payload.get("no")
    if not isinstance(no, int) or isinstance(no, bool) or no < 0:
        raise PayloadInvalid(f"payload member 'no' is missing or not a number: {no!r}")
    nu = payload.get("nextUpdate")
    try:
        next_update = date.fromisoformat(nu).isoformat() if isinstance(nu, str) else None
    except ValueError:
        next_update = None
    if next_update is None:
        raise PayloadInvalid(f"payload member 'nextUpdate' is missing or not a date: {nu!r}")
    legal = payload.get("legalHeader")
    if not isinstance(legal, str):
        raise PayloadInvalid("payload member 'legalHeader' is missing")
    entries = payload.get("entries")
    if not isinstance(entries, list):
        raise PayloadInvalid("payload member 'entries' is missing or not a list")
    return no, next_update, legal, entries


def parse_payload(payload: Any) -> ParsedPayload:
    """Parse a decoded payload (a dict); a bad entry is skipped, never fatal."""
    no, next_update, legal, raw_entries = payload_header(payload)
    entries: list[Entry] = []
    skipped: list[SkippedEntry] = []
    for i, raw in enumerate(raw_entries):
        try:
            entries.append(parse_entry(raw, i))
        except EntryInvalid as e:
            skipped.append(_skipped(raw, i, str(e)))
    return ParsedPayload(
        no=no,
        next_update=next_update,
        legal_header=legal,
        entries=tuple(entries),
        skipped=tuple(skipped),
        raw_entries=tuple(raw_entries),
    )


def load_payload_bytes(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PayloadInvalid(f"the payload is not JSON: {e}") from e
    except RecursionError:
        raise PayloadInvalid("the payload nests too deeply") from None
