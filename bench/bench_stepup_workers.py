"""Step-ups finished per second by N worker PROCESSES against one registry, each finishing
step-ups for its own credential: throughput, p50 and p99 latency per configuration, on
PostgreSQL (a private server with fsync ON) and on SQLite (synchronous=FULL), next to raw
ECDSA P-256 verifications per second in the same run.

    python bench/bench_stepup_workers.py [--finishes 3000] [--workers 1,2,4,8,16] [--no-pg]

Set-up (not timed): one user and credential per worker, the challenges and the signed
assertions (made the way a key makes them) written to a file per worker. The workers are
fresh processes; each warms up, waits for a common start time, then times every
``keyadmin.stepup.finish`` call. Beside each row: the workers' CPU per finish and, on
PostgreSQL, the server's CPU per finish and the share of busy backends found waiting on a
lock (sampled every 10 ms): on a machine with fewer cores than workers, throughput is
bounded by (cores / CPU per finish) whatever the log does. Targets (issue: the log must
not serialise step-ups): PostgreSQL at 16 workers at least the 2-worker throughput with p99
under 20 ms; SQLite p99 under 10 ms at 4 processes.

Two scenarios: ``distinct`` (each worker its own credential) and ``shared`` (all workers on
the same 4 credentials). A counting key's assertions racing each other is, by design, one
accepted and one counter violation (tests/integration/test_stepup_race.py), so the shared
credentials are ones that never count (counter 0 under ``counter = "allow-zero"``, as synced
passkeys send): every finish still compare-and-sets the same 4 credential rows.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

WARMUP = 20


SHARED = 4  # credentials every worker uses in the shared scenario


def _policy(tmp: Path, *, allow_zero: bool = False) -> Any:
    from bench_stepup import _policy as base

    policy = base(tmp)
    if not allow_zero:
        return policy
    from keyadmin.policy.loader import load_policy

    text = policy.path.read_text().replace('counter = "strict"', 'counter = "allow-zero"')
    (tmp / "policy-allow-zero.toml").write_text(text)
    return load_policy(tmp / "policy-allow-zero.toml")


def _register(db_url: str, policy: Any, user_name: str) -> tuple[Any, bytes]:
    from bench_stepup import SOFTKEY_AAGUID
    from cryptography.hazmat.primitives.asymmetric import ec
    from fido2 import cbor

    from keyadmin.store import registry
    from keyadmin.store.db import transaction

    key = ec.generate_private_key(ec.SECP256R1())
    nums = key.public_key().public_numbers()
    cose = cbor.encode(
        {1: 2, 3: -7, -1: 1, -2: nums.x.to_bytes(32, "big"), -3: nums.y.to_bytes(32, "big")}
    )
    cred_id = os.urandom(32)
    with transaction(db_url) as s:
        user = registry.get_or_create_user(s, user_name)
        pid = registry.record_policy(
            s, sha256=policy.sha256, name=policy.name, path=str(policy.path), content=""
        )
        registry.add_credential(
            s, user=user, credential_id=cred_id, public_key_cose=bytes(cose), sign_count=0,
            aaguid=SOFTKEY_AAGUID, transports=["usb"], backup_eligible=False, backed_up=False,
            nickname=None, evidence={}, decision={}, attestation_object=b"",
            client_data_json=b"", policy_version_id=pid, metadata_no=None,
            operator="bench", witness=None,
        )  # fmt: skip
    return key, cred_id


def _jobs(
    db_url: str, policy: Any, user: str, key: Any, cred_id: bytes, n: int, *, zero: bool = False
) -> list[Any]:
    from bench_stepup import ACTION
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from keyadmin.b64 import encode_url
    from keyadmin.stepup import begin
    from keyadmin.stepup.verify import Assertion

    rp_hash = hashlib.sha256(policy.relying_party.rp_id.encode()).digest()
    out = []
    for i in range(n):
        ch = begin(db_url, policy, user=user, action=ACTION)
        cd = json.dumps(
            {"type": "webauthn.get", "challenge": encode_url(ch.challenge), "origin": ch.origin}
        ).encode()
        ad = rp_hash + bytes([0x05]) + (0 if zero else i + 1).to_bytes(4, "big")
        sig = key.sign(ad + hashlib.sha256(cd).digest(), ec.ECDSA(hashes.SHA256()))
        out.append([ch.challenge_id, Assertion(cred_id, cd, ad, sig, None).to_json()])
    return out


def worker(job_file: Path) -> int:
    """One worker process: warm up, wait for the start time, time every finish."""
    from bench_stepup import ACTION

    from keyadmin.policy.loader import load_policy
    from keyadmin.stepup import finish

    spec = json.loads(job_file.read_text())
    policy = load_policy(Path(spec["policy"]))
    jobs = spec["jobs"]
    for cid, resp in jobs[:WARMUP]:
        finish(spec["db"], policy, challenge_id=cid, action=ACTION, response=resp)
    while time.time() < spec["start"]:
        time.sleep(0.001)
    lat = []
    cpu0 = time.process_time()
    t_start = time.time()
    for cid, resp in jobs[WARMUP:]:
        t = time.perf_counter()
        finish(spec["db"], policy, challenge_id=cid, action=ACTION, response=resp)
        lat.append(time.perf_counter() - t)
    t_end = time.time()
    cpu = time.process_time() - cpu0
    job_file.with_suffix(".out").write_text(json.dumps({"lat": lat, "start": t_start,
                                                        "end": t_end, "cpu": cpu}))  # fmt: skip
    return 0


def _server_cpu() -> float:
    """CPU seconds used so far by every PostgreSQL process of this machine (the private
    server's backends, live and exited: the postmaster's reaped children)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for d in Path("/proc").iterdir():
        try:
            st = (d / "stat").read_text() if d.name.isdigit() else ""
        except OSError:
            continue
        if st[st.find("(") + 1 : st.rfind(")")] not in ("postgres", "postmaster"):
            continue
        f = st[st.rfind(")") + 2 :].split()
        total += sum(int(x) for x in f[11:15]) / tick  # utime stime cutime cstime
    return total


class _WaitSampler:
    """Samples pg_stat_activity every 10 ms while the workers run: of the step-up backends
    seen busy (a statement running), the share waiting on a lock (``wait_event_type =
    'Lock'``: a row lock, the head's lock, an advisory lock) rather than on the CPU, the disk
    or the client."""

    def __init__(self, db_url: str) -> None:
        import threading

        self.dsn = db_url.replace("postgresql+psycopg://", "postgresql://")
        self.busy = self.locked = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stop.wait(0.01):
                for (kind,) in conn.execute(
                    "SELECT wait_event_type FROM pg_stat_activity WHERE state = 'active' "
                    "AND datname = current_database() AND pid <> pg_backend_pid()"
                ):
                    self.busy += 1
                    self.locked += kind == "Lock"

    def share(self) -> float:
        self.stop.set()
        self.thread.join()
        return self.locked / self.busy if self.busy else 0.0


def run_config(
    db_url: str, tmp: Path, workers: int, finishes: int, env: dict[str, str], shared: bool
) -> Any:
    policy = _policy(tmp, allow_zero=shared)
    per = max(1, finishes // workers)
    files = []
    owners = [(f"bench-s{c}-{os.urandom(3).hex()}",) for c in range(SHARED)] if shared else []
    creds = [(u[0], *_register(db_url, policy, u[0])) for u in owners]
    for w in range(workers):
        if shared:
            user, key, cred_id = creds[w % SHARED]
        else:
            user = f"bench-w{w}-{os.urandom(3).hex()}"
            key, cred_id = _register(db_url, policy, user)
        jobs = _jobs(db_url, policy, user, key, cred_id, per + WARMUP, zero=shared)
        spec = {"db": db_url, "policy": str(policy.path), "start": 0.0, "jobs": jobs}
        f = tmp / f"w{workers}-{w}.json"
        f.write_text(json.dumps(spec))
        files.append(f)
    start = time.time() + 3.0 + 0.15 * workers  # every worker imported and warmed up by then
    for f in files:
        spec = json.loads(f.read_text())
        spec["start"] = start
        f.write_text(json.dumps(spec))
    postgres = db_url.startswith("postgresql")
    server0 = _server_cpu() if postgres else 0.0
    procs = [
        subprocess.Popen([sys.executable, __file__, "--worker", str(f)], env=env) for f in files
    ]
    while postgres and time.time() < start:
        time.sleep(0.01)
    sampler = _WaitSampler(db_url) if postgres else None
    codes = [p.wait() for p in procs]
    lock_share = sampler.share() if sampler is not None else None
    if any(codes):
        raise RuntimeError(f"a worker failed: exit codes {codes}")
    time.sleep(0.3)  # the backends of the finished workers have exited
    server = (_server_cpu() - server0) if postgres else None
    outs = [json.loads(f.with_suffix(".out").read_text()) for f in files]
    lat = sorted(x for o in outs for x in o["lat"])
    wall = max(o["end"] for o in outs) - min(o["start"] for o in outs)
    late = max(o["start"] for o in outs) - start
    return {
        "workers": workers,
        "finishes": len(lat),
        "per_second": len(lat) / wall,
        "p50_ms": statistics.median(lat) * 1e3,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3,
        "max_ms": lat[-1] * 1e3,
        "late_start_s": late,
        # CPU per timed finish: the workers' own, and (PostgreSQL) the server's, which also
        # counts the workers' warm-up and connection start
        "client_cpu_ms": sum(o["cpu"] for o in outs) / len(lat) * 1e3,
        "server_cpu_ms": None if server is None else server / len(lat) * 1e3,
        "lock_wait_share": lock_share,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", type=Path)
    ap.add_argument("--finishes", type=int, default=3000)
    ap.add_argument("--workers", default="1,2,4,8,16")
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--scenarios", default="distinct,shared")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker)
    from bench_stepup import raw_ecdsa

    counts = [int(x) for x in args.workers.split(",")]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    results: dict[str, Any] = {"raw_ecdsa_per_second": raw_ecdsa(3000), "backends": {}}
    tmp = Path(tempfile.mkdtemp(prefix="keyadmin-bench-workers-"))
    server = None
    try:
        backends: list[tuple[str, Any]] = []
        if not args.no_sqlite:
            backends.append(("sqlite-full", lambda w: f"sqlite:///{tmp / f'reg-{w}.db'}"))
        if not args.no_pg:
            from tests.support.postgres import PrivatePostgres

            pg_dir = Path(tempfile.mkdtemp(prefix="keyadmin-bench-pg-"))  # chowned to postgres
            server = PrivatePostgres(pg_dir, fsync=True)
            server.start()
            backends.append(("postgresql-fsync-on", lambda _w: server.create_database()))
        scenarios = args.scenarios.split(",")
        for name, make_url in backends:
            for scenario in scenarios:
                rows = []
                for w in counts:
                    url = make_url(f"{scenario}-{w}")
                    rows.append(
                        run_config(url, tmp, w, args.finishes, env, shared=scenario == "shared")
                    )
                    r = rows[-1]
                    extra = ""
                    if r["server_cpu_ms"] is not None:
                        extra = (f"  server cpu {r['server_cpu_ms']:4.2f} ms  waiting on a lock "
                                 f"{r['lock_wait_share']:4.0%}")  # fmt: skip
                    print(f"{name:<20} {scenario:<8} {w:>2} workers: {r['per_second']:7.0f}/s  "
                          f"p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms  max "
                          f"{r['max_ms']:6.1f} ms  cpu/finish {r['client_cpu_ms']:4.2f} ms"
                          f"{extra}", flush=True)  # fmt: skip
                results["backends"][f"{name} {scenario}"] = rows
        print(f"raw ECDSA P-256 verify: {results['raw_ecdsa_per_second']:,.0f}/s (one core)")
        if args.json:
            print(json.dumps(results, indent=2))
    finally:
        if server is not None:
            server.stop()
            shutil.rmtree(server.workdir, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
