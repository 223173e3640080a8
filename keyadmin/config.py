"""Where keyadmin keeps its files, and which database it uses.

Light on purpose: imported by the CLI before any heavy library.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_HOME = "KEYADMIN_HOME"
ENV_DB = "KEYADMIN_DATABASE_URL"


def data_dir() -> Path:
    """The data directory.

    $KEYADMIN_HOME, else $XDG_DATA_HOME/keyadmin, else ~/.local/share/keyadmin.

    Created with mode 0700 when missing; tightened to 0700 when others can read it; refused
    when another user owns it or others can write it or a directory above it
    (keyadmin.files.private_dir).
    """
    home = os.environ.get(ENV_HOME)
    if home:
        path = Path(home)
    else:
        xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        path = Path(xdg) / "keyadmin"
    from keyadmin.files import private_dir

    return private_dir(path)


def database_url(explicit: str | None = None) -> str:
    """The registry: --db, else $KEYADMIN_DATABASE_URL, else ``registry`` in the configuration
    file (keyadmin.settings), else a SQLite file in data_dir()."""
    if explicit:
        return explicit
    env = os.environ.get(ENV_DB)
    if env:
        return env
    from keyadmin.settings import load

    configured = load().registry
    if configured:
        return configured
    return f"sqlite:///{data_dir() / 'keyadmin.db'}"
