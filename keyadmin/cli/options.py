"""The options many commands share, each declared once, with one help text, as typed
``Annotated`` aliases; and the one function that names the operator.

A command takes them as ``db: DbOpt = None``, ``json_out: JsonOpt = False``,
``operator: OperatorOpt = None`` … Keep the parameter names: the configuration file's defaults
are looked up by them (keyadmin.settings.default_for: ``db``, ``policy``, ``device``,
``operator``, ``operator_device``). An option whose meaning is one command's own (``mds
import --policy``, ``operator bootstrap --device``) stays with that command.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Annotated

import typer

ENV_OPERATOR = "KEYADMIN_OPERATOR"

DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="KEYADMIN_DATABASE_URL",
        help="The registry's database URL (sqlite:///PATH or postgresql://USER@HOST/DB; "
        "default: the configuration file's registry, else the SQLite file in the data "
        "directory).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
CsvOpt = Annotated[bool, typer.Option("--csv", help="Print CSV (with a header row) on stdout.")]
# commands that also take --format table|json|csv
FormatOpt = Annotated[str, typer.Option("--format", help="table, json or csv.")]
FormatJsonOpt = Annotated[bool, typer.Option("--json", help="Same as --format json.")]
FormatCsvOpt = Annotated[bool, typer.Option("--csv", help="Same as --format csv.")]

OperatorOpt = Annotated[
    str | None,
    typer.Option(
        "--operator",
        envvar=ENV_OPERATOR,
        help="The operator acting (default: the login name); proven by --operator-device or a "
        "session (keyadmin operator login), never by the name alone.",
    ),
]
OperatorDeviceOpt = Annotated[
    str | None,
    typer.Option(
        "--operator-device",
        envvar="KEYADMIN_OPERATOR_DEVICE",
        help="The operator's own key (hid:, nfc:, sim:): its UV assertion authorizes this command.",
    ),
]
DeviceOpt = Annotated[
    str | None,
    typer.Option(
        "--device",
        "-d",
        envvar="KEYADMIN_DEVICE",
        help="hid:PATH, nfc:READER or sim:STATEFILE. Default: the one device present.",
    ),
]

PolicyOpt = Annotated[Path, typer.Option("--policy", help="The policy file (TOML).")]
CoveragePolicyOpt = Annotated[
    Path | None,
    typer.Option("--policy", help="Judge each user's coverage by this policy's minimum of keys."),
]

ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (recorded in the log).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Do not ask for confirmation.")]
DryRunOpt = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Print what would change and exit 0: nothing is written, no PIN, confirmation "
        "or operator authorization is asked.",
    ),
]


def operator_name(operator: str | None, *, fallback: str | None = None) -> str:
    """The operator's claimed name: ``--operator`` (which typer already fills from
    $KEYADMIN_OPERATOR, then the configuration file's ``operator``), else $KEYADMIN_OPERATOR,
    else ``fallback``, else the login name. A claim only: authority is proven by
    keyadmin.flows.authority."""
    return operator or os.environ.get(ENV_OPERATOR) or fallback or getpass.getuser()
