"""Audit: re-evaluate every live credential against today's policy and metadata.

What is checked (docs/audit.md):

* estate: metadata missing, stale (past nextUpdate + the policy's grace) or unsigned when the
  policy demands signatures;
* each active or suspended credential: the policy's full rule list
  (``keyadmin.policy.evaluate_registration``) on its stored attestation object and client data,
  at the audit time, with the current metadata: new status reports, a model dropped from the
  allowlist or put on the deny list, a chain that has expired or no longer leads to a trusted
  root, a format, algorithm or flag the policy no longer accepts;
* the policy's firmware floors against the firmware recorded at enrolment;
* users below ``keys_per_user.minimum`` active keys;
* with a target: drift between the registry and the application's table.

Cost: the expensive part (certificate path validation, metadata lookups, the rules) runs once
per *evidence group*: credentials whose registrations agree on everything a rule reads except
the statement's signature - format, AAGUID, certificate chain (x5c), rpIdHash, flags, COSE
algorithm, extensions, the client data's type/origin/crossOrigin/topOrigin and whether its
challenge parses (its value differs per registration and no rule reads it). Grouping needs only a
CBOR decode and a hash per credential. The group's first credential is verified in full
(signature included); every member's signature was verified at enrolment over bytes that are
immutable in the registry. ``deep=True`` re-verifies every credential on its own (slow).
"""

from __future__ import annotations

import gc
import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from keyadmin.attestation import authdata
from keyadmin.errors import PolicyRefused

if TYPE_CHECKING:
    from keyadmin.policy.metadata import MetadataSource
    from keyadmin.policy.model import Policy
    from keyadmin.store.appmapping import Mapping
    from keyadmin.store.appstore import AppRow, AppStore
    from keyadmin.store.estate import AuditRow
    from keyadmin.store.sync_state import RegistryCredential

#: Rules about the metadata snapshot as a whole: reported once for the estate, not per key.
ESTATE_RULES = frozenset({"metadata.fresh", "metadata.signed"})
LIVE = ("active", "suspended")


class AuditFailed(PolicyRefused):
    """The audit found credentials, users or stores that fail the current policy (exit 3)."""


@dataclass(frozen=True)
class Finding:
    kind: str  # "estate", "credential", "user", "drift", "tamper"
    subject: str  # credential id (hex), user name, or what the estate finding is about
    rule: str
    detail: str
    severity: str = "fail"  # "fail" or "warn"
    registry_id: int | None = None
    user: str | None = None
    aaguid: str | None = None


@dataclass(frozen=True)
class AuditResult:
    at: str
    policy: str
    policy_sha256: str
    metadata: dict[str, Any] | None
    credentials_checked: int
    evidence_groups: int
    failed_credentials: int
    findings: tuple[Finding, ...]
    quarantined: tuple[str, ...]
    enforce: bool
    target: str | None
    seconds: float
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not any(f.severity == "fail" for f in self.findings)


# -- evidence groups -----------------------------------------------------------------------------


def _decoders() -> tuple[Callable[[bytes], Any], Callable[[bytes], tuple[Any, bytes]]]:
    """(decode, decode_first) - cbor2's C decoder when installed, else python-fido2's."""
    try:
        import cbor2
    except ImportError:  # pragma: no cover - cbor2 is normally present
        from fido2 import cbor

        return cbor.decode, cbor.decode_from

    def first(data: bytes) -> tuple[Any, bytes]:
        fp = io.BytesIO(data)
        value = cbor2.CBORDecoder(fp).decode()
        return value, data[fp.tell() :]

    return cbor2.loads, first


def group_key(
    att_obj: bytes,
    client_data: bytes,
    decode: Callable[[bytes], Any],
    decode_first: Callable[[bytes], tuple[Any, bytes]],
) -> tuple[Any, ...] | None:
    """Everything the policy's rules read except the signature, as a tuple.

    None when the registration does not parse (it is then evaluated on its own). The tuple
    is not hashable when the evidence holds a map where a scalar belongs; the caller then
    evaluates it on its own too (its dictionary lookup hashes the key once, not twice).
    """
    try:
        obj = decode(att_obj)
        stmt = obj["attStmt"]
        ad = obj["authData"]
        if not isinstance(ad, bytes):
            ad = bytes(ad)
        if len(stmt) == 3 and "x5c" in stmt and "alg" in stmt and "sig" in stmt:
            stmt_key: tuple[Any, ...] = (stmt["alg"], tuple(stmt["x5c"]))  # packed, fido-u2f
        else:
            stmt_key = tuple(
                sorted(
                    (
                        (str(k), tuple(v) if isinstance(v, list) else v)
                        for k, v in stmt.items()
                        if k != "sig"
                    ),
                    key=lambda kv: kv[0],
                )
            )
        parsed = authdata.parse(ad, attested=True, decode_item=authdata.canonical_item)
        att = parsed.attested
        assert att is not None  # attested=True
        cose = att.public_key
        cred = (att.aaguid_raw, cose.get(1), cose.get(3), cose.get(-1), parsed.extensions_cbor)
        key = (obj["fmt"], ad[:33], stmt_key, cred, _client_data_key(client_data))
    except Exception:  # noqa: BLE001 - an unparsable registration is evaluated on its own
        return None
    return key


_CHALLENGE = b'"challenge":"'
_B64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _challenge_parses(value: bytes) -> bool:
    """What the parser accepts as a challenge: base64url, optional trailing '=' padding."""
    stripped = value.rstrip(b"=")
    return len(stripped) % 4 != 1 and not stripped.translate(None, _B64URL)


def _client_data_key(client_data: bytes) -> Any:
    """The client data minus the (per-registration) challenge value, which no rule reads, and
    whether that value parses (a challenge that is not base64url makes the registration
    malformed, so it must not share a group with one whose challenge is well formed).

    Equal remaining bytes mean equal type/origin/crossOrigin/topOrigin; anything unusual falls
    back to the parsed fields.
    """
    i = client_data.find(_CHALLENGE)
    if i >= 0:
        j = client_data.find(b'"', i + len(_CHALLENGE))
        value = client_data[i + len(_CHALLENGE) : j]
        if j > 0 and b"\\" not in value and client_data.count(_CHALLENGE) == 1:
            return client_data[:i] + client_data[j:], _challenge_parses(value)
    cd = json.loads(client_data)
    challenge = cd.get("challenge")
    return (
        "parsed",
        cd.get("type"),
        cd.get("origin"),
        cd.get("crossOrigin"),
        cd.get("topOrigin"),
        tuple(sorted(k for k in cd if k != "challenge")),
        isinstance(challenge, str)
        and challenge.isascii()
        and _challenge_parses(challenge.encode()),
    )


@dataclass
class _Group:
    rep_att: bytes
    rep_cd: bytes
    members: list[int] = field(default_factory=list)  # registry ids


#: From this many registry ids up (and with more than one CPU), the scan is split by id range
#: across forked processes, one per CPU and at most ``MAX_SCAN_WORKERS``: grouping is CPU work
#: (a CBOR decode and a strict authenticator-data parse per credential).
PARALLEL_FROM = 20_000
MAX_SCAN_WORKERS = 4


def _scan(
    registry_url: str,
    deep: bool,
    groups: dict[Any, _Group],
    decode: Callable[[bytes], Any],
    decode_first: Callable[[bytes], tuple[Any, bytes]],
) -> None:
    """Stream the live credentials into evidence groups.

    One read-only snapshot (on SQLite it holds no writer lock: step-ups and enrolments go on
    meanwhile). A large registry is read in id ranges by forked processes, each in a snapshot
    of its own, every id in exactly one range; their groups are merged in range order. A
    process that fails leaves the whole scan to this one."""
    from keyadmin.store import estate
    from keyadmin.store.db import reading

    with reading(registry_url) as reader:
        bounds = estate.id_bounds(reader)
    if bounds is None:
        return
    workers = 1 if deep else _scan_workers(bounds)
    parts = _scan_in_processes(registry_url, bounds, workers) if workers > 1 else None
    if parts is None:  # one process, or a process failed: read it all here (errors raised here)
        _scan_serial(registry_url, deep, groups, decode, decode_first)
        return
    for part in parts:
        for key, g in part.items():
            have = groups.get(key)
            if have is None:
                groups[key] = g
            else:
                have.members.extend(g.members)


def _group_rows(
    rows: Iterator[AuditRow],
    deep: bool,
    groups: dict[Any, _Group],
    decode: Callable[[bytes], Any],
    decode_first: Callable[[bytes], tuple[Any, bytes]],
) -> None:
    from keyadmin.progress import report

    for n, (rid, att, cd) in enumerate(rows, 1):
        report("audit: reading credentials", n)
        key = None if deep else group_key(att, cd, decode, decode_first)
        try:
            g = groups.get(key) if key is not None else None
        except TypeError:  # an unhashable value in the evidence: judged on its own
            key = None
        if key is None:
            key = ("single", rid)
            g = None
        if g is None:
            g = groups[key] = _Group(att, cd)
        g.members.append(rid)


def _scan_serial(
    registry_url: str,
    deep: bool,
    groups: dict[Any, _Group],
    decode: Callable[[bytes], Any],
    decode_first: Callable[[bytes], tuple[Any, bytes]],
) -> None:
    from keyadmin.store import estate
    from keyadmin.store.db import reading

    groups.clear()
    with reading(registry_url) as reader:
        _group_rows(estate.iter_audit_rows(reader, LIVE), deep, groups, decode, decode_first)


def _scan_workers(bounds: tuple[int, int]) -> int:
    import os

    if bounds[1] - bounds[0] + 1 < PARALLEL_FROM:
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), MAX_SCAN_WORKERS))


def _scan_in_processes(
    registry_url: str, bounds: tuple[int, int], workers: int
) -> list[dict[Any, _Group]] | None:
    """Each id range's groups, in range order; None when a process failed or died."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from keyadmin.progress import report

    lo, hi = bounds
    step = -(-(hi - lo + 1) // workers)
    ranges = [(a, min(a + step - 1, hi)) for a in range(lo, hi + 1, step)]
    out: list[dict[Any, _Group]] = []
    try:
        with ProcessPoolExecutor(
            max_workers=len(ranges),
            mp_context=multiprocessing.get_context("fork"),
            initializer=_scan_process_init,
        ) as pool:
            done = 0
            for part in pool.map(_scan_range, [(registry_url, r) for r in ranges]):
                if part is None:
                    return None
                out.append(part)
                done += sum(len(g.members) for g in part.values())
                report("audit: reading credentials", done)
    except Exception:  # noqa: BLE001 - a process failed or died: the parent scans it all
        return None
    return out


def _scan_process_init() -> None:
    from keyadmin import progress
    from keyadmin.store.db import in_forked_child

    in_forked_child()
    progress.set_sink(None)  # the parent reports; children must not write to its terminal


def _scan_range(job: tuple[str, tuple[int, int]]) -> dict[Any, _Group] | None:
    """In a forked process: the groups of one id range (None if anything failed)."""
    from keyadmin.store import estate
    from keyadmin.store.db import reading

    url, ids = job
    groups: dict[Any, _Group] = {}
    decode, decode_first = _decoders()
    try:
        with reading(url) as reader:
            rows = estate.iter_audit_rows(reader, LIVE, ids)
            _group_rows(rows, False, groups, decode, decode_first)
    except Exception:  # noqa: BLE001 - the parent reads everything itself and reports it
        return None
    return groups


# -- the audit -----------------------------------------------------------------------------------


def audit(
    *,
    registry_url: str,
    policy: Policy,
    metadata: MetadataSource | None,
    actor: str,
    authority: dict[str, Any] | None = None,
    enforce: bool = False,
    target_url: str | None = None,
    mapping: Any = None,
    deep: bool = False,
    now: datetime | None = None,
) -> AuditResult:
    """Re-evaluate the estate; with ``enforce``, quarantine every credential that fails."""
    from keyadmin.policy.evaluate import MUST_PASS, decide, evaluate_registration
    from keyadmin.policy.lifecycle import in_grace
    from keyadmin.store import estate, registry
    from keyadmin.store.db import transaction

    started = time.perf_counter()
    now = now or datetime.now(UTC)
    findings: list[Finding] = []
    notes: list[str] = []

    # estate: the metadata snapshot
    snap = metadata.snapshot() if metadata is not None else None
    meta_info = None
    if snap is None:
        findings.append(
            Finding(
                "estate",
                "metadata",
                "metadata.missing",
                "no FIDO metadata is loaded; status reports cannot be checked "
                "(keyadmin mds update)",
                "fail" if policy.metadata.required else "warn",
            )
        )
    else:
        from keyadmin.mds.freshness import evaluate as freshness

        fr = freshness(snap, now, timedelta(days=policy.metadata.freshness_grace_days))
        meta_info = {
            "no": snap.no,
            "source": snap.source,
            "signed": snap.signed,
            "next_update": snap.next_update,
            "fresh": fr.fresh,
        }
        if not fr.fresh:
            findings.append(
                Finding(
                    "estate",
                    f"metadata no. {snap.no}",
                    "metadata.fresh",
                    f"stale since {fr.deadline} (nextUpdate {snap.next_update} + "
                    f"{policy.metadata.freshness_grace_days:g} days); run keyadmin mds update",
                    "fail" if policy.metadata.required else "warn",
                )
            )
        if policy.metadata.signed and not snap.signed:
            findings.append(
                Finding(
                    "estate",
                    f"metadata no. {snap.no}",
                    "metadata.signed",
                    f"metadata no. {snap.no} from {snap.source} is unsigned; the policy demands "
                    "a signature-verified BLOB",
                )
            )

    # credentials, grouped by evidence
    decode, decode_first = _decoders()
    groups: dict[Any, _Group] = {}
    gc_was_enabled = gc.isenabled()
    gc.disable()  # 100,000s of small acyclic tuples: the cycle collector would only add cost
    try:
        _scan(registry_url, deep, groups, decode, decode_first)
    finally:
        if gc_was_enabled:
            gc.enable()
    checked = sum(len(g.members) for g in groups.values())
    floors = dict(policy.device.firmware_minimum)
    with transaction(registry_url) as s:
        below = estate.users_below(s, policy.keys_per_user.minimum)
        firmware = estate.recorded_firmware(s, sorted(floors), LIVE) if floors else {}

    # per group: the rules, once; then what they mean for each member
    verdicts: dict[int, list[tuple[str, str, str]]] = {}  # id -> (rule, detail, severity)
    from keyadmin.progress import report

    for n, g in enumerate(groups.values(), 1):
        report("audit: evaluating evidence groups", n, len(groups))
        decision = evaluate_registration(policy, g.rep_att, g.rep_cd, at=now, metadata=metadata)
        fails = [r for r in decision.reasons if r.outcome == "fail" and r.rule not in ESTATE_RULES]
        if not fails:
            kept = tuple(r for r in decision.reasons if r.rule not in ESTATE_RULES)
            if not decide(kept, MUST_PASS):
                fails = [r for r in decision.reasons if r.rule in MUST_PASS and r.outcome != "pass"]
        for rid in g.members if fails else ():
            verdicts.setdefault(rid, []).extend((r.rule, r.detail, "fail") for r in fails)
        # a RETIRED model admitted until its sunset date: warn before the date arrives
        warns = [r for r in decision.reasons if in_grace(r.rule, r.outcome, r.detail)]
        for rid in g.members if warns else ():
            verdicts.setdefault(rid, []).extend((r.rule, r.detail, "warn") for r in warns)

    # firmware floors against what enrolment recorded
    for rid, (aaguid, fw) in firmware.items():
        floor = floors.get(aaguid)
        verdict = _firmware_verdict(fw, floor) if floor is not None else None
        if verdict is not None:
            verdicts.setdefault(rid, []).append(("device.firmware", *verdict))

    failing: dict[int, list[Finding]] = {}
    if verdicts:
        with transaction(registry_url) as s:
            details = estate.credential_details(s, sorted(verdicts))
        for rid in sorted(verdicts):
            cid, user, aaguid = details[rid]
            for rule, detail, severity in verdicts[rid]:
                f = Finding("credential", cid.hex(), rule, detail, severity, rid, user, aaguid)
                findings.append(f)
                if severity == "fail":
                    failing.setdefault(rid, []).append(f)

    # users below the minimum
    for name, active in below:
        findings.append(
            Finding(
                "user",
                name,
                "keys_per_user.minimum",
                f"{active} active key(s); the policy requires at least "
                f"{policy.keys_per_user.minimum}",
                user=name,
            )
        )

    # drift with the application's store
    label = None
    if target_url is not None:
        from keyadmin.flows.tamper import jump_threshold

        label, drift = _drift(registry_url, target_url, mapping, jump_threshold(policy))
        findings.extend(drift)

    # enforcement
    quarantined: list[str] = []
    if enforce and failing:
        from keyadmin.errors import UsageError
        from keyadmin.store.registry import NotFound

        moved: list[int] = []
        with transaction(registry_url) as s:
            for rid, fs in sorted(failing.items()):
                first = fs[0]
                reason = f"audit: {first.rule}: {first.detail}"[:500]
                try:
                    changed = registry.change_status(
                        s, rid, "quarantine", reason=reason, actor=actor, authority=authority
                    )
                except (UsageError, NotFound):  # revoked or removed since it was judged
                    moved.append(rid)
                    continue
                quarantined.append(changed.credential_id)
        notes.append(f"quarantined {len(quarantined)} credential(s); see keyadmin log")
        if moved:
            notes.append(
                f"{len(moved)} failing credential(s) changed status during the audit and were "
                "left as they are now (e.g. revoked meanwhile)"
            )

    return AuditResult(
        at=now.isoformat(),
        policy=policy.name,
        policy_sha256=policy.sha256,
        metadata=meta_info,
        credentials_checked=checked,
        evidence_groups=len(groups),
        failed_credentials=len(failing),
        findings=tuple(findings),
        quarantined=tuple(quarantined),
        enforce=enforce,
        target=label,
        seconds=round(time.perf_counter() - started, 3),
        notes=tuple(notes),
    )


def _firmware_verdict(fw: str | None, floor: Any) -> tuple[str, str] | None:
    """(detail, severity) for a credential of a model with a firmware floor, None if it passes."""
    from keyadmin.policy.model import Version

    if fw is None:
        return (
            f"no firmware version was recorded at enrolment; the policy's floor is {floor} "
            "(check the key with keyadmin device info)",
            "warn",
        )
    try:
        have = Version.parse(fw)
    except ValueError:
        return f"recorded firmware {fw!r} is not a version; the floor is {floor}", "warn"
    if have.as_tuple() < floor.as_tuple():
        return f"firmware {have} recorded at enrolment is below the policy's floor {floor}", "fail"
    return None


def _drift(
    registry_url: str, target_url: str, mapping: Mapping, jump: int
) -> tuple[str, list[Finding]]:
    """Compare every application row with the registry (a full read of both, streamed in
    batches: application rows looked up in the registry, then registry credentials by id;
    memory holds the set of credential ids the table has): rows never approved, inactive
    credentials still usable, approved rows tampered with (keyadmin.flows.tamper), active
    credentials missing."""
    from keyadmin.flows.sync import target_label
    from keyadmin.store import sync_state as st
    from keyadmin.store.appstore import AppStore
    from keyadmin.store.db import transaction

    label = target_label(target_url, mapping)
    with transaction(registry_url) as s:
        upto = st.head_seq(s)
        state = st.load_state(s, st.target_key(label))
    synced_seq = state.last_seq if state is not None else -1
    store = AppStore(target_url, mapping)
    out: list[Finding] = []
    seen: set[bytes] = set()
    try:
        with store.transaction(commit=False) as conn:
            for rows in store.row_batches(conn, st.BATCH):
                with transaction(registry_url) as s:
                    known = st.by_credential_ids(s, [r.credential_id for r in rows])
                store.resolve_users(conn, [c for c in known.values() if c.status == st.ACTIVE])
                for row in rows:
                    seen.add(row.credential_id)
                    out.extend(
                        _row_findings(store, row, known.get(row.credential_id), synced_seq, jump)
                    )
            for batch in st.iter_all(registry_url, upto):
                missing = [
                    c for c in batch if c.status == st.ACTIVE and c.credential_id not in seen
                ]
                store.resolve_users(conn, missing)
                for rec in missing:
                    problem = store.user_problem(rec)
                    out.append(
                        Finding(
                            "drift",
                            rec.credential_id.hex(),
                            "sync.missing",
                            "active in the registry but not in the application's table "
                            + (
                                "(run keyadmin sync)"
                                if problem is None
                                else f"and cannot be: {problem}"
                            ),
                            "warn",
                        )
                    )
    finally:
        store.close()
    return label, out


def _row_findings(
    store: AppStore, row: AppRow, rec: RegistryCredential | None, synced_seq: int, jump: int
) -> list[Finding]:
    """What one application row says against its registry credential (None: it has none)."""
    from keyadmin.flows.tamper import inspect_row, shown
    from keyadmin.store.appstore import display_id

    subject = display_id(row.credential_id)
    if rec is None:
        bad = (
            ""
            if row.sign_count is not None
            else f"; its sign_count {shown(row.values.get('sign_count'))!r} is not a counter"
        )
        return [
            Finding(
                "drift",
                subject,
                "sync.unapproved",
                "in the application's table but never approved by keyadmin "
                f"(keyadmin sync --prune removes it){bad}",
            )
        ]
    if rec.status != "active":
        if row.disabled:
            return []
        return [
            Finding(
                "drift",
                subject,
                "sync.inactive-present",
                f"{rec.status} in the registry but usable in the application (run keyadmin sync)",
            )
        ]
    if store.user_problem(rec) is not None:
        return []
    synced = 0 <= rec.change_seq <= synced_seq
    return [
        Finding(
            "tamper",
            subject,
            f"sync.tampered.{kind}",
            f"the application's row: {detail} (keyadmin sync --full writes the registry's "
            "values back where it can)",
            registry_id=rec.id,
            user=rec.user_name,
        )
        for kind, detail in inspect_row(
            store, store.desired(rec), rec, row, synced=synced, jump=jump
        )
    ]
