"""Every text for people passes through keyadmin/cli/render.py, which escapes terminal
controls (adversarial review, item 2). This pins that no other module writes to the
terminal by itself, so a new command cannot bypass the escaping."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "keyadmin"
WRITERS = re.compile(
    r"sys\.(stdout|stderr)\.write|sys\.(stdout|stderr)\)|typer\.echo|click\.echo|"
    r"typer\.secho|(?<![\w.])print\(|rich\.print|Console\(|print_exc|print_exception|"
    r"StreamHandler|basicConfig"
)


def test_only_the_renderer_writes_to_the_terminal() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "render.py" or path.parent.name != "cli"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if WRITERS.search(line)
    ]
    assert offenders == []


def test_the_pattern_catches_a_raw_write() -> None:
    assert WRITERS.search('    sys.stdout.write(f"{nickname}\\n")')
    assert WRITERS.search("    typer.echo(name)") and WRITERS.search("print(x)")
    assert not WRITERS.search("cert.fingerprint(hashes.SHA256())")
