"""Frozen, typed records of MDS3 metadata, as keyadmin uses them. Import-light (stdlib only)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields

#: Status reports that must block a model (FIDO MDS3 §3.1.4 AuthenticatorStatus).
BLOCKING_STATUSES: frozenset[str] = frozenset(
    {
        "REVOKED",
        "ATTESTATION_KEY_COMPROMISE",
        "USER_KEY_REMOTE_COMPROMISE",
        "USER_KEY_PHYSICAL_COMPROMISE",
        "USER_VERIFICATION_BYPASS",
    }
)

#: FIPS 140 certification statuses (MDS 3.1), lowest first; the index + 1 is the level.
FIPS_LEVELS: tuple[str, ...] = (
    "FIPS140_CERTIFIED_L1",
    "FIPS140_CERTIFIED_L2",
    "FIPS140_CERTIFIED_L3",
    "FIPS140_CERTIFIED_L4",
)

#: FIDO certification levels, lowest first (FIDO_CERTIFIED is the legacy name for L1).
CERTIFICATION_LEVELS: tuple[str, ...] = (
    "FIDO_CERTIFIED",
    "FIDO_CERTIFIED_L1",
    "FIDO_CERTIFIED_L1plus",
    "FIDO_CERTIFIED_L2",
    "FIDO_CERTIFIED_L2plus",
    "FIDO_CERTIFIED_L3",
    "FIDO_CERTIFIED_L3plus",
)

KNOWN_STATUSES: frozenset[str] = frozenset(
    {
        "NOT_FIDO_CERTIFIED",
        "UPDATE_AVAILABLE",
        "RETIRED",
        "SELF_ASSERTION_SUBMITTED",
        *FIPS_LEVELS,
        *BLOCKING_STATUSES,
        *CERTIFICATION_LEVELS,
    }
)


@dataclass(frozen=True)
class StatusReport:
    status: str
    effective_date: str | None = None
    authenticator_version: int | None = None
    certificate_number: str | None = None
    certification_descriptor: str | None = None
    certification_policy_version: str | None = None
    certification_requirements_version: str | None = None
    url: str | None = None
    certificate: str | None = None  # base64 DER, for ATTESTATION_KEY_COMPROMISE
    # MDS 3.1
    certification_profiles: tuple[str, ...] = ()  # e.g. ("enterprise",), ("consumer",)
    sunset_date: str | None = None  # ISO date
    fips_revision: int | None = None  # 2 (FIPS 140-2) or 3 (FIPS 140-3)
    fips_physical_security_level: int | None = None
    batch_certificate: str | None = None  # base64 DER

    def to_dict(self) -> dict[str, object]:
        """Its fields by name (a shallow copy: every value is immutable)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _rank(r: StatusReport) -> tuple[str, int]:
    """Order of reports: by date; on the same date a blocking status outranks a certification,
    and a higher certification level outranks a lower one (real BLOBs list ``FIDO_CERTIFIED``
    and ``FIDO_CERTIFIED_L1`` on the same day, in either order)."""
    if r.status in BLOCKING_STATUSES:
        weight = 100
    elif r.status in CERTIFICATION_LEVELS:
        weight = 10 + CERTIFICATION_LEVELS.index(r.status)
    else:
        weight = 0
    return (r.effective_date or "", weight)


def latest_report(
    reports: Iterable[StatusReport], pred: Callable[[StatusReport], bool]
) -> StatusReport | None:
    """The latest report that satisfies ``pred`` (see ``_rank``)."""
    best: StatusReport | None = None
    for r in reports:  # among equal ranks the later one in the list wins
        if pred(r) and (best is None or _rank(r) >= _rank(best)):
            best = r
    return best


@dataclass(frozen=True)
class Lifecycle:
    """The MDS 3.1 facts of a model that its status reports carry (see ``lifecycle``)."""

    fips_level: int | None  # 1..4
    fips_revision: int | None
    fips_physical_security_level: int | None
    certification_profiles: tuple[str, ...]
    retired: str | None  # the RETIRED report's effective date, or "undated"
    sunset_date: str | None


def lifecycle(reports: Iterable[StatusReport]) -> Lifecycle:
    """The MDS 3.1 facts of a model, from its status reports: the FIPS 140 level (of the latest
    FIPS140_CERTIFIED_Lx report), the certification profiles (of the latest report naming
    any), retirement (the latest RETIRED report's date) and the sunset date (of that RETIRED
    report, else of the latest report carrying one)."""
    reports = tuple(reports)
    fips = latest_report(reports, lambda r: r.status in FIPS_LEVELS)
    profiled = latest_report(reports, lambda r: bool(r.certification_profiles))
    retired = latest_report(reports, lambda r: r.status == "RETIRED")
    sunset = (
        retired if retired is not None else latest_report(reports, lambda r: bool(r.sunset_date))
    )
    return Lifecycle(
        fips_level=FIPS_LEVELS.index(fips.status) + 1 if fips else None,
        fips_revision=fips.fips_revision if fips else None,
        fips_physical_security_level=fips.fips_physical_security_level if fips else None,
        certification_profiles=profiled.certification_profiles if profiled else (),
        retired=(retired.effective_date or "undated") if retired else None,
        sunset_date=sunset.sunset_date if sunset else None,
    )


# -- from the stored (``asdict``) form -----------------------------------------------------------
# The index stores ``Entry.to_dict()`` as JSON; these read it back. Members an older index lacks
# take their defaults; a member of the wrong type reads as absent.


def _str(d: Mapping[str, object], key: str) -> str | None:
    v = d.get(key)
    return v if isinstance(v, str) else None


def _int(d: Mapping[str, object], key: str) -> int | None:
    v = d.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _strs(d: Mapping[str, object], key: str) -> tuple[str, ...]:
    v = d.get(key)
    return tuple(str(x) for x in v) if isinstance(v, (list, tuple)) else ()


def _dicts(d: Mapping[str, object], key: str) -> list[Mapping[str, object]]:
    v = d.get(key)
    return [x for x in v if isinstance(x, Mapping)] if isinstance(v, (list, tuple)) else []


def report_from_dict(d: Mapping[str, object]) -> StatusReport:
    """A StatusReport from its stored ``asdict`` form (members an older index lacks default)."""
    return StatusReport(
        status=str(d.get("status")),
        effective_date=_str(d, "effective_date"),
        authenticator_version=_int(d, "authenticator_version"),
        certificate_number=_str(d, "certificate_number"),
        certification_descriptor=_str(d, "certification_descriptor"),
        certification_policy_version=_str(d, "certification_policy_version"),
        certification_requirements_version=_str(d, "certification_requirements_version"),
        url=_str(d, "url"),
        certificate=_str(d, "certificate"),
        certification_profiles=_strs(d, "certification_profiles"),
        sunset_date=_str(d, "sunset_date"),
        fips_revision=_int(d, "fips_revision"),
        fips_physical_security_level=_int(d, "fips_physical_security_level"),
        batch_certificate=_str(d, "batch_certificate"),
    )


def root_from_dict(d: Mapping[str, object]) -> RootCertificate:
    return RootCertificate(
        sha256=str(d.get("sha256") or ""),
        subject=_str(d, "subject"),
        organization=_str(d, "organization"),
        not_after=_str(d, "not_after"),
        der_b64=str(d.get("der_b64") or ""),
        parse_error=_str(d, "parse_error"),
    )


def entry_from_dict(d: Mapping[str, object]) -> Entry:
    """An Entry from its stored ``Entry.to_dict()`` form (see the note above). Status reports
    without a status are left out (no rule can read one)."""
    names = d.get("friendly_names")
    return Entry(
        index=_int(d, "index") or 0,
        description=str(d.get("description") or ""),
        aaguid=_str(d, "aaguid"),
        aaid=_str(d, "aaid"),
        attestation_certificate_key_identifiers=_strs(d, "attestation_certificate_key_identifiers"),
        vendor=_str(d, "vendor"),
        protocol_family=_str(d, "protocol_family"),
        authenticator_version=_int(d, "authenticator_version"),
        status=str(d.get("status") or "NO_STATUS"),
        status_date=_str(d, "status_date"),
        certification_level=_str(d, "certification_level"),
        blocking_statuses=_strs(d, "blocking_statuses"),
        time_of_last_status_change=str(d.get("time_of_last_status_change") or ""),
        status_reports=tuple(
            report_from_dict(r)
            for r in _dicts(d, "status_reports")
            if isinstance(r.get("status"), str)
        ),
        key_protection=_strs(d, "key_protection"),
        matcher_protection=_strs(d, "matcher_protection"),
        attachment_hint=_strs(d, "attachment_hint"),
        transports=_strs(d, "transports"),
        attestation_types=_strs(d, "attestation_types"),
        user_verification_methods=_strs(d, "user_verification_methods"),
        attestation_root_certificates=tuple(
            root_from_dict(r) for r in _dicts(d, "attestation_root_certificates")
        ),
        crypto_strength=_int(d, "crypto_strength"),
        friendly_names=(
            {str(k): str(v) for k, v in names.items()} if isinstance(names, Mapping) else {}
        ),
        fips_level=_int(d, "fips_level"),
        fips_revision=_int(d, "fips_revision"),
        fips_physical_security_level=_int(d, "fips_physical_security_level"),
        certification_profiles=_strs(d, "certification_profiles"),
        retired=_str(d, "retired"),
        sunset_date=_str(d, "sunset_date"),
        icon_dark=_str(d, "icon_dark"),
        provider_logo_light=_str(d, "provider_logo_light"),
        provider_logo_dark=_str(d, "provider_logo_dark"),
        multi_device_credential_support=_str(d, "multi_device_credential_support"),
        cx_config_url=_str(d, "cx_config_url"),
    )


@dataclass(frozen=True)
class RootCertificate:
    sha256: str
    subject: str | None  # None when the DER does not parse
    organization: str | None
    not_after: str | None
    der_b64: str
    parse_error: str | None = None


@dataclass(frozen=True)
class Entry:
    """One parsed metadata entry (a model of authenticator)."""

    index: int
    description: str
    aaguid: str | None
    aaid: str | None
    attestation_certificate_key_identifiers: tuple[str, ...]
    vendor: str | None
    protocol_family: str | None
    authenticator_version: int | None
    status: str  # the latest status report
    status_date: str | None
    certification_level: str | None  # the latest FIDO_CERTIFIED_* report
    blocking_statuses: tuple[str, ...]  # every blocking status ever reported
    time_of_last_status_change: str
    status_reports: tuple[StatusReport, ...]
    key_protection: tuple[str, ...]
    matcher_protection: tuple[str, ...]
    attachment_hint: tuple[str, ...]
    transports: tuple[str, ...]  # authenticatorGetInfo.transports, when given
    attestation_types: tuple[str, ...]
    user_verification_methods: tuple[str, ...]
    attestation_root_certificates: tuple[RootCertificate, ...]
    crypto_strength: int | None = None
    friendly_names: dict[str, str] = field(default_factory=dict)
    # MDS 3.1, from the status reports
    fips_level: int | None = None  # 1..4, the latest FIPS140_CERTIFIED_Lx report
    fips_revision: int | None = None
    fips_physical_security_level: int | None = None
    certification_profiles: tuple[str, ...] = ()  # of the latest report that names profiles
    retired: str | None = None  # effective date of the latest RETIRED report
    sunset_date: str | None = None  # of the RETIRED report, else of the latest report with one
    # MDS 3.1, from the metadata statement
    icon_dark: str | None = None  # data: URL
    provider_logo_light: str | None = None
    provider_logo_dark: str | None = None
    multi_device_credential_support: str | None = None  # unsupported, explicit, implicit
    cx_config_url: str | None = None

    @property
    def key(self) -> str:
        """A stable identity across BLOBs: the AAGUID, else the AAID, else the key identifiers."""
        if self.aaguid:
            return f"aaguid:{self.aaguid}"
        if self.aaid:
            return f"aaid:{self.aaid}"
        return "keyids:" + ",".join(sorted(self.attestation_certificate_key_identifiers))

    @property
    def blocked(self) -> bool:
        return bool(self.blocking_statuses)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _canonical_uuid(text: str) -> str:
    import uuid

    try:
        return str(uuid.UUID(text))
    except ValueError:
        return text


@dataclass(frozen=True)
class SkippedEntry:
    """An entry that does not parse; kept raw and reported, never fatal for the rest."""

    index: int
    reason: str
    aaguid: str | None
    aaid: str | None
    description: str | None

    @property
    def key(self) -> str:
        if self.aaguid:
            return f"aaguid:{_canonical_uuid(self.aaguid)}"
        if self.aaid:
            return f"aaid:{self.aaid}"
        return f"index:{self.index}"


@dataclass(frozen=True)
class ParsedPayload:
    no: int
    next_update: str  # ISO date
    legal_header: str
    entries: tuple[Entry, ...]
    skipped: tuple[SkippedEntry, ...]
    raw_entries: tuple[dict[str, object], ...]  # index-aligned with the payload's entries

    @property
    def duplicates(self) -> dict[str, tuple[int, ...]]:
        """Keys (``aaguid:…``, ``aaid:…``) that more than one entry claims -> their indexes
        (skipped entries included: a copy that does not parse still names its model)."""
        seen: dict[str, list[int]] = {}
        for e in self.entries:
            if e.aaguid or e.aaid:
                seen.setdefault(e.key, []).append(e.index)
        for s in self.skipped:
            if s.key in seen:  # only alongside a parsed copy: a lone skipped entry is reported
                seen[s.key].append(s.index)
        return {k: tuple(sorted(v)) for k, v in seen.items() if len(v) > 1}
