"""Tiny timing helpers shared by the benchmark scripts (no pytest, no timed assertions)."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable


def measure(fn: Callable[[], object], *, repeat: int, warmup: int = 3) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return summarize(samples)


def installed_env(cache_dir: str) -> dict[str, str]:
    """The environment of an installed program: byte code cached. This machine's shell sets
    PYTHONDONTWRITEBYTECODE, which would recompile every module on every start; both sides of
    every comparison run in this environment."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = cache_dir
    return env


def measure_process(
    argv: list[str], *, repeat: int, env: dict[str, str] | None = None
) -> dict[str, float]:
    def once() -> None:
        subprocess.run(
            argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )

    return measure(once, repeat=repeat, warmup=2)


def summarize(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(samples),
        "median_ms": statistics.median(ordered) * 1000,
        "p90_ms": ordered[int(0.9 * (len(ordered) - 1))] * 1000,
        "min_ms": ordered[0] * 1000,
    }


def row(name: str, stats: dict[str, float]) -> str:
    return (
        f"  {name:<44} median {stats['median_ms']:9.3f} ms   p90 {stats['p90_ms']:9.3f} ms"
        f"   min {stats['min_ms']:9.3f} ms   (n={int(stats['n'])})"
    )
