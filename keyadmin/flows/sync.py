"""Sync: write the registry's approved credentials into the application's credential table.

One run, in this order (docs/sync.md):

1. Registry read: the target's watermark ``last_seq`` and the audit head ``upto``; the
   credentials whose ``change_seq`` lies in ``(last_seq, upto]``. The first run, and
   ``full=True``, take every credential.
2. Application transaction (one, committed at the end or not at all):
   the census first (the row count against the last run's count plus the rows added after
   the ``created_at`` mark; a mismatch turns the run into a full one), then the table's rows
   for those credentials, plus the rows the application used or added since the last run
   (``last_used_at``/``created_at`` marks, with a safety margin) - a full run reads every row.
   Then: insert new active credentials, update changed ones (a counter is only ever raised),
   delete or disable (per the mapping) revoked/suspended/quarantined ones, report rows
   keyadmin never approved (drift) and delete them only with ``prune``. Every row read of an
   active credential is checked for tampering (``keyadmin.flows.tamper``): a substituted key
   or user is written back, a counter is pulled back only within the jump threshold.
3. Registry transaction: counters the application advanced are pulled back (compare-and-set,
   logged, ``change_seq`` set), tampering is logged (``sync.tamper``), the watermark and
   marks are saved.

The application commits before the registry records the watermark: a run killed between the
two leaves the application's table complete and the next run re-examines the same changes,
finds them applied, and writes nothing. ``dry_run`` rolls the application transaction back and
saves nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from keyadmin.flows.tamper import REPAIRED, Tamper, inspect_row, shown
from keyadmin.store import sync_state as st
from keyadmin.store.appmapping import DERIVED_PREFIX, Mapping
from keyadmin.store.appstore import AppRow, AppStore, Values, display_id

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlmodel import Session

#: The operator's authority recorded with a run's audit entries (JSON).
Authority = dict[str, object]

#: Rows the application used this close to the previous mark are read again next run
#: (a sign-in whose transaction committed after the mark was taken is not missed). Rows it
#: added are found from the exact created_at mark; ``full=True`` and the audit read them all.
MARK_MARGIN = timedelta(seconds=10)
LIST_LIMIT = 200
#: Drift rows remembered between runs (re-checked each run, so prune finds them).
DRIFT_MEMORY = 10_000


@dataclass(frozen=True)
class DriftRow:
    """A row in the application's table that keyadmin never approved."""

    credential_id: str  # hex
    user_id: str
    sign_count: int | None  # None: the stored value is not a counter (``stored_count``)
    pruned: bool
    stored_count: str = ""


@dataclass(frozen=True)
class UnknownUser:
    """An approved credential whose keyadmin user has no user in the application."""

    credential_id: str  # hex
    user: str  # keyadmin's user name
    reason: str


@dataclass(frozen=True)
class SyncResult:
    target: str
    table: str
    dry_run: bool
    full: bool
    examined: int  # registry credentials changed since the last run
    app_rows_read: int
    inserted: int
    updated: int
    removed: int  # deleted (mapping: inactive.action = delete)
    disabled: int  # disabled (mapping: inactive.action = disable)
    counters_pulled: int  # application counters copied back into the registry
    drift_count: int
    drift: tuple[DriftRow, ...]  # the first LIST_LIMIT
    repaired: int  # tampered rows rewritten with the registry's values
    tampering_count: int
    tampering: tuple[Tamper, ...]  # the first LIST_LIMIT
    pruned: int
    app_writes: int
    last_seq_before: int
    last_seq_after: int
    seconds: float
    notes: tuple[str, ...] = field(default_factory=tuple)
    # active credentials whose user the application does not have (mapping user_lookup):
    # nothing written for them; re-checked by every run until the user is there
    unknown_users_count: int = 0
    unknown_users: tuple[UnknownUser, ...] = ()
    user_handles_written: int = 0


def target_label(target_url: str, mapping: Mapping) -> str:
    from keyadmin.store.appstore import redact

    return f"{redact(target_url)}#{mapping.describe()}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _mark(details: dict[str, object], key: str, margin: timedelta) -> datetime | None:
    raw = details.get(key)
    return datetime.fromisoformat(raw) - margin if isinstance(raw, str) else None


def _strings(details: dict[str, object], key: str) -> list[str]:
    """The strings of a list kept in the saved state (anything else is ignored)."""
    found = details.get(key)
    return [h for h in found if isinstance(h, str)] if isinstance(found, list) else []


class _Run:
    """One run's plan against the application's table: the rows it writes (new rows are
    written in batches as they are planned, so a first sync never holds every row) and what
    it found (drift, tampering, users the application lacks, counters to pull back)."""

    def __init__(
        self,
        store: AppStore,
        conn: Connection,
        *,
        synced_seq: int,
        jump: int,
        dry_run: bool,
    ) -> None:
        self.store = store
        self.conn = conn
        self.synced_seq = synced_seq
        self.jump = jump
        self.dry_run = dry_run
        self.inserts: list[Values] = []  # planned, not yet written
        self.planned_inserts = 0
        self.inserted_rows = 0
        self.handles_written = 0
        self.updates: list[tuple[bytes, Values]] = []
        self.deletes: list[bytes] = []
        self.disables = 0
        self.repairs = 0
        self.pulls: list[st.CounterPull] = []
        self.drift: list[AppRow] = []
        self.tampered: list[Tamper] = []
        self.unknown: list[UnknownUser] = []

    def judge(self, c: st.RegistryCredential, row: AppRow | None) -> None:
        """Plan what the application's row of ``c`` needs (``row`` None: it has none).

        Users of active credentials must have been looked up (``store.resolve_users``)."""
        store = self.store
        if c.status == st.ACTIVE:
            problem = store.user_problem(c)
            if problem is not None:  # reported; nothing written for it
                self.unknown.append(UnknownUser(c.credential_id.hex(), c.user_name, problem))
                return
            want = store.desired(c)
            if row is None:
                self.planned_inserts += 1
                if not self.dry_run:
                    self.inserts.append(want)
                return
            found = inspect_row(
                store, want, c, row, synced=0 <= c.change_seq <= self.synced_seq, jump=self.jump
            )
            kinds = {kind for kind, _ in found}
            diff = _differences(store, want, row)
            count = row.sign_count
            if count is not None and c.sign_count > count:
                diff["sign_count"] = c.sign_count
            if row.disabled:
                diff["disabled"] = False
            if diff:
                self.updates.append((c.credential_id, diff))
                self.repairs += bool(kinds & REPAIRED)
            if count is not None and count > c.sign_count and not kinds:
                self.pulls.append(
                    st.CounterPull(c.id, c.credential_id, c.sign_count, count, row.last_used_at)
                )
            self.tampered.extend(
                Tamper(
                    display_id(c.credential_id),
                    kind,
                    detail,
                    repaired=kind in REPAIRED and not self.dry_run,
                )
                for kind, detail in found
            )
            return
        if row is None:
            return
        if store.mapping.on_inactive == "delete":
            self.deletes.append(c.credential_id)
        elif not row.disabled:
            self.updates.append((c.credential_id, {"disabled": True}))
            self.disables += 1

    def write_inserts(self, *, at_least: int = 1) -> None:
        """Write the planned new rows once ``at_least`` are waiting (users' handles first)."""
        if self.dry_run or len(self.inserts) < at_least:
            return
        self.handles_written += self.store.write_user_handles(self.conn)
        self.inserted_rows += self.store.insert(self.conn, self.inserts)
        self.inserts.clear()


def sync(
    *,
    registry_url: str,
    target_url: str,
    mapping: Mapping,
    actor: str,
    dry_run: bool = False,
    prune: bool = False,
    create_table: bool = False,
    full: bool = False,
    counter_jump_threshold: int | None = None,
    now: datetime | None = None,
    authority: Authority | None = None,
) -> SyncResult:
    """Bring the application's table in line with the registry; see the module docstring.

    ``counter_jump_threshold``: the policy's ``step_up.counter_jump_threshold`` (None: the
    documented default); an application counter further above the registry's is tampering."""
    from keyadmin.flows.tamper import jump_threshold
    from keyadmin.store import audit
    from keyadmin.store.db import transaction

    started = time.perf_counter()
    now = now or datetime.now(UTC)
    label = target_label(target_url, mapping)
    key = st.target_key(label)
    notes: list[str] = []
    jump = jump_threshold(None) if counter_jump_threshold is None else counter_jump_threshold

    # 1. what changed in the registry (a full run reads every credential later, in batches)
    with transaction(registry_url) as s:
        state = st.load_state(s, key)
        upto = st.head_seq(s)
        full_run = full or state is None or prune
        synced_seq = state.last_seq if state is not None else -1  # written by an earlier run
        since = 0 if full_run or state is None else state.last_seq
        details: dict[str, object] = dict(state.details) if state is not None else {}
        changed: list[st.RegistryCredential] = []
        if not full_run:
            changed = st.changed_since(s, since, upto)
            changed += _remembered_unknown(s, details, changed)

    # 2. the application's table, in one transaction
    store = AppStore(target_url, mapping)
    try:
        with store.transaction(create=create_table, commit=not dry_run) as conn:
            rows_at_start, added = store.census(
                conn, _mark(details, "app_created_mark", timedelta(0))
            )
            if not full_run and _census_fails(details, rows_at_start, added, notes):
                full_run = True  # rows went or came where the marks cannot see: compare all
            run = _Run(store, conn, synced_seq=synced_seq, jump=jump, dry_run=dry_run)
            if full_run:
                notes.insert(
                    0, "full run: every registry credential and every application row compared"
                )
                examined, rows_read = _compare_all(registry_url, run, details, upto)
            else:
                examined = len(changed)
                rows_read = _compare_changes(registry_url, run, details, changed)
            if prune:
                run.deletes.extend(r.credential_id for r in run.drift)

            writes = 0
            updated_rows, deleted_rows = len(run.updates), len(run.deletes)  # planned (dry run)
            if not dry_run:
                run.write_inserts()
                run.handles_written += store.write_user_handles(conn)
                updated_rows = store.update(conn, run.updates)
                deleted_rows = store.delete(conn, run.deletes)
                writes = run.handles_written + run.inserted_rows + updated_rows + deleted_rows
                missed = len(run.updates) - updated_rows + len(run.deletes) - deleted_rows
                if missed:
                    notes.append(
                        f"{missed} row(s) to change or remove were not there under keyadmin's "
                        "spelling of their credential id; rows spelt otherwise are drift "
                        "(keyadmin sync --full lists them)"
                    )
            used_mark, created_mark = store.marks(conn)
            # The count the next census compares with: the rows this run saw at its start
            # plus what it inserted, minus what it removed. Not a count taken now: a row the
            # application deleted (or back-dated) while this run went on must still show.
            app_count = rows_at_start + run.inserted_rows - deleted_rows
    finally:
        store.close()

    drift, tampered, unknown = run.drift, run.tampered, run.unknown
    disables, repairs, handles_written = run.disables, run.repairs, run.handles_written
    # 3. counters pulled back, watermark saved (registry)
    pulled = 0
    if not dry_run:
        with transaction(registry_url) as s:
            pulled = st.pull_counters(
                s, run.pulls, actor=actor, target_label=label, authority=authority
            )
            new_details = {
                **details,
                "app_used_mark": _iso(used_mark),
                "app_created_mark": _iso(created_mark),
                "app_rows": app_count,
                "table": mapping.describe(),
                "drift": [] if prune else [r.credential_id.hex() for r in drift[:DRIFT_MEMORY]],
                # rows left tampered (a counter keyadmin does not lower): re-checked each run
                "tampered": sorted({t.credential_id for t in tampered if not t.repaired})[
                    :DRIFT_MEMORY
                ],
                "unknown_users": [u.credential_id for u in unknown[:DRIFT_MEMORY]],
            }
            if tampered:
                audit.append(
                    s,
                    actor=actor,
                    action="sync.tamper",
                    subject=label,
                    details={
                        **({"authority": authority} if authority is not None else {}),
                        "count": len(tampered),
                        "tampering": [
                            {
                                "credential": t.credential_id,
                                "kind": t.kind,
                                "detail": t.detail,
                                "repaired": t.repaired,
                            }
                            for t in tampered[:1000]
                        ],
                    },
                )
            if writes or pulled or (prune and drift):
                audit.append(
                    s,
                    actor=actor,
                    action="sync.run",
                    subject=label,
                    details={
                        **({"authority": authority} if authority is not None else {}),
                        "inserted": run.planned_inserts,
                        "updated": max(0, updated_rows - disables),
                        "removed": max(0, deleted_rows - (len(drift) if prune else 0)),
                        "disabled": disables,
                        "pruned": len(drift) if prune else 0,
                        "pruned_credentials": [display_id(r.credential_id) for r in drift][:1000]
                        if prune
                        else [],
                        "counters_pulled": pulled,
                        "repaired": repairs,
                        "drift": len(drift),
                        "unknown_users": len(unknown),
                        "user_handles_written": handles_written,
                        "upto_seq": upto,
                    },
                )
            st.save_state(s, target=key, label=label, last_seq=upto, details=new_details, at=now)
    else:
        pulled = len(run.pulls)
        notes.append("dry run: nothing was written to either database")
    if tampered:
        notes.append(
            f"{len(tampered)} tampering finding(s) in the application's table"
            + ("" if dry_run else "; logged as sync.tamper")
        )

    if unknown:
        notes.append(
            f"{len(unknown)} approved credential(s) of user(s) the application does not have: "
            "nothing written for them (see unknown_users); checked again by every run"
        )
    pruned = len(drift) if prune else 0
    return SyncResult(
        target=label,
        table=mapping.describe(),
        dry_run=dry_run,
        full=full_run,
        examined=examined,
        app_rows_read=rows_read,
        inserted=run.planned_inserts,
        updated=max(0, updated_rows - disables - repairs),
        removed=max(0, deleted_rows - pruned),
        disabled=disables,
        counters_pulled=pulled,
        drift_count=len(drift),
        drift=tuple(
            DriftRow(
                display_id(r.credential_id),
                shown(r.values.get("user_id"), 400),
                r.sign_count,
                prune,
                "" if r.sign_count is not None else shown(r.values.get("sign_count")),
            )
            for r in drift[:LIST_LIMIT]
        ),
        repaired=repairs,
        tampering_count=len(tampered),
        tampering=tuple(tampered[:LIST_LIMIT]),
        pruned=pruned,
        app_writes=writes,
        last_seq_before=since,
        last_seq_after=upto if not dry_run else since,
        seconds=round(time.perf_counter() - started, 3),
        notes=tuple(notes),
        unknown_users_count=len(unknown),
        unknown_users=tuple(unknown[:LIST_LIMIT]),
        user_handles_written=handles_written,
    )


def _compare_changes(
    registry_url: str, run: _Run, details: dict[str, object], changed: list[st.RegistryCredential]
) -> int:
    """An incremental run: the changed credentials against their rows, then the rows the
    application used or added since the marks (and drift/tampering remembered from earlier
    runs) against their credentials. Returns the number of application rows read."""
    from keyadmin.progress import report
    from keyadmin.store.db import transaction

    store, conn = run.store, run.conn
    changed_ids = {c.credential_id for c in changed}
    app_rows = store.rows_for(conn, list(changed_ids))
    touched = [
        r
        for r in store.rows_touched_since(
            conn,
            _mark(details, "app_used_mark", MARK_MARGIN),
            _mark(details, "app_created_mark", timedelta(0)),
        )
        if r.credential_id not in changed_ids
    ]
    # drift found by earlier runs stays reported (and prunable) until it is gone
    seen = changed_ids | {r.credential_id for r in touched}
    remembered = [
        bytes.fromhex(h) for h in [*_strings(details, "drift"), *_strings(details, "tampered")]
    ]
    touched += store.rows_for(conn, [c for c in remembered if c not in seen]).values()

    known: dict[bytes, st.RegistryCredential] = {}
    if touched:
        with transaction(registry_url) as s:
            known = st.by_credential_ids(s, [r.credential_id for r in touched])
    store.resolve_users(conn, [c for c in [*changed, *known.values()] if c.status == st.ACTIVE])
    for n, c in enumerate(changed, 1):
        report("sync: comparing credentials", n, len(changed))
        run.judge(c, app_rows.get(c.credential_id))
    for row in touched:
        rec = known.get(row.credential_id)
        if rec is None:
            run.drift.append(row)
        else:  # status, counter and content are checked by judge
            run.judge(rec, row)
    return len(app_rows) + len(touched)


def _compare_all(
    registry_url: str, run: _Run, details: dict[str, object], upto: int
) -> tuple[int, int]:
    """A full run, streamed: every application row (in batches, each looked up in the
    registry) is judged against its credential or is drift; then every registry credential
    up to ``upto`` (in batches by id) that has no row is judged, and its new row written
    batch by batch. Memory holds the set of credential ids the table has, not the rows.
    Returns (registry credentials examined, application rows read)."""
    from keyadmin.progress import report
    from keyadmin.store.db import transaction

    store, conn = run.store, run.conn
    seen: set[bytes] = set()
    rows_read = 0
    for rows in store.row_batches(conn, st.BATCH):
        rows_read += len(rows)
        report("sync: reading the application's table", rows_read)
        with transaction(registry_url) as s:
            known = st.by_credential_ids(s, [r.credential_id for r in rows])
        store.resolve_users(conn, [c for c in known.values() if c.status == st.ACTIVE])
        for row in rows:
            seen.add(row.credential_id)
            rec = known.get(row.credential_id)
            if rec is None:
                run.drift.append(row)
            else:
                run.judge(rec, row)
    examined = 0
    for batch in st.iter_all(registry_url, upto):
        examined += len(batch)
        report("sync: comparing credentials", examined)
        fresh = [c for c in batch if c.credential_id not in seen]
        store.resolve_users(conn, [c for c in fresh if c.status == st.ACTIVE])
        for c in fresh:
            run.judge(c, None)
        run.write_inserts(at_least=st.BATCH)
    # credentials an earlier run could not write for want of the application's user and
    # changed since ``upto`` (those up to ``upto`` were judged above)
    with transaction(registry_url) as s:
        later = [
            c
            for c in _remembered_unknown(s, details, [])
            if c.change_seq > upto and c.credential_id not in seen
        ]
    store.resolve_users(conn, [c for c in later if c.status == st.ACTIVE])
    for c in later:
        run.judge(c, None)
    run.write_inserts()
    return examined + len(later), rows_read


def _remembered_unknown(
    session: Session, details: dict[str, object], changed: list[st.RegistryCredential]
) -> list[st.RegistryCredential]:
    """Credentials an earlier run could not write for want of the application's user, and
    not among ``changed``: looked up again (the user may be there now)."""
    have = {c.credential_id for c in changed}
    ids = [raw for raw in map(bytes.fromhex, _strings(details, "unknown_users")) if raw not in have]
    return list(st.by_credential_ids(session, ids).values()) if ids else []


def _census_fails(details: dict[str, object], rows: int, added: int, notes: list[str]) -> bool:
    """Does the table's row count disagree with the last run's count plus the rows added
    after the created_at mark? Then rows were deleted behind keyadmin's back, or added with
    an old (or no) created_at, or committed late by a transaction that began before the last
    run read its marks: an incremental run would miss them, so the caller compares all.
    (A deletion and a back-dated insertion in the same interval cancel out: ``--full``.)"""
    previous = details.get("app_rows")
    if not isinstance(previous, int):  # a state saved before the census existed
        return False
    if rows == previous + added:
        return False
    notes.append(
        f"the application's table has {rows} rows where {previous + added} were expected "
        f"({previous} after the last run, {added} added since): rows were deleted or added "
        "where the marks cannot see them, so every row is compared"
    )
    return True


_COMPARED = ("user_id", "public_key", "transports", "device_type", "backed_up")


def _differences(store: AppStore, want: Values, row: AppRow) -> Values:
    """Fields whose application value differs from the registry's (counters apart)."""
    diff: Values = {}
    for f in (*_COMPARED, *(k for k in want if k.startswith(DERIVED_PREFIX))):
        if f in want and store.normalise(f, want[f]) != row.values.get(f):
            diff[f] = want[f]
    mine = want.get("last_used_at")
    if isinstance(mine, datetime) and (row.last_used_at is None or mine > row.last_used_at):
        diff["last_used_at"] = mine
    return diff
