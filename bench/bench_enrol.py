"""keyadmin's own time per enrolment with the SOFTWARE key: total minus time in device calls.

Runs the real enrolment flow in-process (policy load once, metadata index, attestation
verification, every policy rule, the registry transaction with its audit row) against the
software key over python-fido2's CTAPHID code. The device's time is measured by timing every
CTAP call at the transport (CtapDevice.call) and subtracted. Target: under 50 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fido2.ctap import CtapDevice  # noqa: E402


class TimedDevice(CtapDevice):
    """Forwards to a real CtapDevice and adds up the time spent inside it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.spent = 0.0

    @property
    def capabilities(self) -> int:
        return int(self.inner.capabilities)

    def call(
        self, cmd: int, data: bytes = b"", event: Any = None, on_keepalive: Any = None
    ) -> bytes:
        t0 = time.perf_counter()
        try:
            return bytes(self.inner.call(cmd, data, event, on_keepalive))
        finally:
            self.spent += time.perf_counter() - t0

    def close(self) -> None:
        self.inner.close()

    @classmethod
    def list_devices(cls) -> Any:
        return iter(())


def run(db_url: str, workdir: Path, n: int) -> dict[str, float]:
    from keyadmin.cli.interact import CliInteraction
    from keyadmin.device.discovery import DeviceRef
    from keyadmin.device.session import DeviceSession
    from keyadmin.flows.enrol import enrol
    from keyadmin.policy.loader import load_policy
    from keyadmin.policy.metadata import IndexMetadata
    from keyadmin.sim.hid import open_hid
    from keyadmin.store.mds_index import MdsIndex
    from tests.support.lab import PIN, make_lab

    lab = make_lab(workdir, db_url)
    key = lab.key()
    key.state.max_discoverable = n + 10
    policy = load_policy(lab.policy)
    metadata = IndexMetadata(MdsIndex(db_url))
    totals, device, own = [], [], []
    for i in range(n + 2):
        timed = TimedDevice(open_hid(key))
        t0 = time.perf_counter()
        session = DeviceSession(DeviceRef("sim", str(lab.key_path), key.product_name), timed)
        enrol(
            user=f"user{i:05d}",
            display_name=None,
            policy=policy,
            session=session,
            interaction=CliInteraction(PIN),
            db_url=db_url,
            metadata=metadata,
            operator="bench",
        )
        total = time.perf_counter() - t0
        if i >= 2:  # the first two warm up imports and the engine
            totals.append(total)
            device.append(timed.spent)
            own.append(total - timed.spent)
    return {
        "n": n,
        "total_median_ms": statistics.median(totals) * 1000,
        "device_median_ms": statistics.median(device) * 1000,
        "own_median_ms": statistics.median(own) * 1000,
        "own_p90_ms": sorted(own)[int(0.9 * (len(own) - 1))] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = run(f"sqlite:///{tmp}/registry.db", Path(tmp) / "lab", args.n)
        if not args.no_postgres:
            from tests.support.postgres import PostgresUnavailable, PrivatePostgres

            pgdir = Path(tempfile.mkdtemp(prefix="keyadmin-pg-"))
            try:
                server = PrivatePostgres(pgdir)
                server.start()
                try:
                    results["postgres"] = run(server.create_database(), Path(tmp) / "lab2", args.n)
                finally:
                    server.stop()
            except PostgresUnavailable as e:
                results["postgres"] = {"skipped": str(e)}
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print("Enrolment with the software key (in-process flow; device time subtracted)")
    for name, r in results.items():
        if "skipped" in r:
            print(f"  {name:<9} skipped: {r['skipped']}")
            continue
        print(
            f"  {name:<9} total {r['total_median_ms']:7.1f} ms"
            f"  device {r['device_median_ms']:7.1f} ms"
            f"  keyadmin's own {r['own_median_ms']:7.1f} ms (p90 {r['own_p90_ms']:.1f})"
            f"  target < 50 ms  (n={r['n']})"
        )


if __name__ == "__main__":
    main()
