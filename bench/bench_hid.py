"""Round trips to the SOFTWARE key over python-fido2's CTAPHID code (in-process).

Also: keyadmin's cold start (``keyadmin --help``) next to a bare typer command that prints one
line, both as fresh processes in the same run. Target: within 1.5x.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import installed_env, measure, measure_process, row  # noqa: E402

BARE_TYPER = """
import typer
app = typer.Typer(add_completion=False)
@app.command()
def main() -> None:
    print("hello")
app()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()

    from fido2.ctap2 import Ctap2

    from keyadmin.sim.authenticator import SoftKey
    from keyadmin.sim.hid import open_hid

    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = installed_env(str(Path(tmp) / "pycache"))
        key = SoftKey.create(Path(tmp) / "bench.json")
        ctap = Ctap2(open_hid(key))
        results["hid getInfo"] = measure(ctap.get_info, repeat=args.repeat)

        def make_credential() -> None:
            ctap.make_credential(
                os.urandom(32),
                {"id": "bench.example"},
                {"id": os.urandom(8)},
                [{"type": "public-key", "alg": -7}],
            )

        results["hid makeCredential (packed, ES256)"] = measure(
            make_credential, repeat=max(20, args.repeat // 4)
        )
        results["in-process SoftKey.process(getInfo), no transport"] = measure(
            lambda: key.process(b"\x04"), repeat=args.repeat
        )
        bare = Path(tmp) / "bare_typer.py"
        bare.write_text(BARE_TYPER)
        results["cold start: bare typer command"] = measure_process(
            [sys.executable, str(bare)], repeat=15, env=env
        )
        results["cold start: keyadmin --help"] = measure_process(
            [sys.executable, "-m", "keyadmin", "--help"], repeat=15, env=env
        )
    ratio = (
        results["cold start: keyadmin --help"]["median_ms"]
        / results["cold start: bare typer command"]["median_ms"]
    )
    framing = (
        results["hid getInfo"]["median_ms"]
        / results["in-process SoftKey.process(getInfo), no transport"]["median_ms"]
    )
    if args.json:
        print(
            json.dumps(
                {"results": results, "help_vs_bare_typer": ratio, "hid_vs_core_getinfo": framing},
                indent=2,
            )
        )
        return
    print("Software key over CTAPHID (in-process), and CLI cold start")
    for name, stats in results.items():
        print(row(name, stats))
    print(f"  keyadmin --help / bare typer: {ratio:.2f}x (target <= 1.5x)")
    print(
        f"  HID getInfo / core getInfo:   {framing:.2f}x (cost of python-fido2's CTAPHID framing)"
    )


if __name__ == "__main__":
    main()
