"""``keyadmin log verify`` on a large log: the hash chain alone (what verify did before the
registry's state was bound to the log) next to the chain plus the state replay (what it
does now), in the same run, on the same SQLite registry.

Set-up (not timed): --credentials approved credentials from the bulk generator
(tests/support/bulk.py), then step-up rows (``stepup.ok``, each with its credential's state)
until the log holds --rows rows; every credential row ends matching its last logged state.
Target: chain + replay on 100,000 rows under 5 s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _fill(url: str, rows: int, credentials: int) -> None:
    import hashlib

    from sqlalchemy import text

    from keyadmin.store import audit, state
    from keyadmin.store.db import get_engine
    from tests.support.bulk import generate, lab_model

    models = [lab_model(f"6b657961-646d-4e00-8000-00000000000{i}") for i in range(4)]
    generate(url, credentials, models, users=max(1, credentials // 2))
    engine = get_engine(url)
    with engine.begin() as conn:
        creds = conn.execute(
            text(
                "SELECT k.id, k.credential_id, u.name, k.public_key, k.aaguid FROM ka_credential k "
                "JOIN ka_user u ON u.id = k.user_id ORDER BY k.id"
            )
        ).all()
        seq, prev = conn.execute(text("SELECT seq, hash FROM ka_audit_head")).one()
        counters = {c[0]: 0 for c in creds}
        last_seq: dict[int, int] = {}
        batch = []
        at = datetime.now(UTC) - timedelta(days=1)
        pk_hashes = {c[0]: hashlib.sha256(bytes(c[3])).hexdigest() for c in creds}
        for i in range(rows - int(seq)):
            rid, cid, user, _pk, aaguid = creds[i % len(creds)]
            counters[rid] += 1
            seq += 1
            at += timedelta(milliseconds=5)
            st = state.credential_state(
                credential_id=cid, user=user, public_key=b"", aaguid=aaguid, status="active",
                counter=counters[rid],
            )  # fmt: skip
            st["pk"] = pk_hashes[rid]
            details = audit._canonical(
                {
                    "challenge": f"c{i}",
                    "credential": bytes(cid).hex(),
                    "counter": counters[rid],
                    "user": user,
                    "rp_id": "example.com",
                    "state": st,
                }  # fmt: skip
            )
            at_text = audit.utc_text(at)
            digest = audit.row_hash_text(prev, seq, at_text, user, "stepup.ok", user, details)
            batch.append(
                {
                    "seq": seq,
                    "at": at_text.replace("T", " "),
                    "actor": user,
                    "action": "stepup.ok",
                    "subject": user,
                    "details": details,
                    "prev": prev,
                    "hash": digest,
                }  # fmt: skip
            )
            prev = digest
            last_seq[rid] = seq
        conn.execute(
            text(
                "INSERT INTO ka_audit (seq, at, actor, action, subject, details, prev_hash, hash) "
                "VALUES (:seq, :at, :actor, :action, :subject, :details, :prev, :hash)"
            ),
            batch,
        )
        conn.execute(text("UPDATE ka_audit_head SET seq = :s, hash = :h"), {"s": seq, "h": prev})
        conn.execute(
            text("UPDATE ka_credential SET sign_count = :c, change_seq = :s WHERE id = :id"),
            [{"c": counters[r], "s": last_seq[r], "id": r} for r in last_seq],
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--credentials", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from keyadmin.store import audit, state
    from keyadmin.store.db import transaction

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'registry.db'}"
        t0 = time.perf_counter()
        _fill(url, args.rows, args.credentials)
        print(f"set-up: {args.rows} log rows, {args.credentials} credentials "
              f"({time.perf_counter() - t0:.1f} s, not timed)")  # fmt: skip
        chain_times, full_times = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            with transaction(url) as s:
                r = audit.verify(s)
            chain_times.append(time.perf_counter() - t0)
            assert r.ok and r.rows_checked == args.rows, r
            t0 = time.perf_counter()
            with transaction(url) as s:
                rows: list = []
                r = audit.verify(s, rows=rows)
                rep = state.replay(s, rows)
            full_times.append(time.perf_counter() - t0)
            assert r.ok and rep.ok and rep.credentials_checked == args.credentials, rep.problems[:3]
        chain, full = min(chain_times), min(full_times)
        print(f"chain only (before):     {chain:6.2f} s  ({args.rows / chain:,.0f} rows/s)")
        print(f"chain + state replay:    {full:6.2f} s  ({args.rows / full:,.0f} rows/s)")
        print(f"replay cost: x{full / chain:.2f} of the chain check; target: < 5 s -> "
              f"{'met' if full < 5 else 'NOT met'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
