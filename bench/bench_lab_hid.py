"""The cost of the kernel's HID path: getInfo and makeCredential over a real /dev/hidrawN node
(the software key served through /dev/uhid, python-fido2's Linux backend) next to the same calls
to the software key in-process, both inside the same hardware-lab guest (tests/lab/vm.py).

The guest runs in software emulation, so only the ratios mean anything, never the milliseconds.
Needs the lab (scripts/lab/setup.sh, as root); reports "unavailable" otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from _timing import row, summarize  # noqa: E402

REPEAT_INFO, REPEAT_MC = 60, 15


def paired(a: Callable[[], object], b: Callable[[], object], repeat: int) -> tuple[dict, dict]:
    """Time a and b alternately (after a warm-up of each), so drift in the host's load (software
    emulation on a shared machine) falls on both sides alike."""
    for _ in range(3):
        a(), b()
    sa, sb = [], []
    for _ in range(repeat):
        for fn, samples in ((a, sa), (b, sb)):
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
    return summarize(sa), summarize(sb)


def in_guest(out: Path) -> None:
    """Runs inside the guest (tests/lab/guest-init.sh with lab.mode=bench), as root."""
    from fido2.ctap2 import Ctap2
    from fido2.hid import open_device

    from keyadmin.sim.authenticator import SoftKey
    from keyadmin.sim.hid import open_hid

    subprocess.run(["modprobe", "-a", "uhid", "hid-generic"], check=True)
    work = Path(tempfile.mkdtemp())
    SoftKey.create(work / "served.key")
    serve = subprocess.Popen(
        [sys.executable, "-m", "keyadmin", "sim", "serve", "--state", str(work / "served.key"),
         "--transport", "uhid"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert serve.stderr is not None
    banner = serve.stderr.readline()
    node = next(w for w in banner.split() if w.startswith("/dev/hidraw"))
    for _ in range(100):  # devtmpfs makes the node (no udev needed: root opens it)
        if os.path.exists(node):
            break
        time.sleep(0.05)
    over_hidraw = Ctap2(open_device(node))
    in_process = Ctap2(open_hid(SoftKey.create(work / "local.key")))

    def make_credential(ctap: Ctap2) -> None:
        ctap.make_credential(
            os.urandom(32), {"id": "bench.example"}, {"id": os.urandom(8)},
            [{"type": "public-key", "alg": -7}],
        )  # fmt: skip

    results = {}
    info = paired(over_hidraw.get_info, in_process.get_info, REPEAT_INFO)
    results["getInfo over /dev/hidraw"], results["getInfo in-process"] = info
    mc = paired(
        lambda: make_credential(over_hidraw), lambda: make_credential(in_process), REPEAT_MC
    )
    results["makeCredential over /dev/hidraw"], results["makeCredential in-process"] = mc
    serve.terminate()
    serve.wait(timeout=20)
    (out / "bench.json").write_text(json.dumps({"node": node, "results": results}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeat", type=int, help="ignored: the guest's counts are fixed (60, 15)")
    parser.add_argument("--guest", type=Path, help=argparse.SUPPRESS)  # inside the guest
    args = parser.parse_args()
    if args.guest:
        in_guest(args.guest)
        return

    from tests.lab.vm import LabUnavailable, boot

    with tempfile.TemporaryDirectory() as tmp:
        try:
            result = boot(Path(tmp) / "bench", mode="bench")
        except LabUnavailable as e:
            print(f"bench_lab_hid: unavailable: {e}")
            return
        path = Path(tmp) / "bench" / "bench.json"
        if not path.exists():
            log = (Path(tmp) / "bench" / "checks.log").read_text(errors="replace")[-2000:]
            raise SystemExit(f"bench_lab_hid: the guest wrote no results:\n{log}")
        data = json.loads(path.read_text())
    results = data["results"]
    ratios = {
        "getInfo hidraw / in-process": results["getInfo over /dev/hidraw"]["median_ms"]
        / results["getInfo in-process"]["median_ms"],
        "makeCredential hidraw / in-process": results["makeCredential over /dev/hidraw"][
            "median_ms"
        ]
        / results["makeCredential in-process"]["median_ms"],
    }
    if args.json:
        print(json.dumps({"results": results, "ratios": ratios, "boot_s": result.seconds}))
        return
    print(f"hardware-lab guest (software emulation: compare ratios only), {data['node']}:")
    for name, stats in results.items():
        print(row(name, stats))
    for name, ratio in ratios.items():
        print(f"  {name:<44} {ratio:6.2f}x")


if __name__ == "__main__":
    main()
