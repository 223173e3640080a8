"""Benchmark: the software key over the real PC/SC stack (private pcscd + vpcd).

One run, one private pcscd, one virtual card. Measures the round trip of

- the getInfo round trip through python-fido2's unmodified ``CtapPcscDevice``
  (``CtapPcscDevice.call(CTAPHID.CBOR, b"\x04")``: NFCCTAP_MSG, response bytes back);
- a raw pyscard ``transmit`` of the getInfo NFCCTAP_MSG APDU (80 10 00 00 01 04 00)
  on the same card, i.e. the floor set by pcscd, vpcd and the card loop;
- ``Ctap2.get_info()``: the device round trip plus python-fido2 decoding the reply
  into its ``Info`` dataclass (that decoding is also timed alone, without I/O);
- ``Ctap2.make_credential`` (ES256, packed attestation; the key writes its state file).

and prints median and p90 per operation plus the ratio of the CtapPcscDevice
getInfo round trip to the raw transmit (target: within 2x), and, for information,
the same ratio for ``Ctap2.get_info()``. Needs access to /run/pcscd (root on
Debian) and no other pcscd running.

Usage::

    .venv/bin/python bench/bench_pcsc.py [--rounds 300] [--make-rounds 40] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from keyadmin.sim.pcsc import VirtualCard
from keyadmin.sim.pcscd import PcscdError, PrivatePcscd, wait_for_card

RAW_GET_INFO = bytes.fromhex("80100000010400")
SELECT_FIDO = bytes.fromhex("00A4040008A0000006472F000100")
RP = {"id": "bench.keyadmin.example", "name": "keyadmin bench"}
USER = {"id": b"bench-user", "name": "bench"}
ES256 = [{"type": "public-key", "alg": -7}]


def measure(fn: Callable[[], Any], rounds: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def summarize(samples: list[float]) -> dict[str, float | int]:
    ordered = sorted(samples)
    p90 = ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]  # nearest rank
    return {
        "n": len(samples),
        "median_ms": statistics.median(samples) * 1e3,
        "p90_ms": p90 * 1e3,
        "min_ms": ordered[0] * 1e3,
        "max_ms": ordered[-1] * 1e3,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from fido2 import cbor
    from fido2.ctap2 import Ctap2, Info
    from fido2.hid import CTAPHID
    from fido2.pcsc import CtapPcscDevice
    from smartcard.System import readers

    from keyadmin.sim.authenticator import SoftKey

    with tempfile.TemporaryDirectory(prefix="keyadmin-bench-") as tmp:
        key = SoftKey.create(Path(tmp) / "bench-key.json")
        with PrivatePcscd(port=args.port, reader_name="keyadmin bench vpcd") as daemon:
            card = VirtualCard(key, port=daemon.port)
            card.start()
            try:
                reader_name = daemon.card_reader
                wait_for_card(reader_name, 10.0)
                devices = list(CtapPcscDevice.list_devices(reader_name))
                if len(devices) != 1:
                    raise SystemExit(f"expected one FIDO card on {reader_name!r}, got {devices}")
                dev = devices[0]
                ctap2 = Ctap2(dev)
                info_size = len(dev.call(CTAPHID.CBOR, b"\x04"))

                reader = next(r for r in readers() if str(r) == reader_name)
                conn = reader.createConnection()
                conn.connect()
                _, sw1, sw2 = conn.transmit(list(SELECT_FIDO))
                assert (sw1, sw2) == (0x90, 0x00)

                def raw() -> None:
                    data, sw1, sw2 = conn.transmit(list(RAW_GET_INFO))
                    while sw1 == 0x61:  # more to come (a getInfo longer than 256 bytes)
                        more, sw1, sw2 = conn.transmit([0x00, 0xC0, 0x00, 0x00, sw2])
                        data += more
                    if (sw1, sw2) != (0x90, 0x00) or data[:1] != [0] or len(data) != info_size:
                        raise RuntimeError(f"raw getInfo failed: SW {sw1:02X}{sw2:02X}")

                cdh = hashlib.sha256(b"bench").digest()
                info_map = cbor.decode(dev.call(CTAPHID.CBOR, b"\x04")[1:])
                results = {
                    "device_get_info": measure(
                        lambda: dev.call(CTAPHID.CBOR, b"\x04"), args.rounds, args.warmup
                    ),
                    "raw_transmit_get_info": measure(raw, args.rounds, args.warmup),
                    "ctap2_get_info": measure(ctap2.get_info, args.rounds, args.warmup),
                    "fido2_info_decode_no_io": measure(
                        lambda: Info.from_dict(info_map), args.rounds, args.warmup
                    ),
                    "ctap2_make_credential": measure(
                        lambda: ctap2.make_credential(cdh, RP, USER, ES256),
                        args.make_rounds,
                        min(args.warmup, 3),
                    ),
                }
                conn.disconnect()
                conn.release()
                dev.close(release=True)
            finally:
                card.stop()

    summary = {name: summarize(samples) for name, samples in results.items()}
    raw_median = summary["raw_transmit_get_info"]["median_ms"]
    return {
        "benchmark": "keyadmin software key over pcscd + vpcd",
        "get_info_response_bytes": info_size,
        "results": summary,
        "ratio_get_info_to_raw": summary["device_get_info"]["median_ms"] / raw_median,
        "ratio_ctap2_get_info_to_raw": summary["ctap2_get_info"]["median_ms"] / raw_median,
        "target_ratio": 2.0,
    }


def print_table(report: dict[str, Any]) -> None:
    print(f"{report['benchmark']} (getInfo response: {report['get_info_response_bytes']} bytes)")
    print(f"{'operation':<26}{'n':>6}{'median ms':>12}{'p90 ms':>10}{'min ms':>10}{'max ms':>10}")
    for name, row in report["results"].items():
        print(
            f"{name:<26}{row['n']:>6}{row['median_ms']:>12.3f}{row['p90_ms']:>10.3f}"
            f"{row['min_ms']:>10.3f}{row['max_ms']:>10.3f}"
        )
    ratio = report["ratio_get_info_to_raw"]
    verdict = "within" if ratio <= report["target_ratio"] else "OVER"
    print(
        f"CtapPcscDevice getInfo / raw transmit (medians): {ratio:.2f}x "
        f"({verdict} the {report['target_ratio']:.0f}x target)"
    )
    print(
        f"Ctap2.get_info() / raw transmit: {report['ratio_ctap2_get_info_to_raw']:.2f}x "
        "(the difference is python-fido2's Info decoding, timed alone above)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300, help="getInfo / raw rounds")
    parser.add_argument("--make-rounds", type=int, default=40, help="makeCredential rounds")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--port", type=int, default=35983, help="vpcd port of the private pcscd")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--debug", action="store_true", help="log keyadmin's debug messages")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING)
    try:
        report = run(args)
    except PcscdError as e:
        print(f"bench_pcsc: {e.message}" + (f"\n  {e.hint}" if e.hint else ""), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
