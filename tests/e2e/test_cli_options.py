"""One option set (issue 17): every command's --db, --json, --csv, --operator,
--operator-device, --device, --reason, --force and --dry-run is the one declared in
keyadmin/cli/options.py (same help, same environment variable), and the operator's name is
resolved by one function."""

from __future__ import annotations

import getpass
from typing import get_args

import click
import pytest
import typer

from keyadmin.cli import options
from keyadmin.cli.main import app


def _declared(alias: object) -> typer.models.OptionInfo:
    info = get_args(alias)[1]
    assert isinstance(info, typer.models.OptionInfo)
    return info


def _params() -> list[tuple[str, click.Parameter]]:
    root = typer.main.get_command(app)
    found: list[tuple[str, click.Parameter]] = []

    def walk(cmd: click.Command, path: str, ctx: click.Context) -> None:
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None
                walk(sub, f"{path} {name}", click.Context(sub, info_name=name, parent=ctx))
        else:
            found.extend((path, p) for p in cmd.params)

    walk(root, "keyadmin", click.Context(root, info_name="keyadmin"))
    return found


PARAMS = _params()
SHARED = {
    "--db": [options.DbOpt],
    "--operator": [options.OperatorOpt],
    "--operator-device": [options.OperatorDeviceOpt],
    "--json": [options.JsonOpt, options.FormatJsonOpt],
    "--csv": [options.CsvOpt, options.FormatCsvOpt],
    "--dry-run": [options.DryRunOpt],
    "--reason": [options.ReasonOpt],
}
# the same flag with a meaning of its own: sync's dry run may still exit 3 (tampering found)
OWN = {("--dry-run", "keyadmin sync")}


@pytest.mark.parametrize("flag", sorted(SHARED))
def test_every_shared_option_is_the_one_declared(flag: str) -> None:
    declared = [_declared(a) for a in SHARED[flag]]
    uses = [(path, p) for path, p in PARAMS if flag in p.opts and (flag, path) not in OWN]
    assert len(uses) >= 3, flag
    for path, p in uses:
        assert isinstance(p, click.Option)
        assert any(p.help == d.help and p.envvar == d.envvar for d in declared), (path, p.help)


def test_db_reads_the_registry_variable_on_every_command() -> None:
    uses = [(path, p) for path, p in PARAMS if "--db" in p.opts]
    assert len(uses) >= 40
    assert {p.envvar for _, p in uses} == {"KEYADMIN_DATABASE_URL"}
    assert {p.name for _, p in uses} == {"db"}  # the configuration file's default is by name


def test_operator_name_flag_env_fallback_login(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(options.ENV_OPERATOR, raising=False)
    assert options.operator_name("olivia") == "olivia"
    assert options.operator_name(None) == getpass.getuser()
    assert options.operator_name(None, fallback="alice") == "alice"
    monkeypatch.setenv(options.ENV_OPERATOR, "bob")
    assert options.operator_name(None) == "bob"
    assert options.operator_name(None, fallback="alice") == "bob"
    assert options.operator_name("olivia") == "olivia"
