"""Progress of long work (metadata download and import, sync, audit), reported by the flows
and drawn by the CLI only when stderr is a terminal (keyadmin.cli.render.TerminalProgress).

The flows call ``report(stage, done, total)`` as they go; without a sink (a library caller, a
pipe, a test) each call is one None check. The sink draws at most ten times a second.
"""

from __future__ import annotations

from collections.abc import Callable

Sink = Callable[[str, int, "int | None"], None]
_sink: list[Sink | None] = [None]


def set_sink(sink: Sink | None) -> None:
    _sink[0] = sink


def report(stage: str, done: int, total: int | None = None) -> None:
    sink = _sink[0]
    if sink is not None:
        sink(stage, done, total)
