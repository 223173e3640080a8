"""`keyadmin device info --json` against a bare python-fido2 script doing the same getInfo.

Both as fresh processes, in the same run, on the same SOFTWARE key:
- over NFC (private pcscd + vpcd; the bare script uses python-fido2's CtapPcscDevice),
- over in-process CTAPHID (the bare script opens the key with keyadmin.sim.hid and calls
  python-fido2's Ctap2.get_info()).
keyadmin's overhead = median(keyadmin) - median(bare). Target: under 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import installed_env, measure_process, row  # noqa: E402

BARE_NFC = """
import sys
from fido2.ctap2 import Ctap2
from fido2.pcsc import CtapPcscDevice
dev = next(CtapPcscDevice.list_devices(sys.argv[1]))
info = Ctap2(dev).get_info()
from fido2.ctap import CtapError
from fido2.ctap2 import ClientPin
try:
    ClientPin(Ctap2(dev)).get_pin_retries()
except CtapError as e:  # a key without a PIN (as YubiKeys answer)
    assert e.code == CtapError.ERR.PIN_NOT_SET, e
print(info.aaguid)
"""

BARE_HID = """
import sys
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2, ClientPin
from keyadmin.sim.authenticator import SoftKey
from keyadmin.sim.hid import open_hid
dev = open_hid(SoftKey.open(sys.argv[1]))
info = Ctap2(dev).get_info()
try:
    ClientPin(Ctap2(dev)).get_pin_retries()
except CtapError as e:  # a key without a PIN (as YubiKeys answer)
    assert e.code == CtapError.ERR.PIN_NOT_SET, e
print(info.aaguid)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from keyadmin.sim.authenticator import SoftKey

    exe = os.path.join(os.path.dirname(sys.executable), "keyadmin")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = installed_env(str(Path(tmp) / "pycache"))
        state = Path(tmp) / "key.json"
        key = SoftKey.create(state)
        bare_hid = Path(tmp) / "bare_hid.py"
        bare_hid.write_text(BARE_HID)
        bare_nfc = Path(tmp) / "bare_nfc.py"
        bare_nfc.write_text(BARE_NFC)
        results["hid: bare python-fido2 getInfo"] = measure_process(
            [sys.executable, str(bare_hid), str(state)], repeat=args.repeat, env=env
        )
        results["hid: keyadmin device info --json"] = measure_process(
            [exe, "device", "info", "--json", "-d", f"sim:{state}"], repeat=args.repeat, env=env
        )
        try:
            from keyadmin.sim.pcsc import VirtualCard
            from keyadmin.sim.pcscd import PcscdError, PrivatePcscd, wait_for_card

            with PrivatePcscd(port=35993, reader_name="keyadmin bench info") as daemon:
                card = VirtualCard(key, port=daemon.port)
                card.start()
                try:
                    reader = wait_for_card(daemon.card_reader, 10.0)
                    results["nfc: bare python-fido2 getInfo"] = measure_process(
                        [sys.executable, str(bare_nfc), reader], repeat=args.repeat, env=env
                    )
                    results["nfc: keyadmin device info --json"] = measure_process(
                        [exe, "device", "info", "--json", "-d", f"nfc:{reader}"],
                        repeat=args.repeat,
                        env=env,
                    )
                finally:
                    card.stop()
        except (ImportError, PcscdError) as e:
            print(f"(nfc skipped: {e})", file=sys.stderr)
    overhead = {}
    for transport in ("hid", "nfc"):
        k = results.get(f"{transport}: keyadmin device info --json")
        b = results.get(f"{transport}: bare python-fido2 getInfo")
        if k and b:
            overhead[transport] = k["median_ms"] - b["median_ms"]
    if args.json:
        print(json.dumps({"results": results, "overhead_ms": overhead}, indent=2))
        return
    print("keyadmin device info --json vs a bare python-fido2 getInfo (fresh processes)")
    for name, stats in results.items():
        print(row(name, stats))
    for transport, ms in overhead.items():
        print(f"  {transport} overhead: {ms:.1f} ms (target < 100 ms)")


if __name__ == "__main__":
    main()
