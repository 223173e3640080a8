"""The configuration file (issue 16, item 3): policy, registry, sync targets, operator and
device named once. Command-line options win, then environment variables, then the file.
Errors in the file are ConfigErrors that name the file, the key and the line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.e2e.cli import invoke
from tests.support.lab import PIN, make_lab


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("KEYADMIN_HOME", str(path))
    for name in (
        "KEYADMIN_CONFIG", "KEYADMIN_OPERATOR", "KEYADMIN_OPERATOR_DEVICE", "KEYADMIN_DEVICE",
        "KEYADMIN_DATABASE_URL", "KEYADMIN_POLICY", "KEYADMIN_SYNC_TARGET",
    ):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    return path


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_enrol_takes_policy_registry_and_device_from_the_file(tmp_path, home) -> None:
    lab = make_lab(tmp_path / "lab", f"sqlite:///{tmp_path / 'reg.db'}")
    _write(
        home / "config.toml",
        f'policy = "{lab.policy}"\nregistry = "{lab.db}"\ndevice = "{lab.device}"\n',
    )
    out = invoke("enrol", "alice", "--json", input=f"{PIN}\n")
    assert out.code == 0, out.stderr
    assert [r["user"] for r in lab.registry_rows()] == ["alice"]


def test_relative_paths_in_the_file_are_relative_to_the_file(tmp_path, monkeypatch) -> None:
    lab = make_lab(tmp_path / "lab", f"sqlite:///{tmp_path / 'reg.db'}")
    conf = _write(
        tmp_path / "lab" / "desk.toml",
        f'policy = "lab-softkey.toml"\nregistry = "{lab.db}"\ndevice = "sim:softkey.json"\n',
    )
    monkeypatch.setenv("KEYADMIN_CONFIG", str(conf))
    monkeypatch.chdir(tmp_path)
    out = invoke("enrol", "alice", "--json", input=f"{PIN}\n")
    assert out.code == 0, out.stderr


def test_command_line_wins_over_environment_over_file(tmp_path, home, monkeypatch) -> None:
    dbs = {name: f"sqlite:///{tmp_path / name}.db" for name in ("file", "env", "cli")}
    for name, db in dbs.items():  # three registries, told apart by their one user
        lab = make_lab(tmp_path / name, db)
        assert invoke(*lab.enrol_args(name), input=f"{PIN}\n").code == 0
    _write(home / "config.toml", f'registry = "{dbs["file"]}"\n')

    def users(*args: str) -> list[str]:
        out = invoke("creds", "list", "--json", *args)
        assert out.code == 0, out.stderr
        return [r["user"] for r in json.loads(out.stdout)]

    assert users() == ["file"]
    monkeypatch.setenv("KEYADMIN_DATABASE_URL", dbs["env"])
    assert users() == ["env"]
    assert users("--db", dbs["cli"]) == ["cli"]


def test_keyadmin_policy_env_works_for_every_command_that_takes_a_policy(tmp_path, monkeypatch):
    lab = make_lab(tmp_path / "lab", f"sqlite:///{tmp_path / 'reg.db'}")
    monkeypatch.setenv("KEYADMIN_POLICY", str(lab.policy))
    out = invoke("enrol", "alice", "-d", lab.device, "--db", lab.db, "--json", input=f"{PIN}\n")
    assert out.code == 0, out.stderr
    cover = invoke("users", "list", "--db", lab.db, "--json")
    assert json.loads(cover.stdout)[0]["minimum"] is not None


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ('registry = "sqlite:///x.db"\npolicyy = "p.toml"\n', 2, "policyy"),
        ("policy = 3\n", 1, "policy"),
        ('device = "sim:a"\n\n[sync]\ntargets = "app"\n', 4, "sync.targets"),
        ('[[sync.targets]]\nname = "app"\n', 1, "sync.targets"),
        ('[notify]\nwebhook_retries = "three"\n', 2, "notify.webhook_retries"),
        ('registry = "sqlite:///x.db\n', 1, None),  # a TOML syntax error
    ],
)
def test_errors_in_the_file_name_file_key_and_line(tmp_path, home, text, line, key) -> None:
    conf = _write(home / "config.toml", text)
    out = invoke("creds", "list", "--json")
    assert out.code == 1, (out.stdout, out.stderr)
    assert f"{conf}:{line}" in out.stderr, out.stderr
    if key:
        assert key in out.stderr
    assert "Traceback" not in out.stderr


def test_a_config_file_others_can_write_is_refused(tmp_path, home) -> None:
    conf = _write(home / "config.toml", 'registry = "sqlite:////tmp/evil.db"\n')
    os.chmod(conf, 0o666)
    out = invoke("creds", "list")
    assert out.code == 1 and "writable by others" in out.stderr, out.stderr


def test_a_named_config_file_that_is_missing_is_an_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KEYADMIN_CONFIG", str(tmp_path / "nope.toml"))
    out = invoke("creds", "list")
    assert out.code == 1 and "nope.toml" in out.stderr, out.stderr


def test_config_show_prints_each_setting_and_where_it_came_from(tmp_path, home, monkeypatch):
    _write(home / "config.toml", 'registry = "sqlite:////srv/reg.db"\noperator = "olivia"\n')
    monkeypatch.setenv("KEYADMIN_OPERATOR", "bob")
    out = invoke("config", "show", "--json")
    assert out.code == 0, out.stderr
    shown = {s["name"]: s for s in json.loads(out.stdout)["settings"]}
    assert shown["registry"]["value"] == "sqlite:////srv/reg.db"
    assert shown["registry"]["source"].startswith("file")
    assert shown["operator"]["value"] == "bob" and shown["operator"]["source"] == "env"


def test_the_configured_mapping_goes_with_the_configured_target_only(tmp_path, home) -> None:
    from keyadmin.settings import default_for

    _write(
        home / "config.toml",
        '[[sync.targets]]\nname = "portal"\nurl = "sqlite:////srv/portal.db"\n'
        'mapping = "/etc/keyadmin/portal-mapping.toml"\n',
    )
    assert default_for("target", "keyadmin sync") == "sqlite:////srv/portal.db"
    assert default_for("mapping", "keyadmin sync", {}) == "/etc/keyadmin/portal-mapping.toml"
    other = {"target": "sqlite:////srv/other.db"}
    assert default_for("mapping", "keyadmin sync", other) is None
