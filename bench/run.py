"""Run every benchmark in bench/ (``make bench``), one process each, and print their reports.

Benchmarks that need a component the machine lacks (pcscd + vpcd for bench_pcsc) report
that and the run goes on. Numbers vary with machine load: compare the ratios each script
prints, which are measured in the same run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    failures = 0
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"\n### {script.name}", flush=True)
        proc = subprocess.run([sys.executable, str(script), *sys.argv[1:]], cwd=HERE.parent)
        if proc.returncode:
            print(f"!!! {script.name} exited {proc.returncode}", flush=True)
            failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
