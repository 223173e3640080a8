"""Load a policy TOML file into a ``Policy``, or raise ``PolicyLoadError`` naming file, line, key.

tomllib reports line and column for syntax errors; for everything else (unknown keys, wrong
types, contradictions such as an allowlist without verified attestation or an empty trust
set) the line of the offending key is found in the file's text by ``_KeyLines``.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
import uuid
from collections.abc import Callable
from pathlib import Path
from types import EllipsisType
from typing import Literal, TypedDict, TypeVar, cast, overload

from keyadmin.errors import ConfigError
from keyadmin.files import read_input
from keyadmin.mds.freshness import MAX_GRACE_DAYS, grace_days_ok
from keyadmin.mds.model import BLOCKING_STATUSES, KNOWN_STATUSES
from keyadmin.mds.model import CERTIFICATION_LEVELS as _MDS_LEVELS
from keyadmin.policy.fleet import read_enterprise, read_inventory
from keyadmin.policy.hardware import (
    ATTACHMENT_HINTS,
    KEY_PROTECTION,
    MATCHER_PROTECTION,
    TRANSPORTS,
)
from keyadmin.policy.model import (
    ALGORITHMS,
    ATTESTATION_TYPES,
    FORMATS,
    STEP_UP_DEFAULTS,
    UNVERIFIED_TYPES,
    AttestationRules,
    AuthenticatorRules,
    CredentialRules,
    DeviceRules,
    EnrolmentRules,
    HardwareRules,
    KeysPerUser,
    MetadataRules,
    Policy,
    RelyingParty,
    StepUpRules,
    TrustRoot,
    Version,
)

#: Certification levels, lowest first; the legacy "FIDO_CERTIFIED" counts as L1.
CERTIFICATION_LEVELS: tuple[str, ...] = tuple(
    level for level in _MDS_LEVELS if level != "FIDO_CERTIFIED"
)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

#: Every table and key a policy file may hold (anything else is an error).
SCHEMA: dict[str, frozenset[str]] = {
    "policy": frozenset({"name", "version", "description"}),
    "relying_party": frozenset({"rp_id", "origins"}),
    "attestation": frozenset({"formats", "types"}),
    "trust": frozenset({"extra_roots"}),
    "metadata": frozenset(
        {
            "required",
            "signed",
            "freshness_grace_days",
            "forbidden_statuses",
            "min_certification",
            # MDS 3.1 (keyadmin.policy.lifecycle)
            "fips_level_min",
            "retired",
            "certification_profiles",
            "duplicate_entries",
        }
    ),
    "authenticators": frozenset(
        {
            "allow_aaguids",
            "allow_vendor_roots",
            "allow_any_metadata_model",
            "deny_aaguids",
            "attachment",
            "key_protection",
        }
    ),
    "credential": frozenset(
        {"device_bound", "user_verification", "algorithms", "cred_protect", "counter"}
    ),
    "device": frozenset({"pin_required", "min_pin_length", "always_uv", "firmware_minimum"}),
    "step_up": frozenset(
        {
            "challenge_lifetime_seconds",
            "max_attempts",
            "max_attempts_per_user",
            "attempt_window_seconds",
            "counter_jump_threshold",
            "receipt_lifetime_seconds",
            "max_live_challenges",
        }
    ),
    "enrolment": frozenset({"witness_required"}),
    "hardware": frozenset(
        {
            "key_protection_any",
            "key_protection_forbidden",
            "matcher_protection_allowed",
            "attachment_required",
            "attachment_forbidden",
            "connection_hints",
            "connection_transports",
            "transports_forbidden",
            "deny_description_words",
        }
    ),
    "keys_per_user": frozenset({"minimum", "maximum"}),
    "enterprise_attestation": frozenset({"facilitation", "rp_ids", "required"}),
    "inventory": frozenset({"required", "serial_reuse"}),
}
REQUIRED_TABLES = ("policy", "relying_party", "attestation", "metadata", "authenticators")


class PolicyLoadError(ConfigError):
    """A policy file that cannot be used: names the file, the line and the key."""

    def __init__(self, path: Path, line: int | None, key: str | None, problem: str) -> None:
        where = f"{path}" + (f":{line}" if line else "")
        keytext = f" [{key}]" if key else ""
        super().__init__(
            f"{where}{keytext}: {problem}",
            hint="fix the policy file (see docs/policy.md), then run keyadmin policy check FILE",
            file=str(path),
            line=line,
            key=key,
            problem=problem,
        )
        self.path = path
        self.line = line
        self.key = key
        self.problem = problem


class _KeyLines:
    """Find the line of ``table.key`` (or of a table header) in TOML source text."""

    _HEADER = re.compile(r"^\[\s*([^\]]+?)\s*\]")
    _KEY = re.compile(r'^(?:"([^"]*)"|\'([^\']*)\'|([A-Za-z0-9_\-]+))\s*(?:\.|=)')

    def __init__(self, text: str) -> None:
        self.headers: dict[str, int] = {}
        self.keys: dict[tuple[str, str], int] = {}
        table = ""
        for n, line in enumerate(text.splitlines(), 1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            head = self._HEADER.match(s)
            if head and not s.startswith("[["):
                table = ".".join(p.strip().strip('"') for p in head.group(1).split("."))
                self.headers.setdefault(table, n)
                continue
            m = self._KEY.match(s)
            if m:
                name = next(g for g in m.groups() if g is not None)
                self.keys.setdefault((table, name), n)

    def line(self, table: str, key: str | None = None) -> int | None:
        if key is not None and (table, key) in self.keys:
            return self.keys[(table, key)]
        if table in self.headers:
            return self.headers[table]
        # a dotted table such as device.firmware_minimum written inline in its parent
        parent, _, last = table.rpartition(".")
        if parent and (parent, last) in self.keys:
            return self.keys[(parent, last)]
        return None


_T = TypeVar("_T")
_U = TypeVar("_U")
_D = TypeVar("_D")


class _Reader:
    """Typed access to the parsed TOML with errors that point at the key."""

    def __init__(self, path: Path, data: dict[str, object], lines: _KeyLines) -> None:
        self.path = path
        self.data = data
        self.lines = lines

    def error(self, table: str, key: str | None, problem: str) -> PolicyLoadError:
        dotted = f"{table}.{key}" if key else table
        return PolicyLoadError(self.path, self.lines.line(table, key), dotted, problem)

    def table(self, name: str) -> dict[str, object]:
        value = self.data.get(name, {})
        if not isinstance(value, dict):
            raise self.error(name, None, f"{name} must be a table ([{name}])")
        return value

    @overload
    def get(self, table: str, key: str, kind: type[_T], *, what: str) -> _T: ...
    @overload
    def get(
        self, table: str, key: str, kind: type[_T], default: EllipsisType, *, what: str
    ) -> _T: ...
    @overload
    def get(self, table: str, key: str, kind: type[_T], default: _D, *, what: str) -> _T | _D: ...
    @overload
    def get(
        self, table: str, key: str, kind: tuple[type[_T], type[_U]], default: _D, *, what: str
    ) -> _T | _U | _D: ...
    def get(
        self,
        table: str,
        key: str,
        kind: type | tuple[type, ...],
        default: object = ...,
        *,
        what: str,
    ) -> object:
        """``table.key`` of type ``kind``; ``default`` when absent (``...``: required)."""
        t = self.table(table)
        if key not in t:
            if default is ...:
                raise self.error(table, key, f"{table}.{key} is required ({what})")
            return default
        value = t[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise self.error(table, key, f"{table}.{key} must be {what}, not a boolean")
        if not isinstance(value, kinds):
            raise self.error(
                table, key, f"{table}.{key} must be {what}, not {type(value).__name__}"
            )
        return value

    def str_list(
        self,
        table: str,
        key: str,
        default: list[str] | EllipsisType = ...,  # ``...``: the key is required
        *,
        what: str,
        check: Callable[[str], str] | None = None,
    ) -> list[str]:
        value = self.get(table, key, list, default, what=what)
        out: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(table, key, f"{table}.{key}[{i}] must be a string ({what})")
            if check is not None:
                try:
                    item = check(item)
                except ValueError as e:
                    raise self.error(table, key, f"{table}.{key}[{i}]: {e}") from None
            out.append(item)
        return out


def _aaguid(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise ValueError(f"{text!r} is not an AAGUID (a UUID)") from None


def _one_of(allowed: frozenset[str] | tuple[str, ...], what: str) -> Callable[[str], str]:
    def check(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"{text!r} is not a known {what}; use one of {sorted(allowed)}")
        return text

    return check


def _sha256_hex(text: str) -> str:
    h = text.replace(":", "").strip().lower()
    if not _HEX64.match(h):
        raise ValueError(f"{text!r} is not a SHA-256 fingerprint (64 hex digits)")
    return h


def load_policy(path: str | Path) -> Policy:
    """Read, parse and check one policy file."""
    p = Path(path)
    try:
        raw = read_input(p)
    except OSError as e:
        raise PolicyLoadError(p, None, None, f"cannot read the file: {e.strerror}") from None
    return parse_policy(raw, p)


def parse_policy(raw: bytes, path: Path) -> Policy:
    """Check policy ``raw`` (the bytes of ``path``; relative root paths resolve beside it)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PolicyLoadError(path, None, None, f"the file is not UTF-8: {e}") from None
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise PolicyLoadError(path, None, None, "not valid TOML: nested too deeply") from None
    except tomllib.TOMLDecodeError as e:
        line = _toml_error_line(e)
        problem = str(e).split(" (at line")[0]
        raise PolicyLoadError(path, line, None, f"not valid TOML: {problem}") from None
    lines = _KeyLines(text)
    r = _Reader(path, data, lines)
    _check_unknown(r)
    for name in REQUIRED_TABLES:
        if name not in data:
            raise PolicyLoadError(path, None, name, f"the table [{name}] is required")

    name = r.get("policy", "name", str, what="a string")
    version = r.get("policy", "version", int, what="an integer >= 1")
    if not 1 <= version <= MAX_COUNT:
        raise r.error("policy", "version", f"policy.version must be an integer 1..{MAX_COUNT}")
    description = r.get("policy", "description", str, "", what="a string")

    rp = _relying_party(r)
    att = _attestation(r)
    meta = _metadata(r)
    auth = _authenticators(r, att, meta)
    roots = _trust_roots(r, path)
    if not roots and not meta.required:
        raise r.error(
            "trust",
            "extra_roots",
            "the trust set is empty: metadata.required is false and trust.extra_roots names "
            "no root, so no attestation could ever be trusted (this is never 'allow all')",
        )
    credential = _credential(r)
    device = _device(r)
    hardware = _hardware(r, meta) if "hardware" in data else None
    d = STEP_UP_DEFAULTS
    max_attempts = _positive(r, "step_up", "max_attempts", d.max_attempts)
    step_up = StepUpRules(
        challenge_lifetime_seconds=_positive(
            r, "step_up", "challenge_lifetime_seconds", d.challenge_lifetime_seconds, MAX_SECONDS
        ),
        max_attempts=max_attempts,
        max_attempts_per_user=_positive(
            r, "step_up", "max_attempts_per_user", 2 * max_attempts, 2 * MAX_COUNT
        ),
        attempt_window_seconds=_positive(
            r, "step_up", "attempt_window_seconds", d.attempt_window_seconds, MAX_SECONDS
        ),
        counter_jump_threshold=_positive(
            r, "step_up", "counter_jump_threshold", d.counter_jump_threshold, MAX_COUNTER_JUMP
        ),
        receipt_lifetime_seconds=_positive(
            r, "step_up", "receipt_lifetime_seconds", d.receipt_lifetime_seconds, MAX_SECONDS
        ),
        max_live_challenges=_positive(r, "step_up", "max_live_challenges", d.max_live_challenges),
    )
    witness_required = r.get("enrolment", "witness_required", bool, False, what="true or false")
    enterprise = read_enterprise(r, rp.rp_id) if "enterprise_attestation" in data else None
    kmin = _positive(r, "keys_per_user", "minimum", 1)
    kmax = _positive(r, "keys_per_user", "maximum", 10)
    if kmin > kmax:
        raise r.error(
            "keys_per_user", "minimum", f"keys_per_user.minimum {kmin} exceeds maximum {kmax}"
        )
    return Policy(
        path=path,
        sha256=hashlib.sha256(raw).hexdigest(),
        name=name,
        version=version,
        description=description,
        relying_party=rp,
        attestation=att,
        trust_roots=roots,
        metadata=meta,
        authenticators=auth,
        credential=credential,
        device=device,
        step_up=step_up,
        keys_per_user=KeysPerUser(kmin, kmax),
        enrolment=EnrolmentRules(witness_required=bool(witness_required)),
        hardware=hardware,
        enterprise=enterprise,
        inventory=read_inventory(r, enterprise),
        text=raw.decode("utf-8"),
    )


def _toml_error_line(e: tomllib.TOMLDecodeError) -> int | None:
    lineno = getattr(e, "lineno", None)
    if isinstance(lineno, int):
        return lineno
    m = re.search(r"at line (\d+)", str(e))
    return int(m.group(1)) if m else None


def _check_unknown(r: _Reader) -> None:
    for table, value in r.data.items():
        if table not in SCHEMA:
            raise r.error(table, None, f"unknown table [{table}]; known: {', '.join(SCHEMA)}")
        if not isinstance(value, dict):
            raise r.error(table, None, f"{table} must be a table ([{table}])")
        for key in value:
            if key not in SCHEMA[table]:
                raise r.error(
                    table,
                    key,
                    f"unknown key {table}.{key}; [{table}] takes "
                    f"{', '.join(sorted(SCHEMA[table]))}",
                )


def _relying_party(r: _Reader) -> RelyingParty:
    rp_id = r.get("relying_party", "rp_id", str, what="a domain such as example.com")
    if not rp_id or "/" in rp_id or ":" in rp_id or rp_id != rp_id.strip().lower():
        raise r.error(
            "relying_party", "rp_id", f"relying_party.rp_id {rp_id!r} is not a lower-case domain"
        )
    origins = r.str_list("relying_party", "origins", what="a list of origins")
    if not origins:
        raise r.error("relying_party", "origins", "relying_party.origins must not be empty")
    for o in origins:
        if not re.match(r"^https?://[^/]+$", o):
            raise r.error(
                "relying_party",
                "origins",
                f"origin {o!r} must be scheme://host[:port] with no path (e.g. https://example.com)",
            )
    return RelyingParty(rp_id, tuple(origins))


def _attestation(r: _Reader) -> AttestationRules:
    formats = r.str_list(
        "attestation", "formats", what="attestation formats", check=_one_of(FORMATS, "format")
    )
    types = r.str_list(
        "attestation",
        "types",
        what="attestation types",
        check=_one_of(ATTESTATION_TYPES, "attestation type"),
    )
    if not formats:
        raise r.error("attestation", "formats", "attestation.formats must not be empty")
    if not types:
        raise r.error("attestation", "types", "attestation.types must not be empty")
    return AttestationRules(frozenset(formats), frozenset(types))


def _metadata(r: _Reader) -> MetadataRules:
    required = r.get("metadata", "required", bool, what="true or false")
    signed = r.get("metadata", "signed", bool, False, what="true or false")
    grace = r.get("metadata", "freshness_grace_days", (int, float), 7, what="a number of days")
    if not grace_days_ok(grace):
        raise r.error(
            "metadata",
            "freshness_grace_days",
            f"metadata.freshness_grace_days must be a number of days from 0 to {MAX_GRACE_DAYS}",
        )
    forbidden = r.str_list(
        "metadata",
        "forbidden_statuses",
        sorted(BLOCKING_STATUSES),
        what="MDS3 status names",
        check=_one_of(KNOWN_STATUSES, "MDS3 status"),
    )
    missing = BLOCKING_STATUSES - set(forbidden)
    if missing:
        raise r.error(
            "metadata",
            "forbidden_statuses",
            f"metadata.forbidden_statuses must include every compromise status; missing "
            f"{', '.join(sorted(missing))}",
        )
    level = r.get("metadata", "min_certification", str, None, what="a FIDO_CERTIFIED_* level")
    if level is not None:
        if level == "FIDO_CERTIFIED":
            level = "FIDO_CERTIFIED_L1"
        if level not in CERTIFICATION_LEVELS:
            raise r.error(
                "metadata",
                "min_certification",
                f"{level!r} is not a certification level; use one of {list(CERTIFICATION_LEVELS)}",
            )
        if not required:
            raise r.error(
                "metadata",
                "min_certification",
                "metadata.min_certification needs metadata.required = true",
            )
    if signed and not required:
        raise r.error("metadata", "signed", "metadata.signed needs metadata.required = true")
    return MetadataRules(
        required, signed, float(grace), frozenset(forbidden), level, **_metadata_31(r, required)
    )


class _Metadata31(TypedDict):
    fips_level_min: int | None
    retired: Literal["refuse", "until-sunset"]
    certification_profiles: frozenset[str]
    duplicate_entries: Literal["refuse", "most-restrictive"]


def _metadata_31(r: _Reader, required: bool) -> _Metadata31:
    """The MDS 3.1 keys of [metadata]: fips_level_min, retired, certification_profiles,
    duplicate_entries."""
    t = "metadata"
    fips = r.get(t, "fips_level_min", int, None, what="a FIPS 140 level 1..4")
    if fips is not None and not 1 <= fips <= 4:
        raise r.error(t, "fips_level_min", f"{fips} is not a FIPS 140 level; use 1, 2, 3 or 4")
    retired = r.get(t, "retired", str, "refuse", what='"refuse" or "until-sunset"')
    if retired not in ("refuse", "until-sunset"):
        raise r.error(t, "retired", f'{retired!r}: use "refuse" or "until-sunset"')
    profiles = r.str_list(t, "certification_profiles", [], what="certification profile names")
    if "certification_profiles" in r.table(t) and not profiles:
        raise r.error(
            t,
            "certification_profiles",
            "an empty certification_profiles list admits nothing; leave the key out instead",
        )
    dups = r.get(t, "duplicate_entries", str, "refuse", what='"refuse" or "most-restrictive"')
    if dups not in ("refuse", "most-restrictive"):
        raise r.error(t, "duplicate_entries", f'{dups!r}: use "refuse" or "most-restrictive"')
    for key, value in (("fips_level_min", fips), ("certification_profiles", profiles)):
        if value and not required:
            raise r.error(t, key, f"metadata.{key} needs metadata.required = true")
    return {
        "fips_level_min": fips,
        "retired": cast(Literal["refuse", "until-sunset"], retired),
        "certification_profiles": frozenset(p.lower() for p in profiles),
        "duplicate_entries": cast(Literal["refuse", "most-restrictive"], dups),
    }


def _authenticators(r: _Reader, att: AttestationRules, meta: MetadataRules) -> AuthenticatorRules:
    t = "authenticators"
    allow = r.str_list(t, "allow_aaguids", [], what="AAGUIDs", check=_aaguid)
    roots = r.str_list(t, "allow_vendor_roots", [], what="SHA-256 fingerprints", check=_sha256_hex)
    any_model = r.get(t, "allow_any_metadata_model", bool, False, what="true or false")
    deny = r.str_list(t, "deny_aaguids", [], what="AAGUIDs", check=_aaguid)
    attachment = r.get(t, "attachment", str, "roaming", what='"roaming" or "any"')
    if attachment not in ("roaming", "any"):
        raise r.error(
            t, "attachment", f'authenticators.attachment {attachment!r}: use "roaming" or "any"'
        )
    kp = r.str_list(
        t,
        "key_protection",
        [],
        what="keyProtection values",
        check=_one_of(KEY_PROTECTION, "keyProtection value"),
    )
    if not (allow or roots or any_model):
        raise r.error(
            t,
            "allow_aaguids",
            "the allowlist is empty: set allow_aaguids, allow_vendor_roots or "
            "allow_any_metadata_model (an empty allowlist is an error, never 'allow all')",
        )
    weak = att.types & UNVERIFIED_TYPES
    if weak:
        raise r.error(
            "attestation",
            "types",
            f"an allowlist needs verified attestation, but attestation.types admits "
            f"{', '.join(sorted(weak))}: a self-asserted AAGUID proves nothing",
        )
    if any_model and not meta.required:
        raise r.error(
            t,
            "allow_any_metadata_model",
            "allow_any_metadata_model needs metadata.required = true",
        )
    if kp and not meta.required:
        raise r.error(
            t, "key_protection", "authenticators.key_protection needs metadata.required = true"
        )
    both = set(allow) & set(deny)
    if both:
        raise r.error(t, "deny_aaguids", f"AAGUID(s) both allowed and denied: {sorted(both)}")
    return AuthenticatorRules(
        allow_aaguids=frozenset(allow),
        allow_vendor_roots=frozenset(roots),
        allow_any_metadata_model=any_model,
        deny_aaguids=frozenset(deny),
        attachment=cast(Literal["roaming", "any"], attachment),
        key_protection=tuple(kp),
    )


def _hardware(r: _Reader, meta: MetadataRules) -> HardwareRules:
    """``[hardware]``: every list is checked against its FIDO vocabulary; the criteria that
    prove hardware must not be empty, and no value may be both required and forbidden."""
    t = "hardware"

    def values(key: str, vocab: frozenset[str], what: str, *, required: bool) -> list[str]:
        out = r.str_list(t, key, ... if required else [], what=what, check=_one_of(vocab, what))
        if required and not out:
            raise r.error(t, key, f"{t}.{key} must not be empty ({what})")
        return list(dict.fromkeys(out))

    if not meta.required:
        raise r.error(t, None, "[hardware] needs metadata.required = true (it reads metadata)")
    kp_any = values("key_protection_any", KEY_PROTECTION, "keyProtection value", required=True)
    kp_no = values(
        "key_protection_forbidden", KEY_PROTECTION, "keyProtection value", required=False
    )
    matcher = values(
        "matcher_protection_allowed", MATCHER_PROTECTION, "matcherProtection value", required=True
    )
    att_req = values("attachment_required", ATTACHMENT_HINTS, "attachmentHint value", required=True)
    att_no = values(
        "attachment_forbidden", ATTACHMENT_HINTS, "attachmentHint value", required=False
    )
    hints = values("connection_hints", ATTACHMENT_HINTS, "attachmentHint value", required=False)
    transports = values("connection_transports", TRANSPORTS, "transport", required=False)
    tr_no = values("transports_forbidden", TRANSPORTS, "transport", required=False)
    if not (hints or transports):
        raise r.error(
            t,
            "connection_hints",
            "set hardware.connection_hints or hardware.connection_transports: nothing would "
            "show how the key connects (e.g. wired, nfc / usb, nfc)",
        )
    for key, a, b in (
        ("key_protection_forbidden", kp_any, kp_no),
        ("attachment_forbidden", att_req, att_no),
        ("attachment_forbidden", hints, att_no),
        ("transports_forbidden", transports, tr_no),
    ):
        both = sorted(set(a) & set(b))
        if both:
            raise r.error(t, key, f"{', '.join(both)} both required and forbidden")
    words = r.str_list(t, "deny_description_words", [], what="lower-case words")
    for i, w in enumerate(words):
        if not re.fullmatch(r"[a-z0-9]+", w):
            raise r.error(
                t,
                "deny_description_words",
                f"hardware.deny_description_words[{i}] {w!r} is not one lower-case word "
                "(letters and digits; it is matched as a whole word, any case)",
            )
    return HardwareRules(
        key_protection_any=tuple(kp_any),
        key_protection_forbidden=tuple(kp_no),
        matcher_protection_allowed=tuple(matcher),
        attachment_required=tuple(att_req),
        attachment_forbidden=tuple(att_no),
        connection_hints=tuple(hints),
        connection_transports=tuple(transports),
        transports_forbidden=tuple(tr_no),
        deny_description_words=tuple(dict.fromkeys(words)),
    )


def _trust_roots(r: _Reader, path: Path) -> tuple[TrustRoot, ...]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding

    names = r.str_list("trust", "extra_roots", [], what="certificate file paths")
    out: list[TrustRoot] = []
    for name in names:
        file = Path(name)
        if not file.is_absolute():
            file = path.parent / file
        try:
            data = read_input(file)
        except OSError as e:
            hint = ""
            if "lab" in name:
                hint = (
                    f"; create it with: keyadmin sim root --state lab.key > {file}"
                    " (see docs/policy.md, 'The lab policy')"
                )
            raise r.error(
                "trust", "extra_roots", f"root file {str(file)!r}: {e.strerror}{hint}"
            ) from None
        certs: list[x509.Certificate] = []
        try:
            if b"-----BEGIN" in data:
                certs = x509.load_pem_x509_certificates(data)
            else:
                certs = [x509.load_der_x509_certificate(data)]
        except ValueError as e:
            raise r.error(
                "trust", "extra_roots", f"root file {str(file)!r} is not a certificate: {e}"
            ) from None
        for cert in certs:
            out.append(
                TrustRoot(
                    path=file,
                    der=cert.public_bytes(Encoding.DER),
                    sha256=cert.fingerprint(hashes.SHA256()).hex(),
                    subject=cert.subject.rfc4514_string(),
                )
            )
    return tuple(out)


def _credential(r: _Reader) -> CredentialRules:
    t = "credential"
    device_bound = r.get(t, "device_bound", bool, True, what="true or false")
    uv = r.get(
        t, "user_verification", str, "required", what='"required", "preferred" or "discouraged"'
    )
    if uv not in ("required", "preferred", "discouraged"):
        raise r.error(
            t, "user_verification", f'{uv!r}: use "required", "preferred" or "discouraged"'
        )
    algs = r.str_list(
        t,
        "algorithms",
        ["ES256", "EdDSA", "ES384", "RS256"],
        what="COSE algorithm names",
        check=_one_of(frozenset(ALGORITHMS), "algorithm"),
    )
    if not algs:
        raise r.error(t, "algorithms", "credential.algorithms must not be empty")
    cp = r.get(t, "cred_protect", int, None, what="a credProtect level 1, 2 or 3")
    if cp is not None and cp not in (1, 2, 3):
        raise r.error(t, "cred_protect", f"credential.cred_protect {cp} is not 1, 2 or 3")
    counter = r.get(t, "counter", str, "strict", what='"strict" or "allow-zero"')
    if counter not in ("strict", "allow-zero"):
        raise r.error(t, "counter", f'credential.counter {counter!r}: use "strict" or "allow-zero"')
    return CredentialRules(
        device_bound=device_bound,
        user_verification=cast(Literal["required", "preferred", "discouraged"], uv),
        algorithms=frozenset(ALGORITHMS[a] for a in algs),
        cred_protect=cp,
        counter=cast(Literal["strict", "allow-zero"], counter),
    )


def _device(r: _Reader) -> DeviceRules:
    t = "device"
    pin_required = r.get(t, "pin_required", bool, True, what="true or false")
    min_len = r.get(t, "min_pin_length", int, None, what="an integer 4..63")
    if min_len is not None and not 4 <= min_len <= 63:
        raise r.error(t, "min_pin_length", f"device.min_pin_length {min_len} is outside 4..63")
    always_uv = r.get(t, "always_uv", bool, False, what="true or false")
    floors_raw = r.get(t, "firmware_minimum", dict, {}, what='a table of "AAGUID" = "5.7.0"')
    floors: dict[str, Version] = {}
    for key, value in floors_raw.items():
        try:
            aaguid = _aaguid(key)
        except ValueError as e:
            raise PolicyLoadError(
                r.path,
                r.lines.line("device.firmware_minimum", key),
                f"device.firmware_minimum.{key}",
                str(e),
            ) from None
        if not isinstance(value, str):
            raise PolicyLoadError(
                r.path,
                r.lines.line("device.firmware_minimum", key),
                f"device.firmware_minimum.{key}",
                'the floor must be a version string such as "5.7.0"',
            )
        try:
            floors[aaguid] = Version.parse(value)
        except ValueError as e:
            raise PolicyLoadError(
                r.path,
                r.lines.line("device.firmware_minimum", key),
                f"device.firmware_minimum.{key}",
                str(e),
            ) from None
    if (pin_required is False) and (min_len is not None or always_uv):
        raise r.error(t, "pin_required", "min_pin_length and always_uv need pin_required = true")
    return DeviceRules(pin_required, min_len, always_uv, floors)


#: Upper bounds of the policy's integers (docs/security-model.md, "Limits"): generous for any
#: real deployment, small enough that no date or counter arithmetic overflows.
MAX_COUNT = 1_000_000
MAX_SECONDS = 30 * 86400
MAX_COUNTER_JUMP = 2**32 - 1


def _positive(r: _Reader, table: str, key: str, default: int, maximum: int = MAX_COUNT) -> int:
    value = r.get(table, key, int, default, what="a positive integer")
    if not 1 <= value <= maximum:
        raise r.error(table, key, f"{table}.{key} must be an integer from 1 to {maximum}")
    return int(value)
