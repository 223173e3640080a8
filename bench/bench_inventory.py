"""Benchmark: keyadmin keys report and keyadmin advisories on a large estate (plain runner).

    python bench/bench_inventory.py                 # 100,000 keys and 100,000 credentials
    python bench/bench_inventory.py --count 20000 --json

Builds a SQLite registry (migrated by keyadmin) holding COUNT inventory keys and COUNT
credentials bound to them (not timed): most keys issued with an active credential, some lost
with one, some issued without one, some credentials on keys not in the inventory, a third at
firmware 5.4.3 under a YubiKey 5 NFC AAGUID (so the EUCLEAK advisory finds them). Then times,
in this process, the flows behind the commands:

* ``keys report`` with a policy (all four categories) - target < 3 s;
* ``advisories`` with policies/advisories.toml - target < 3 s;
* the comparison, in the same run: the per-key way (the queries behind ``keys show`` for each
  key: the key, then its credentials), timed on a sample and scaled to COUNT keys.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_S = 3.0
YUBIKEY_5_NFC = "2fc0579f-8113-47ea-b116-bb5a8db9202a"
SOFTKEY = "6b657961-646d-4e00-8000-736f66746b79"


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def _cpu_timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall and CPU seconds: on a shared, loaded machine the CPU time says more."""
    c = time.process_time()
    wall, out = _timed(fn)
    return wall, time.process_time() - c, out


def seed(url: str, count: int) -> None:
    """COUNT keys and COUNT credentials, written with executemany (not timed)."""
    from sqlalchemy import insert

    from keyadmin.store.db import get_engine
    from keyadmin.store.models import CredentialRow, KeyRow, UserRow

    engine = get_engine(url)
    now = datetime.now(UTC)
    users = max(1, count // 2)
    ut, kt, ct = (m.__table__ for m in (UserRow, KeyRow, CredentialRow))  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(
            insert(ut),
            [
                {"id": i + 1, "name": f"user{i:07d}", "display_name": None,
                 "user_handle": os.urandom(16), "created_at": now}
                for i in range(users)
            ],
        )  # fmt: skip
        keys, creds = [], []
        for i in range(count):
            serial = str(10_000_000 + i)
            uid = (i % users) + 1
            old = i % 3 == 0
            aaguid = YUBIKEY_5_NFC if old else SOFTKEY
            firmware = "5.4.3" if old else "5.7.1"
            state = "lost" if i % 50 == 1 else "issued"
            if i % 97 != 5:  # ~1 % of the credentials sit on keys not in the inventory
                keys.append(
                    {"serial": serial, "model": "YubiKey 5 NFC" if old else "softkey",
                     "aaguid": aaguid, "batch": f"PO-{i // 1000}", "location": "desk",
                     "state": state, "user_id": uid, "firmware": firmware,
                     "created_at": now, "updated_at": now, "change_seq": 0}
                )  # fmt: skip
            status = "revoked" if i % 41 == 2 else "active"  # issued keys without a credential
            creds.append(
                {"credential_id": os.urandom(32), "user_id": uid, "public_key": b"\xa0",
                 "sign_count": 0, "aaguid": aaguid, "transports": "[]",
                 "backup_eligible": False, "backed_up": False, "status": status,
                 "created_at": now, "updated_at": now, "operator": "bench",
                 "change_seq": 0, "key_serial": serial, "firmware": firmware}
            )  # fmt: skip
        conn.execute(insert(kt), keys)
        conn.execute(insert(ct), creds)


def per_key_way(url: str, sample: int) -> float:
    """Seconds for the per-key queries on ``sample`` keys (the key, then its credentials)."""
    from keyadmin.store.db import transaction
    from keyadmin.store.inventory import credentials_on, find_key

    serials = [str(10_000_000 + i) for i in range(sample)]
    t = time.perf_counter()
    with transaction(url) as s:
        for serial in serials:
            find_key(s, serial)
            credentials_on(s, serial)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--sample", type=int, default=2000, help="keys timed the per-key way")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args, _ = ap.parse_known_args()

    from keyadmin.flows.fleet import advisories_report, keys_report
    from keyadmin.policy.advisories import load_advisories
    from keyadmin.policy.loader import load_policy
    from keyadmin.policy.metadata import IndexMetadata
    from keyadmin.sim.authenticator import SoftKey
    from keyadmin.store.mds_index import MdsIndex

    work = Path(tempfile.mkdtemp(prefix="keyadmin-bench-inventory-"))
    try:
        url = f"sqlite:///{work / 'registry.db'}"
        seed_s, _ = _timed(lambda: seed(url, args.count))
        (work / "lab-root.pem").write_text(SoftKey.create(None).root_certificate_pem())
        text = (ROOT / "policies" / "lab-softkey.toml").read_text()
        (work / "policy.toml").write_text(text.replace("minimum = 1", "minimum = 2"))
        policy = load_policy(work / "policy.toml")
        advisories = load_advisories(ROOT / "policies" / "advisories.toml")
        keys_report(url, policy)  # warm-up: imports and the first connection, not timed
        report_s, report_cpu, report = _cpu_timed(lambda: keys_report(url, policy))
        adv_s, adv_cpu, adv = _cpu_timed(
            lambda: advisories_report(url, advisories, IndexMetadata(MdsIndex(url)))
        )
        sample = min(args.sample, args.count)
        per_key_wall, per_key_cpu, _ = _cpu_timed(lambda: per_key_way(url, sample))
        per_key_s = per_key_wall * args.count / sample
        per_key_cpu_s = per_key_cpu * args.count / sample
        results = {
            "load_average": round(os.getloadavg()[0], 1),
            "keys": report.keys,
            "credentials": report.credentials,
            "seed_seconds (not a target)": round(seed_s, 3),
            "keys report": {
                "seconds": round(report_s, 3),
                "cpu_seconds": round(report_cpu, 3),
                "target": TARGET_S,
                "findings": report.counts,
            },
            "advisories": {
                "seconds": round(adv_s, 3),
                "cpu_seconds": round(adv_cpu, 3),
                "target": TARGET_S,
                "findings": len(adv.findings),
            },
            "per-key way, scaled": {
                "seconds": round(per_key_s, 3),
                "cpu_seconds": round(per_key_cpu_s, 3),
                "sample": sample,
                "report speed-up": round(per_key_s / report_s, 1),
                "report speed-up (cpu)": round(per_key_cpu_s / report_cpu, 1),
            },
        }
        if args.json:
            print(json.dumps(results, indent=2))
        else:
            print(f"estate: {report.keys} keys, {report.credentials} credentials "
                  f"(seeded in {seed_s:.1f} s, not timed)")  # fmt: skip
            for name in ("keys report", "advisories"):
                r = results[name]
                ok = "ok" if r["seconds"] < TARGET_S else "OVER TARGET"
                print(f"  {name:<34} {r['seconds']:8.3f} s (cpu {r['cpu_seconds']:.3f} s)"
                      f"   target < {TARGET_S} s   {ok}")  # fmt: skip
            print(f"  {'per-key way (scaled from ' + str(sample) + ')':<34} {per_key_s:8.3f} s"
                  f" (cpu {per_key_cpu_s:.3f} s)   keys report is {per_key_s / report_s:.1f}x "
                  f"faster (cpu {per_key_cpu_s / report_cpu:.1f}x)")  # fmt: skip
            print(f"  load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpu(s)")
            print(f"  report findings: {report.counts}")
            print(f"  advisory findings: {len(adv.findings)}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
