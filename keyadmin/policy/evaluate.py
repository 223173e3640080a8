"""Judge one registration against a policy: ``evaluate_registration -> Decision``.

The rules run in this fixed order; each is one small function returning a ``Reason``.
Every rule is reported: a rule whose input is missing (the registration did not parse, no
metadata entry) is ``skip`` with the reason why. An exception inside a rule is a ``fail``
(fail closed), never a pass.

 1. attestation.parse        the attestationObject and clientDataJSON parse
 2. rp_id                    authData rpIdHash is SHA-256 of the policy's RP ID
 3. origin                   clientDataJSON origin is one of the policy's origins, not cross-origin
 4. attestation.format       the format is accepted (platform formats are refused by a
                             roaming-only policy: tpm, apple, android-key, android-safetynet)
 5. metadata.entry           the model's metadata entry (by AAGUID, else by the attestation
                             certificate's key identifier), required or not
 6. metadata.signed          the stored metadata was signature-verified (if the policy says so)
 7. metadata.fresh           the metadata was not past nextUpdate + grace at the decision time
 8. attestation.statement    the statement's signature and format requirements hold
 9. attestation.aaguid_match the certificate's AAGUID extension equals authData's AAGUID
10. attestation.trusted      the chain validates at the decision time to a trust anchor:
                             the entry's attestationRootCertificates plus trust.extra_roots
11. attestation.type         the attestation type (basic, attca, ...) is accepted
12. metadata.status          no forbidden status report (compromise, revocation, ...)
13. metadata.certification   certified at least at metadata.min_certification
13a. metadata.retired        not RETIRED (or before its sunsetDate, as metadata.retired says),
                             and no sunsetDate passed (keyadmin.policy.lifecycle)
13b. metadata.fips           FIPS 140 level at least metadata.fips_level_min
13c. metadata.profile        a certification profile in metadata.certification_profiles
14. authenticator.allowed    not denied; admitted by AAGUID, vendor root or as any
                             metadata model - only on a verified identity
15. authenticator.roaming    a roaming (external) authenticator, if the policy says so
16. authenticator.key_protection  the metadata's keyProtection has every required value
17. authenticator.hardware   the [hardware] criteria hold for the proved model's metadata
                             (keyadmin.policy.hardware; skip without a [hardware] section)
18. authenticator.device_bound    BE flag clear (cannot be synced)
19. user_presence            UP flag set
20. user_verification        UV flag set when required
21. algorithm                the credential's COSE algorithm is allowed
22. cred_protect             credProtect level at least the policy's
23. device.firmware          not in a registration: skip, naming the floor (evaluate_device)

``allowed`` is True only when no rule failed and the rules the decision rests on
(``MUST_PASS``) all passed.

How: ``registration_facts`` reads everything once - the parsed registration, the metadata
entry (and how it was found), the snapshot, the attestation verification - into a frozen
``RegistrationFacts``; then each rule is a pure function ``(facts, policy) -> (outcome,
detail)``. A fact whose computation raised keeps the error; reading it raises that error
inside the rule that needs it, which ``run_rules`` reports as that rule's ``fail``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Generic, ParamSpec, TypeVar

from keyadmin.policy import lifecycle
from keyadmin.policy.hardware import hardware_outcome
from keyadmin.policy.metadata import (
    MetadataSource,
    SnapshotLike,
    certification_rank,
    entry_for_attestation,
    entry_label,
    entry_root_fingerprints,
    entry_roots_der,
    latest_certification,
)
from keyadmin.policy.model import (
    ALGORITHM_NAMES,
    PLATFORM_FORMATS,
    Decision,
    Outcome,
    Policy,
    Reason,
)

if TYPE_CHECKING:
    from cryptography.x509 import Certificate

    from keyadmin.attestation import AttestationError, Evidence, ParsedRegistration
    from keyadmin.mds.model import Entry

MUST_PASS: frozenset[str] = frozenset(
    {
        "attestation.parse",
        "rp_id",
        "origin",
        "attestation.format",
        "attestation.statement",
        "attestation.trusted",
        "attestation.type",
        "authenticator.allowed",
        "user_presence",
    }
)
ZERO_AAGUID = "00000000-0000-0000-0000-000000000000"

T = TypeVar("T")
P = ParamSpec("P")


# -- facts: computed once, before any rule ----------------------------------------------------


@dataclass(frozen=True)
class Computed(Generic[T]):
    """A fact, or the exception its computation raised (re-raised where a rule reads it)."""

    value: T | None = None
    error: Exception | None = None

    def get(self) -> T | None:
        if self.error is not None:
            raise self.error
        return self.value


def compute(fn: Callable[[], T]) -> Computed[T]:
    try:
        return Computed(fn())
    except Exception as e:  # noqa: BLE001 - kept, and raised in the rule that reads the fact
        return Computed(error=e)


@dataclass(frozen=True)
class EntryLookup:
    """How the model's metadata entry was looked up, and what was found.

    ``entry`` is the model's entry, proved (status and allowlist read it); ``anchor_entry``
    the entry whose roots anchor the chain (maybe only claimed); ``how`` the lookup as the
    rule reports it; ``unproved`` the reason an entry was found but does not prove the model."""

    entry: Entry | None
    anchor_entry: Entry | None
    how: str
    unproved: str | None = None


@dataclass(frozen=True)
class Verification:
    """``verify_attestation``'s answer: the evidence, or the error and the stage it stopped at
    (``statement``, ``aaguid`` or ``trusted``)."""

    evidence: Evidence | None
    error: AttestationError | None = None
    stage_failed: str | None = None


@dataclass(frozen=True)
class RegistrationFacts:
    """Everything the rules read about one registration, computed once."""

    rp_id: str
    origins: tuple[str, ...]
    at: datetime
    stale_metadata_override: bool
    has_metadata: bool  # a metadata source was given
    parsed: ParsedRegistration | None
    parse_error: Exception | None  # AttestationError: refused; anything else: an internal error
    lookup_: Computed[EntryLookup]  # value None: not looked up (no parse, no metadata source)
    snapshot_: Computed[SnapshotLike | None]  # value None: no snapshot (or no metadata source)
    verification_: Computed[Verification]  # value None: not verified (no parse)

    @property
    def lookup(self) -> EntryLookup | None:
        return self.lookup_.get()

    @property
    def snapshot(self) -> SnapshotLike | None:
        return self.snapshot_.get()

    @property
    def verification(self) -> Verification | None:
        return self.verification_.get()

    @property
    def entry(self) -> Entry | None:
        """The model's proved metadata entry (None also when the lookup raised)."""
        return self.lookup_.value.entry if self.lookup_.value is not None else None

    @property
    def anchor_entry(self) -> Entry | None:
        return self.lookup_.value.anchor_entry if self.lookup_.value is not None else None

    @property
    def evidence(self) -> Evidence | None:
        v = self.verification_.value
        return v.evidence if v is not None else None

    @property
    def stage_failed(self) -> str | None:
        v = self.verification_.value
        return v.stage_failed if v is not None else None

    @property
    def verify_error(self) -> AttestationError | None:
        v = self.verification_.value
        return v.error if v is not None else None


def key_identifier(cert: Certificate) -> str:
    """MDS attestationCertificateKeyIdentifier: SHA-1 of the subjectPublicKey bits."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        bits = key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    elif isinstance(key, rsa.RSAPublicKey):
        bits = key.public_bytes(Encoding.DER, PublicFormat.PKCS1)
    elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        bits = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    else:  # pragma: no cover - no other key types in attestation certificates
        raise ValueError(f"unsupported key type {type(key).__name__}")
    return hashlib.sha1(bits, usedforsecurity=False).hexdigest()


def _names_aaguid(cert: Certificate) -> bool:
    """True when the certificate carries the id-fido-gen-ce-aaguid extension."""
    from cryptography import x509

    try:
        cert.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.4.1.45724.1.1.4"))
    except x509.ExtensionNotFound:
        return False
    return True


def lookup_entry(parsed: ParsedRegistration, metadata: MetadataSource) -> EntryLookup:
    """The model's metadata entry: by AAGUID, else by the attestation certificate's key
    identifier; an AAGUID the certificate does not name must be confirmed by the key id."""
    aaguid = str(parsed.aaguid)
    entry = None
    how = ""
    if aaguid != ZERO_AAGUID:
        entry = metadata.by_aaguid(aaguid)
        how = f"AAGUID {aaguid}"
    if entry is not None and parsed.x5c and not _names_aaguid(parsed.x5c[0]):
        # The AAGUID in authData is self-asserted: with no AAGUID extension in the certificate,
        # the model is proved only when the attestation key identifier names the same entry.
        kid = key_identifier(parsed.x5c[0])
        by_kid = metadata.by_key_id(kid)
        if by_kid is None or by_kid.aaguid != entry.aaguid:
            return EntryLookup(
                None,
                entry,
                f"AAGUID {aaguid} (claimed; the certificate does not name it)",
                f"the certificate does not name AAGUID {aaguid} and its key identifier {kid} "
                "is not listed for that model: the model is not proved",
            )
        how = f"AAGUID {aaguid} and attestation key identifier {kid}"
    if entry is None and parsed.x5c:
        kid = key_identifier(parsed.x5c[0])
        entry = metadata.by_key_id(kid)
        if entry is not None and aaguid != ZERO_AAGUID and entry.aaguid != aaguid:
            # The key says AAGUID X (no metadata entry for X) but its attestation key names
            # another model: neither the claim nor the entry is the key's proved model.
            return EntryLookup(
                None,
                None,
                f"AAGUID {aaguid} (no entry) / key identifier {kid}",
                f"the key claims AAGUID {aaguid}, which has no metadata entry, but its attestation "
                f"key identifier {kid} is listed for {entry_label(entry)}: the model is not proved",
            )
        if entry is not None or aaguid == ZERO_AAGUID:
            how = f"attestation key identifier {kid}"
    return EntryLookup(entry, entry, how)


def _verify(
    parsed: ParsedRegistration, policy: Policy, anchor_entry: Entry | None, at: datetime
) -> Verification:
    from keyadmin.attestation import (
        AaguidMismatch,
        AttestationError,
        AttestationUntrusted,
        verify_attestation,
    )

    anchors: list[bytes] = [r.der for r in policy.trust_roots]
    entry = entry_for_attestation(anchor_entry) if anchor_entry is not None else None
    try:
        evidence = verify_attestation(parsed, trust_anchors=anchors, at=at, metadata_entry=entry)
    except AaguidMismatch as e:
        return Verification(None, e, "aaguid")
    except AttestationUntrusted as e:
        return Verification(None, e, "trusted")
    except AttestationError as e:
        return Verification(None, e, "statement")
    return Verification(evidence)


def registration_facts(
    policy: Policy,
    attestation_object: bytes,
    client_data_json: bytes,
    *,
    at: datetime,
    metadata: MetadataSource | None,
    rp_id: str | None = None,
    origins: Sequence[str] | None = None,
    stale_metadata_override: bool = False,
) -> RegistrationFacts:
    """Read everything the rules need, once (see the module doc)."""
    from keyadmin.attestation import parse_registration

    parsed: ParsedRegistration | None = None
    parse_error: Exception | None = None
    try:
        parsed = parse_registration(attestation_object, client_data_json)
    except Exception as e:  # noqa: BLE001 - attestation.parse reports it
        parse_error = e
    lookup: Computed[EntryLookup] = Computed()
    if parsed is not None and metadata is not None:
        p, m = parsed, metadata
        lookup = compute(lambda: lookup_entry(p, m))
    snapshot: Computed[SnapshotLike | None] = (
        compute(metadata.snapshot) if metadata is not None else Computed()
    )
    verification: Computed[Verification] = Computed()
    if parsed is not None:
        p, anchor = parsed, lookup.value.anchor_entry if lookup.value is not None else None
        verification = compute(lambda: _verify(p, policy, anchor, at))
    return RegistrationFacts(
        rp_id=rp_id or policy.relying_party.rp_id,
        origins=tuple(origins) if origins else policy.relying_party.origins,
        at=at,
        stale_metadata_override=stale_metadata_override,
        has_metadata=metadata is not None,
        parsed=parsed,
        parse_error=parse_error,
        lookup_=lookup,
        snapshot_=snapshot,
        verification_=verification,
    )


# -- rules: pure functions of (facts, policy) ---------------------------------------------------

Rule = Callable[[RegistrationFacts, Policy], tuple[Outcome, str]]
UNPARSED: tuple[Outcome, str] = ("skip", "not evaluated: the registration did not parse")


# -- 1..4: the registration itself ---------------------------------------------------------------


def rule_parse(f: RegistrationFacts, policy: Policy) -> tuple[Outcome, str]:
    from keyadmin.attestation import AttestationError

    if f.parsed is None:
        if isinstance(f.parse_error, AttestationError):
            return "fail", str(f.parse_error)
        raise f.parse_error or RuntimeError("the registration was not parsed")
    p = f.parsed
    return "pass", (
        f"{p.fmt} registration, AAGUID {p.aaguid}, flags 0x{p.flags.raw:02x}, "
        f"credential key {ALGORITHM_NAMES.get(p.algorithm, f'COSE {p.algorithm}')}"
    )


def rule_rp_id(f: RegistrationFacts, policy: Policy) -> tuple[Outcome, str]:
    if f.parsed is None:
        return UNPARSED
    expected = hashlib.sha256(f.rp_id.encode("utf-8")).digest()
    if f.parsed.rp_id_hash == expected:
        return "pass", f"rpIdHash is SHA-256({f.rp_id!r})"
    return "fail", (
        f"rpIdHash {f.parsed.rp_id_hash.hex()[:16]}… is not SHA-256({f.rp_id!r}): the "
        "credential was made for another relying party"
    )


def rule_origin(f: RegistrationFacts, policy: Policy) -> tuple[Outcome, str]:
    if f.parsed is None:
        return UNPARSED
    cd = f.parsed.client_data
    if cd is None:
        return "fail", "no clientDataJSON to check the origin"
    if cd.cross_origin:
        return "fail", f"clientDataJSON says crossOrigin=true (origin {cd.origin})"
    if cd.origin in f.origins:
        return "pass", f"origin {cd.origin} is allowed"
    return "fail", f"origin {cd.origin} is not one of {', '.join(f.origins)}"


def rule_format(f: RegistrationFacts, policy: Policy) -> tuple[Outcome, str]:
    if f.parsed is None:
        return UNPARSED
    fmt = f.parsed.fmt
    if policy.authenticators.attachment == "roaming" and fmt in PLATFORM_FORMATS:
        return "fail", (
            f"format {fmt!r} comes from a platform authenticator (phone, laptop TPM), "
            "not a roaming hardware key"
        )
    if fmt not in policy.attestation.formats:
        if fmt == "none":
            return "fail", "format 'none': the authenticator gave no attestation"
        return "fail", (
            f"format {fmt!r} is not accepted "
            f"(accepted: {', '.join(sorted(policy.attestation.formats))})"
        )
    return "pass", f"format {fmt!r} is accepted"


# -- 5..7: metadata ------------------------------------------------------------------------------


def rule_metadata_entry(f: RegistrationFacts, policy: Policy) -> tuple[Outcome, str]:
    if f.parsed is None:
        return UNPARSED
    required = policy.metadata.required
    if not f.has_metadata:
        return ("fail" if required else "skip"), "no metadata source was given"
    found = f.lookup
    if found is None:  # pragma: no cover - parsed with a metadata source: always looked up
        raise RuntimeError("the metadata entry was not looked up")
    if found.unproved is not None:
        return ("fail" if required else "skip"), found.unproved
    if found.entry is not None:
        return "pass", f"{entry_label(found.entry)} found by {found.how}"
    what = found.how or f"AAGUID {f.parsed.aaguid}"
    if required:
        return "fail", f"no metadata entry for {what}; the policy requires one"
    return "skip", f"no metadata entry for {what}; the policy does not require one"


def metadata_signed_outcome(policy: Policy, snap: SnapshotLike | None) -> tuple[Outcome, str]:
    """Does the stored metadata carry a verified signature, when the policy demands one?"""
    if not policy.metadata.signed:
        if snap is not None and not snap.signed:
            return "skip", f"metadata no. {snap.no} is UNSIGNED ({snap.source}); policy allows it"
        return "skip", "the policy does not demand signed metadata"
    if snap is None:
        return "fail", "no metadata loaded; run keyadmin mds update"
    if not snap.signed:
        return "fail", (
            f"metadata no. {snap.no} from {snap.source} is unsigned; the policy demands a "
            "signature-verified BLOB (keyadmin mds update / keyadmin mds import FILE)"
        )
    return "pass", f"metadata no. {snap.no} was signature-verified"


def rule_metadata_signed(f: RegistrationFacts, policy: Policy) -> tuple[Outcome, str]:
    return metadata_signed_outcome(policy, f.snapshot)


NOT_REQUIRED: tuple[Outcome, str] = ("skip", "the policy does not require metadata")


def metadata_fresh_outcome(
    policy: Policy, snap: SnapshotLike | None, at: datetime
) -> tuple[Outcome, str]:
    """Is the stored metadata fresh at ``at`` (nextUpdate + the policy's grace)?"""
    if not policy.metadata.required:
        return NOT_REQUIRED
    if snap is None:
        return "fail", "no metadata loaded; run keyadmin mds update"
    from keyadmin.mds.freshness import evaluate as freshness

    grace = policy.metadata.freshness_grace_days
    fr = freshness(snap, at, timedelta(days=grace))
    if fr.fresh:
        return "pass", (
            f"metadata no. {snap.no} (nextUpdate {snap.next_update}) is fresh at {at.isoformat()}"
        )
    return "fail", (
        f"metadata no. {snap.no} went stale at {fr.deadline} (nextUpdate {snap.next_update} + "
        f"{grace:g} days); run keyadmin mds update"
    )


def rule_metadata_fresh(f: RegistrationFacts, policy: Policy) -> tuple[Outcome, str]:
    if not policy.metadata.required:  # the snapshot is not read (a broken source is no reason)
        return NOT_REQUIRED
    outcome, detail = metadata_fresh_outcome(policy, f.snapshot, f.at)
    if outcome == "fail" and f.stale_metadata_override and f.snapshot is not None:
        # stale, not missing: the override applies
        return "skip", f"{detail} - OVERRIDDEN by the operator (logged)"
    return outcome, detail


# -- 8..11: the attestation ----------------------------------------------------------------------


def rule_statement(f: RegistrationFacts, policy: Policy) -> tuple[Outcome, str]:
    if f.parsed is None:
        return UNPARSED
    v = f.verification
    if v is None:  # pragma: no cover - a parsed registration is always verified
        raise RuntimeError("the attestation was not verified")
    if v.evidence is not None:
        return "pass", f"{v.evidence.fmt} statement verifies ({v.evidence.attestation_type})"
    if v.stage_failed == "statement":
        return "fail", str(v.error)
    return "pass", "the statement's signature verifies"


def _after_statement(f: RegistrationFacts) -> tuple[Outcome, str] | None:
    if f.parsed is None:
        return UNPARSED
    if f.stage_failed == "statement":
        return "skip", "not evaluated: the attestation statement does not verify"
    if f.evidence is None and f.verify_error is None:
        return "fail", "the attestation was not verified"
    return None


def _certificate_aaguid(parsed: ParsedRegistration) -> str | None:
    from keyadmin.attestation.aaguid import read_certificate_aaguid

    if not parsed.x5c:
        return None
    value = read_certificate_aaguid(parsed.x5c[0])
    return str(value) if value is not None else None


def rule_aaguid_match(f: RegistrationFacts, policy: Policy) -> tuple[Outcome, str]:
    if (s := _after_statement(f)) is not None:
        return s
    if f.stage_failed == "aaguid" and f.verify_error is not None:
        return "fail", f.verify_error.reason
    ev = f.evidence
    if ev is None:  # untrusted: the AAGUID check ran before the path check, and passed
        cert_aaguid = _certificate_aaguid(f.parsed) if f.parsed is not None else None
        if cert_aaguid is None:
            return "skip", "the attestation certificate carries no AAGUID extension"
        return "pass", f"certificate AAGUID {cert_aaguid} matches"
    if ev.certificate_aaguid is None:
        if str(ev.attestation_type) in ("self", "none"):
            return "skip", f"{ev.attestation_type} attestation has no certificate"
        return "skip", (
            "the attestation certificate carries no AAGUID extension; the model is "
            "identified by the metadata entry whose roots the chain ends at"
        )
    if ev.fmt == "fido-u2f":
        return "pass", f"U2F certificate AAGUID {ev.certificate_aaguid} (authData AAGUID is zero)"
    return "pass", f"certificate AAGUID {ev.certificate_aaguid} equals authData's"


def rule_trusted(f: RegistrationFacts, policy: Policy) -> tuple[Outcome, str]:
    if (s := _after_statement(f)) is not None:
        return s
    if f.stage_failed == "aaguid":
        return "skip", "not evaluated: the certificate AAGUID does not match"
    if f.stage_failed == "trusted" and f.verify_error is not None:
        anchors = f.anchor_entry
        n = len(policy.trust_roots) + (len(entry_roots_der(anchors)) if anchors else 0)
        return "fail", f"{f.verify_error.reason} (trust anchors: {n})"
    ev = f.evidence
    if ev is None:  # pragma: no cover - _after_statement: evidence or an error
        raise RuntimeError("the attestation was not verified")
    if not ev.trusted:
        return "fail", f"{ev.attestation_type} attestation: no certificate chain to trust"
    root = ev.chain[-1].certificate.subject.rfc4514_string()
    return "pass", f"chain of {len(ev.chain)} validates at {f.at.isoformat()} to {root}"


def rule_attestation_type(f: RegistrationFacts, policy: Policy) -> tuple[Outcome, str]:
    if (s := _after_statement(f)) is not None:
        return s
    if f.evidence is None:
        return "skip", "not evaluated: the attestation was not fully verified"
    kind = str(f.evidence.attestation_type)
    if kind in policy.attestation.types:
        return "pass", f"attestation type {kind} is accepted"
    return "fail", (
        f"attestation type {kind} is not accepted "
        f"(accepted: {', '.join(sorted(policy.attestation.types))})"
    )


# -- 12..16: the model (metadata and allowlist) --------------------------------------------------


def status_outcome(policy: Policy, entry: Entry | None) -> tuple[Outcome, str]:
    if entry is None:
        return "skip", "no metadata entry"
    bad = [
        f"{r.status} ({r.effective_date})"
        for r in entry.status_reports
        if r.status in policy.metadata.forbidden_statuses
    ]
    if bad:
        return "fail", f"forbidden status report(s): {', '.join(bad)}"
    return "pass", f"no forbidden status; latest {entry.status}"


def certification_outcome(policy: Policy, entry: Entry | None) -> tuple[Outcome, str]:
    floor = policy.metadata.min_certification
    if floor is None:
        return "skip", "the policy sets no minimum certification"
    if entry is None:
        return "fail", f"no metadata entry shows certification {floor}"
    level, note = latest_certification(entry)
    if level is None:
        return "fail", f"not FIDO certified ({note or 'no certification report'}); needs {floor}"
    if certification_rank(level) >= certification_rank(floor):
        return "pass", f"{level} since {note} (needs {floor})"
    return "fail", f"certified {level} only; the policy needs {floor}"


def allowlist_outcome(
    policy: Policy,
    aaguid: str | None,
    entry: Entry | None,
    root_sha256: str | None,
) -> tuple[Outcome, str]:
    """Deny list first, then the allowlist. ``aaguid``/``root_sha256`` must be verified values."""
    a = policy.authenticators
    if aaguid and aaguid in a.deny_aaguids:
        return "fail", f"AAGUID {aaguid} is on the deny list"
    entry_aaguid = entry.aaguid if entry else None
    if entry_aaguid and entry_aaguid in a.deny_aaguids:
        return "fail", f"AAGUID {entry_aaguid} is on the deny list"
    if aaguid and aaguid in a.allow_aaguids:
        return "pass", f"AAGUID {aaguid} is on the allowlist"
    if root_sha256 and root_sha256 in a.allow_vendor_roots:
        return "pass", f"the chain ends at allowed vendor root {root_sha256[:16]}…"
    if a.allow_any_metadata_model and entry is not None:
        return "pass", f"{entry_label(entry)} is a metadata model (allow_any_metadata_model)"
    what = f"AAGUID {aaguid}" if aaguid else "this model"
    return "fail", f"{what} is not on the allowlist"


def roaming_outcome(policy: Policy, fmt: str | None, entry: Entry | None) -> tuple[Outcome, str]:
    if policy.authenticators.attachment != "roaming":
        return "skip", "the policy admits any attachment"
    if fmt in PLATFORM_FORMATS:
        return "fail", f"{fmt} attestation comes from a platform authenticator"
    if entry is None:
        return "fail", "no metadata entry shows this is a roaming (external) authenticator"
    hints = [str(h).lower() for h in entry.attachment_hint]
    if "external" in hints:
        return "pass", f"metadata attachmentHint {', '.join(hints)}"
    return "fail", f"metadata attachmentHint {', '.join(hints) or '-'} lacks 'external'"


def key_protection_outcome(policy: Policy, entry: Entry | None) -> tuple[Outcome, str]:
    need = policy.authenticators.key_protection
    if not need:
        return "skip", "the policy requires no key protection"
    if entry is None:
        return "fail", f"no metadata entry shows key protection {', '.join(need)}"
    have = {str(k).lower() for k in entry.key_protection}
    missing = [k for k in need if k not in have]
    if missing:
        return "fail", f"keyProtection {', '.join(sorted(have)) or '-'} lacks {', '.join(missing)}"
    return "pass", f"keyProtection {', '.join(sorted(have))}"


def _verified_identity(f: RegistrationFacts) -> tuple[str | None, str] | None:
    """(AAGUID, root SHA-256) proved by a trusted chain; None when nothing was proved."""
    ev = f.evidence
    if ev is None or not ev.trusted:
        return None
    from cryptography.hazmat.primitives import hashes

    root = ev.chain[-1].certificate.fingerprint(hashes.SHA256()).hex()
    aaguid: str | None
    if ev.certificate_aaguid is not None:
        aaguid = str(ev.certificate_aaguid)
    elif str(ev.aaguid) != ZERO_AAGUID:
        # No AAGUID extension: authData's AAGUID is bound only through the metadata entry
        # whose roots the chain ends at.
        aaguid = str(ev.aaguid)
        if (
            f.entry is None
            or f.entry.aaguid != aaguid
            or root not in entry_root_fingerprints(f.entry)
        ):
            aaguid = None
    else:
        aaguid = f.entry.aaguid if f.entry else None
    return aaguid, root


def on_entry(outcome: Callable[[Policy, Entry | None], tuple[Outcome, str]]) -> Rule:
    """The rule that judges the model's proved metadata entry with ``outcome`` (the same
    ``*_outcome`` functions judge a model in ``keyadmin.policy.catalog``)."""

    def rule(f: RegistrationFacts, policy: Policy) -> tuple[Outcome, str]:
        if f.parsed is None:
            return UNPARSED
        return outcome(policy, f.entry)

    return rule


def rule_retired(f: RegistrationFacts, policy: Policy) -> tuple[Outcome, str]:
    if f.parsed is None:
        return UNPARSED
    return lifecycle.retired_outcome(policy, f.entry, f.at)


def rule_allowed(f: RegistrationFacts, policy: Policy) -> tuple[Outcome, str]:
    if f.parsed is None:
        return UNPARSED
    claimed = str(f.parsed.aaguid)
    if claimed in policy.authenticators.deny_aaguids:
        # denying on what the key only claims is always safe: the deny list wins over any allow
        return "fail", f"AAGUID {claimed} (as the key reports it) is on the deny list"
    ident = _verified_identity(f)
    if ident is None:
        return "fail", (
            f"the model is unproven (AAGUID {f.parsed.aaguid} is self-asserted without a "
            "trusted attestation chain)"
        )
    aaguid, root = ident
    entry = f.entry
    if entry is not None and root not in entry_root_fingerprints(entry):
        # the chain ended at an explicitly named root, not at the entry's own roots
        entry = None
    return allowlist_outcome(policy, aaguid, entry, root)


def rule_roaming(f: RegistrationFacts, policy: Policy) -> tuple[Outcome, str]:
    if f.parsed is None:
        return UNPARSED
    return roaming_outcome(policy, f.parsed.fmt, f.entry)


# -- 18..23: the credential ----------------------------------------------------------------------


def rule_device_bound(f: RegistrationFacts, policy: Policy) -> tuple[Outcome, str]:
    if f.parsed is None:
        return UNPARSED
    flags = f.parsed.flags
    if not policy.credential.device_bound:
        return "skip", f"the policy admits synced credentials (BE={int(flags.be)})"
    if flags.be or flags.bs:
        return "fail", (
            f"BE={int(flags.be)} BS={int(flags.bs)}: the credential may be synced off the "
            "device (a passkey), not device-bound"
        )
    return "pass", "BE=0: device-bound credential"


def rule_user_presence(f: RegistrationFacts, policy: Policy) -> tuple[Outcome, str]:
    """WebAuthn registration step "verify that the UP bit of the flags is set"."""
    if f.parsed is None:
        return UNPARSED
    if not f.parsed.flags.up:
        return "fail", "UP=0: the authenticator did not report user presence at registration"
    return "pass", "UP=1"


def rule_user_verification(f: RegistrationFacts, policy: Policy) -> tuple[Outcome, str]:
    if f.parsed is None:
        return UNPARSED
    uv = f.parsed.flags.uv
    need = policy.credential.user_verification
    if need == "required" and not uv:
        return "fail", "UV=0: the user was not verified (PIN or biometric) at registration"
    return "pass" if uv else "skip", f"UV={int(uv)} (policy: {need})"


def rule_algorithm(f: RegistrationFacts, policy: Policy) -> tuple[Outcome, str]:
    if f.parsed is None:
        return UNPARSED
    alg = f.parsed.algorithm
    allowed = ", ".join(
        sorted(ALGORITHM_NAMES.get(a, str(a)) for a in policy.credential.algorithms)
    )
    if f.parsed.credential_key is None:
        return "fail", (f"COSE algorithm {alg} is not one keyadmin verifies (allowed: {allowed})")
    name = ALGORITHM_NAMES.get(alg, f"COSE {alg}")
    if alg in policy.credential.algorithms:
        return "pass", f"{name} is allowed"
    return "fail", f"{name} is not allowed (allowed: {allowed})"


def rule_cred_protect(f: RegistrationFacts, policy: Policy) -> tuple[Outcome, str]:
    if f.parsed is None:
        return UNPARSED
    floor = policy.credential.cred_protect
    level = f.parsed.cred_protect
    if floor is None:
        return "skip", f"the policy sets no credProtect level (reported: {level or '-'})"
    if level is None:
        return "fail", f"no credProtect extension output; the policy needs level >= {floor}"
    if level >= floor:
        return "pass", f"credProtect {level} (needs >= {floor})"
    return "fail", f"credProtect {level}; the policy needs >= {floor}"


def rule_firmware(f: RegistrationFacts, policy: Policy) -> tuple[Outcome, str]:
    floors = policy.device.firmware_minimum
    aaguid = str(f.parsed.aaguid) if f.parsed is not None else None
    if aaguid and aaguid in floors:
        return "skip", (
            f"a registration does not carry the firmware version; the policy's floor for "
            f"{aaguid} is {floors[aaguid]}, checked on the device (evaluate_device)"
        )
    return "skip", "no firmware floor applies to this AAGUID"


RULES: tuple[tuple[str, Rule], ...] = (
    ("attestation.parse", rule_parse),
    ("rp_id", rule_rp_id),
    ("origin", rule_origin),
    ("attestation.format", rule_format),
    ("metadata.entry", rule_metadata_entry),
    ("metadata.signed", rule_metadata_signed),
    ("metadata.fresh", rule_metadata_fresh),
    ("attestation.statement", rule_statement),
    ("attestation.aaguid_match", rule_aaguid_match),
    ("attestation.trusted", rule_trusted),
    ("attestation.type", rule_attestation_type),
    ("metadata.status", on_entry(status_outcome)),
    ("metadata.certification", on_entry(certification_outcome)),
    ("metadata.retired", rule_retired),
    ("metadata.fips", on_entry(lifecycle.fips_outcome)),
    ("metadata.profile", on_entry(lifecycle.profile_outcome)),
    ("authenticator.allowed", rule_allowed),
    ("authenticator.roaming", rule_roaming),
    ("authenticator.key_protection", on_entry(key_protection_outcome)),
    ("authenticator.hardware", on_entry(hardware_outcome)),
    ("authenticator.device_bound", rule_device_bound),
    ("user_presence", rule_user_presence),
    ("user_verification", rule_user_verification),
    ("algorithm", rule_algorithm),
    ("cred_protect", rule_cred_protect),
    ("device.firmware", rule_firmware),
)
RULE_IDS: tuple[str, ...] = tuple(name for name, _ in RULES)


def run_rules(
    rules: Sequence[tuple[str, Callable[P, tuple[Outcome, str]]]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> tuple[Reason, ...]:
    """Run ``rules`` in order on the same arguments; an exception inside a rule is that
    rule's ``fail``."""
    out: list[Reason] = []
    for name, rule in rules:
        try:
            outcome, detail = rule(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - fail closed, and say why
            outcome, detail = "fail", f"internal error while checking: {type(e).__name__}: {e}"
        out.append(Reason(name, outcome, detail))
    return tuple(out)


def decide(reasons: Sequence[Reason], must_pass: frozenset[str]) -> bool:
    by_rule = {r.rule: r.outcome for r in reasons}
    if any(r.outcome == "fail" for r in reasons):
        return False
    return all(by_rule.get(rule) == "pass" for rule in must_pass)


def evaluate_registration(
    policy: Policy,
    attestation_object: bytes,
    client_data_json: bytes,
    *,
    at: datetime,
    metadata: MetadataSource | None,
    rp_id: str | None = None,
    origins: Sequence[str] | None = None,
    stale_metadata_override: bool = False,
) -> Decision:
    """Judge one registration at time ``at``; ``rp_id``/``origins`` override the policy's.

    ``stale_metadata_override``: the operator explicitly accepted stale (not missing) metadata
    (enrolment's --allow-stale-metadata, logged there): ``metadata.fresh`` then skips, saying
    so, instead of failing."""
    if at.tzinfo is None or at.utcoffset() is None:
        from keyadmin.errors import UsageError

        raise UsageError("evaluate_registration needs a timezone-aware time")
    facts = registration_facts(
        policy,
        attestation_object,
        client_data_json,
        at=at,
        metadata=metadata,
        rp_id=rp_id,
        origins=origins,
        stale_metadata_override=stale_metadata_override,
    )
    reasons = run_rules(RULES, facts, policy)
    snap = facts.snapshot_.value  # a source that raised: already reported as failed rules
    return Decision(
        allowed=decide(reasons, MUST_PASS),
        reasons=reasons,
        evidence=facts.evidence,
        subject={
            "policy": {
                "name": policy.name,
                "version": policy.version,
                "sha256": policy.sha256,
                "path": str(policy.path),
            },
            "rp_id": facts.rp_id,
            "origins": list(facts.origins),
            "at": at.isoformat(),
            "metadata": None
            if snap is None
            else {"no": snap.no, "source": snap.source, "signed": snap.signed},
        },
    )
