"""Benchmark: keyadmin sync and audit at scale (plain runner, no pytest).

    python bench/bench_sync.py                    # 100,000 credentials, SQLite and PostgreSQL
    python bench/bench_sync.py --count 20000 --json
    python bench/bench_sync.py --no-postgres

Builds a SQLite registry of COUNT credentials with real packed attestations from four lab
models (tests/support/bulk.py; not timed), then times, in this process:

* the first sync into an empty application table (SQLite file; PostgreSQL on a private server
  from tests/support/postgres.py) - target < 10 s;
* a re-sync with no changes - target < 0.5 s;
* an audit of every credential against a lab policy - target < 3 s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGETS = {"first sync": 10.0, "no-change re-sync": 0.5, "audit": 3.0}


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL target")
    args = ap.parse_args()

    from keyadmin.flows.audit import audit
    from keyadmin.flows.sync import sync
    from keyadmin.policy.loader import load_policy
    from keyadmin.policy.metadata import IndexMetadata
    from keyadmin.store.appstore import load_mapping
    from keyadmin.store.mds_index import MdsIndex
    from tests.support.bulk import generate, lab_model, write_policy

    work = Path(tempfile.mkdtemp(prefix="keyadmin-bench-sync-"))
    results: list[dict[str, Any]] = []
    server = None
    try:
        reg = f"sqlite:///{work / 'registry.db'}"
        models = [lab_model(f"6b657961-646d-4e00-8000-00000000000{i}") for i in range(4)]
        gen_s, _ = _timed(lambda: generate(reg, args.count, models, users=args.count // 2))
        results.append(
            {
                "step": "generate registry (not a target)",
                "db": "sqlite",
                "seconds": round(gen_s, 3),
                "target": None,
            }
        )
        mapping = load_mapping(None)
        targets = [("sqlite", f"sqlite:///{work / 'app.db'}")]
        if not args.no_postgres:
            from tests.support.postgres import PrivatePostgres

            server = PrivatePostgres(Path(tempfile.mkdtemp(prefix="keyadmin-bench-pg-")))
            server.start()
            targets.append(("postgresql", server.create_database()))
        for name, url in targets:
            first_s, r1 = _timed(
                lambda url=url: sync(
                    registry_url=reg,
                    target_url=url,
                    mapping=mapping,
                    actor="bench",
                    create_table=True,
                )
            )
            assert r1.inserted == args.count, r1
            again_s, r2 = _timed(
                lambda url=url: sync(
                    registry_url=reg, target_url=url, mapping=mapping, actor="bench"
                )
            )
            assert r2.app_writes == 0, r2
            results.append(
                {
                    "step": "first sync",
                    "db": name,
                    "seconds": round(first_s, 3),
                    "target": TARGETS["first sync"],
                    "rows": r1.inserted,
                }
            )
            results.append(
                {
                    "step": "no-change re-sync",
                    "db": name,
                    "seconds": round(again_s, 3),
                    "target": TARGETS["no-change re-sync"],
                    "rows": r2.app_rows_read,
                }
            )
        policy = load_policy(write_policy(work, models))
        audit_s, ra = _timed(
            lambda: audit(
                registry_url=reg,
                policy=policy,
                metadata=IndexMetadata(MdsIndex(reg)),
                actor="bench",
            )
        )
        assert ra.credentials_checked == args.count and ra.failed_credentials == 0, ra.findings[:3]
        results.append(
            {
                "step": "audit",
                "db": "sqlite",
                "seconds": round(audit_s, 3),
                "target": TARGETS["audit"],
                "rows": ra.credentials_checked,
                "groups": ra.evidence_groups,
            }
        )
    finally:
        if server is not None:
            server.stop()
            shutil.rmtree(server.workdir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)

    for r in results:
        r["ok"] = None if r["target"] is None else r["seconds"] < r["target"]
    if args.json:
        print(json.dumps({"count": args.count, "results": results}, indent=2))
    else:
        print(f"keyadmin sync/audit bench, {args.count:,} credentials")
        print(f"{'step':<34} {'db':<11} {'seconds':>8} {'target':>7}  rows read  ok")
        for r in results:
            tgt = f"{r['target']:.1f}" if r["target"] is not None else "-"
            ok = "-" if r["ok"] is None else ("yes" if r["ok"] else "NO")
            print(
                f"{r['step']:<34} {r['db']:<11} {r['seconds']:>8.3f} {tgt:>7}  "
                f"{r.get('rows', '-'):>9}  {ok}"
            )
    return 0 if all(r["ok"] is not False for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
