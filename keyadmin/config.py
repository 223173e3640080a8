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


def database_url(explicit: str | None = None, *, create: bool = False) -> str:
    """The registry: --db, else $KEYADMIN_DATABASE_URL, else ``registry`` in the configuration
    file (keyadmin.settings), else a SQLite file in data_dir().

    A SQLite registry that was named (by any of the first three) must already exist unless
    ``create``: only the commands that make a registry (enrol, mds import/update, operator
    bootstrap, sync --create-table, the device commands that log what they did) pass it, so a
    mistyped path on any other command is a ConfigError and never leaves an empty database
    behind. The default file in the data directory is always created when missing."""
    url = explicit or os.environ.get(ENV_DB)
    if not url:
        from keyadmin.settings import load

        url = load().registry
    if not url:
        return f"sqlite:///{data_dir() / 'keyadmin.db'}"
    if not create:
        from keyadmin.store.db import sqlite_file

        path = sqlite_file(url)
        if path is not None and not os.path.lexists(path):  # a symlink: refused when opened
            from keyadmin.errors import ConfigError

            raise ConfigError(
                f"no registry at {path}: the file does not exist (nothing was created)",
                hint="check the --db URL, KEYADMIN_DATABASE_URL or the configuration file's "
                "registry; a new registry is made by keyadmin enrol, mds import or "
                "operator bootstrap",
            )
    return url
