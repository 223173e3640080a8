"""The configuration file: the desk's policy, registry, sync targets, operator and device,
and where notifications go, named once instead of on every command.

Where: ``$KEYADMIN_CONFIG`` (which must exist), else ``config.toml`` in the data directory
(keyadmin.config.data_dir; optional). Precedence, for every setting: the command-line option,
then its environment variable, then the file, then the built-in default. Relative paths in the
file are relative to the file's directory. The file must be ours (or root's) and writable by
no one else, like every file keyadmin trusts. Anything wrong in it is a ConfigError naming
the file, the line and the key (docs/configuration.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keyadmin.errors import ConfigError

ENV_CONFIG = "KEYADMIN_CONFIG"
DEFAULT_SOCKET = "/dev/log"

#: setting -> the environment variable that overrides the file.
ENV: dict[str, str] = {
    "policy": "KEYADMIN_POLICY",
    "registry": "KEYADMIN_DATABASE_URL",
    "operator": "KEYADMIN_OPERATOR",
    "operator_device": "KEYADMIN_OPERATOR_DEVICE",
    "device": "KEYADMIN_DEVICE",
    "target": "KEYADMIN_SYNC_TARGET",
    "syslog": "KEYADMIN_SYSLOG_SOCKET",
    "webhook": "KEYADMIN_WEBHOOK_URL",
}
_TOP = ("policy", "registry", "operator", "operator_device", "device")
_TARGET_KEYS = ("name", "url", "mapping")
_NOTIFY = {"syslog": (str, bool), "webhook": (str,), "webhook_timeout": (int, float),
           "webhook_retries": (int,)}  # fmt: skip


@dataclass(frozen=True)
class Target:
    """An application database that `keyadmin sync` (and `creds lost`) writes to."""

    name: str
    url: str
    mapping: str | None = None


@dataclass(frozen=True)
class Settings:
    path: str | None = None
    policy: str | None = None
    registry: str | None = None
    operator: str | None = None
    operator_device: str | None = None
    device: str | None = None
    targets: tuple[Target, ...] = ()
    syslog: str | bool | None = None  # a socket path, or False to send nothing
    webhook: str | None = None
    webhook_timeout: float = 3.0
    webhook_retries: int = 3
    sources: dict[str, str] = field(default_factory=dict)


def config_path() -> tuple[Path, bool]:
    """(the file, whether it was named explicitly). Never creates the data directory."""
    named = os.environ.get(ENV_CONFIG)
    if named:
        return Path(named), True
    return _data_path() / "config.toml", False


def _data_path() -> Path:
    """keyadmin.config.data_dir's path, without creating or checking it."""
    home = os.environ.get("KEYADMIN_HOME")
    if home:
        return Path(home)
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "keyadmin"


_cache: dict[tuple[str, int, int, int], Settings] = {}


def load() -> Settings:
    """The file's settings (empty when there is no file and none was named)."""
    path, named = config_path()
    try:
        st = path.stat()
    except OSError as e:
        if named:
            raise ConfigError(
                f"the configuration file {path} named by {ENV_CONFIG} cannot be read "
                f"({e.strerror})",
                hint=f"create it, or unset {ENV_CONFIG} (docs/configuration.md)",
            ) from None
        return Settings()
    key = (str(path), st.st_mtime_ns, st.st_size, st.st_ino)
    if key not in _cache:
        _cache.clear()
        _cache[key] = _parse(path)
    return _cache[key]


def _parse(path: Path) -> Settings:
    import tomllib  # here, not at the top: most commands run without a config file

    from keyadmin.files import check_trusted_file
    from keyadmin.policy.loader import _KeyLines, _toml_error_line

    check_trusted_file(path)
    raw = path.read_bytes()[: 1 << 20]
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError:
        raise _error(path, None, None, "the file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise _error(path, _toml_error_line(e), None, f"not valid TOML: {e}") from None
    lines = _KeyLines(text)
    base = path.parent

    def fail(table: str, key: str | None, problem: str) -> ConfigError:
        dotted = f"{table}.{key}" if table and key else (key or table)
        return _error(path, lines.line(table, key) or _array_line(text, table), dotted, problem)

    def text_of(table: str, key: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise fail(table, key, f"{key} must be a non-empty string")
        return value

    values: dict[str, Any] = {}
    for key, value in data.items():
        if key in _TOP:
            values[key] = text_of("", key, value)
        elif key == "sync":
            values["targets"] = _targets(value, fail, text_of, base)
        elif key == "notify":
            values.update(_notify(value, fail))
        else:
            known = ", ".join((*_TOP, "[sync]", "[notify]"))
            raise fail("", key, f"unknown setting {key!r}; known: {known}")
    if "policy" in values:
        values["policy"] = str(base / Path(values["policy"]).expanduser())
    if values.get("device", "").startswith("sim:"):
        values["device"] = "sim:" + str(base / values["device"][4:])
    if values.get("operator_device", "").startswith("sim:"):
        values["operator_device"] = "sim:" + str(base / values["operator_device"][4:])
    return Settings(path=str(path), **values)


def _targets(value: Any, fail: Any, text_of: Any, base: Path) -> tuple[Target, ...]:
    if not isinstance(value, dict):
        raise fail("sync", None, "[sync] must be a table")
    for key in value:
        if key != "targets":
            raise fail("sync", key, f"unknown setting sync.{key}; known: sync.targets")
    items = value.get("targets", [])
    if not isinstance(items, list) or not all(isinstance(t, dict) for t in items):
        raise fail("sync", "targets", "sync.targets must be tables: [[sync.targets]]")
    out: list[Target] = []
    for t in items:
        for key in t:
            if key not in _TARGET_KEYS:
                raise fail("sync", "targets", f"unknown key {key!r} in a [[sync.targets]] table")
        if "url" not in t:
            raise fail("sync", "targets", 'each [[sync.targets]] needs url = "…"')
        url = text_of("sync", "targets", t["url"])
        name = text_of("sync", "targets", t.get("name", f"target{len(out) + 1}"))
        mapping = t.get("mapping")
        if mapping is not None:
            mapping = str(base / Path(text_of("sync", "targets", mapping)).expanduser())
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            url = "sqlite:///" + str(base / url[len("sqlite:///") :])
        if any(o.name == name for o in out):
            raise fail("sync", "targets", f"two sync targets are named {name!r}")
        out.append(Target(name, url, mapping))
    return tuple(out)


def _notify(value: Any, fail: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise fail("notify", None, "[notify] must be a table")
    out: dict[str, Any] = {}
    for key, v in value.items():
        kinds = _NOTIFY.get(key)
        if kinds is None:
            raise fail("notify", key, f"unknown setting notify.{key}; known: {', '.join(_NOTIFY)}")
        if not isinstance(v, kinds) or (isinstance(v, bool) and bool not in kinds):
            raise fail("notify", key, f"notify.{key} has the wrong type ({type(v).__name__})")
        if key == "syslog" and v is True:
            v = None  # true: the default socket
        if key == "webhook_retries" and not 0 <= v <= 10:
            raise fail("notify", key, "notify.webhook_retries must be 0..10")
        if key == "webhook_timeout" and not 0 < v <= 60:
            raise fail("notify", key, "notify.webhook_timeout must be in (0, 60] seconds")
        out[key] = v
    return out


def _array_line(text: str, table: str) -> int | None:
    """The line of the first ``[[table.…]]`` header (arrays of tables have no _KeyLines)."""
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith(f"[[{table}"):
            return n
    return None


def _error(path: Path, line: int | None, key: str | None, problem: str) -> ConfigError:
    where = f"{path}" + (f":{line}" if line else "")
    return ConfigError(
        f"{where}" + (f" [{key}]" if key else "") + f": {problem}",
        hint="fix the configuration file (docs/configuration.md), then run: keyadmin config show",
        file=str(path),
        line=line,
        key=key,
    )


def resolved() -> list[dict[str, Any]]:
    """Each setting's value and where it came from (env, file:LINE, or default)."""
    s = load()
    rows: list[dict[str, Any]] = []
    for name in (*_TOP, "target", "syslog", "webhook"):
        env = ENV.get(name)
        if env and os.environ.get(env):
            rows.append({"name": name, "value": os.environ[env], "source": "env", "env": env})
            continue
        value: Any = getattr(s, name, None)
        if name == "target":
            value = [t.__dict__ for t in s.targets] or None
        src = f"file {s.path}" if value not in (None, []) else "default"
        if src == "default":
            value = _builtin(name)
        rows.append({"name": name, "value": value, "source": src, "env": env})
    return rows


def _builtin(name: str) -> Any:
    """What applies when nothing names a setting (never creates the data directory)."""
    if name == "registry":
        return f"sqlite:///{_data_path() / 'keyadmin.db'}"
    builtin = {"operator": "the login name", "device": "the one key plugged in",
               "syslog": DEFAULT_SOCKET}  # fmt: skip
    return builtin.get(name)


def value(name: str) -> Any:
    """One setting after the environment: $ENV, else the file, else None."""
    env = ENV.get(name)
    if env and os.environ.get(env):
        return os.environ[env]
    return getattr(load(), name, None)


def default_for(param: str, command_path: str, given: dict[str, Any] | None = None) -> Any:
    """The default of a command's parameter from the settings (None: none), for click's
    ``lookup_default``: below the command line and each option's own environment variable
    (click's order), above the built-in defaults. ``mds`` filters by --policy: no default."""
    name = _PARAMS.get(param)
    if name is None or (name == "policy" and command_path.split()[1:2] == ["mds"]):
        return None
    if name in ("target", "mapping"):
        targets = load().targets
        if len(targets) != 1 or os.environ.get(ENV["target"]):
            return None
        if name == "mapping" and (given or {}).get("target") not in (None, targets[0].url):
            return None  # another --target than the configured one: not its mapping
        return targets[0].url if name == "target" else targets[0].mapping
    return value(name) or None


#: command parameter -> setting
_PARAMS = {
    "db": "registry",
    "policy": "policy",
    "device": "device",
    "operator": "operator",
    "operator_device": "operator_device",
    "target": "target",
    "mapping": "mapping",
}
