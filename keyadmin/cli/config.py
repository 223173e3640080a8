"""keyadmin config: the configuration file (keyadmin.settings) and where each setting came from."""

from __future__ import annotations

import typer

from keyadmin.cli.options import JsonOpt
from keyadmin.cli.render import emit_json, emit_kv

app = typer.Typer(
    help="The configuration file: show each setting and where it came from.\n\n"
    "Example: keyadmin config show"
)


@app.command("show")
def show(json_out: JsonOpt = False) -> None:
    """Show the file keyadmin reads and each setting's value and source (env, file, default).

    The file: $KEYADMIN_CONFIG, else config.toml in the data directory. Command-line options
    win over environment variables, which win over the file (docs/configuration.md).
    Example: keyadmin config show --json
    """
    from keyadmin.settings import config_path, load, resolved

    path, named = config_path()
    settings = load()
    rows = resolved()
    if json_out:
        emit_json({"file": str(path), "exists": settings.path is not None, "named": named,
                   "settings": rows})  # fmt: skip
        return
    emit_kv(
        f"Configuration: {path}" + ("" if settings.path else " (no such file: defaults)"),
        [
            (r["name"], f"{r['value'] if r['value'] is not None else '-'}   [{r['source']}]")
            for r in rows
        ],  # fmt: skip
    )
