"""Vendor security advisories about key models and firmware (policies/advisories.toml).

    [[advisory]]
    id = "YSA-2024-03"
    vendor = "Yubico"
    title = "Infineon ECDSA side channel (EUCLEAK)"
    url = "https://www.yubico.com/support/security-advisories/ysa-2024-03/"
    action = "what the operator should do"

    [[advisory.affects]]            # one block per product line
    models = ["YubiKey 5 Series"]   # matched as a case-insensitive prefix of the key's model
    aaguids = ["2fc0579f-8113-47ea-b116-bb5a8db9202a"]
    firmware_below = "5.7.0"        # affected: firmware_from <= version < firmware_below
    firmware_from = "5.0.0"         # optional

A key is affected by a block when its AAGUID is listed or its model (the inventory's, else the
metadata's description) starts with a listed model, and its firmware is in the range.
"""

from __future__ import annotations

import tomllib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from keyadmin.errors import ConfigError

Version = tuple[int, int, int]
MAX_FILE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Affects:
    models: tuple[str, ...]
    aaguids: frozenset[str]
    firmware_from: Version | None
    firmware_below: Version

    def matches_model(self, aaguid: str | None, model: str | None) -> bool:
        if aaguid is not None and aaguid in self.aaguids:
            return True
        text = (model or "").casefold()
        return bool(text) and any(text.startswith(m.casefold()) for m in self.models)

    def affected(self, version: Version) -> bool:
        low = self.firmware_from or (0, 0, 0)
        return low <= version < self.firmware_below

    def range_text(self) -> str:
        low = f"{version_text(self.firmware_from)} <= " if self.firmware_from else ""
        return f"{low}firmware < {version_text(self.firmware_below)}"


@dataclass(frozen=True)
class Advisory:
    id: str
    vendor: str
    title: str
    url: str
    action: str
    affects: tuple[Affects, ...]


def parse_version(text: str) -> Version:
    parts = text.strip().split(".")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() and len(p) <= 5 for p in parts):
        raise ValueError(f"{text!r} is not a firmware version such as 5.7.2")
    nums = [int(p) for p in parts] + [0] * (3 - len(parts))
    return (nums[0], nums[1], nums[2])


def version_text(v: Version | None) -> str:
    return "?" if v is None else f"{v[0]}.{v[1]}.{v[2]}"


def metadata_version(value: int) -> Version:
    """MDS authenticatorVersion as a firmware version. Vendors write it two ways: the CTAP
    firmwareVersion bytes (Yubico's 328706 = 0x050402 = 5.4.2), or decimal MMmmpp (50100 =
    5.1.0); a value below 0x10000 is read as the second."""
    if value >= 0x10000:
        return ((value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF)
    return (value // 10000, (value // 100) % 100, value % 100)


def _error(path: Path, where: str, problem: str) -> ConfigError:
    return ConfigError(
        f"{path} [{where}]: {problem}",
        hint="fix the advisory file (format in docs/inventory.md)",
    )


def _text(
    path: Path, where: str, data: Mapping[str, object], key: str, required: bool = True
) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise _error(path, where, f"{key} must be a non-empty string")
    return value.strip()


def _affects(path: Path, where: str, data: object) -> Affects:
    if not isinstance(data, dict):
        raise _error(path, where, "affects must be a table ([[advisory.affects]])")
    unknown = set(data) - {"models", "aaguids", "firmware_from", "firmware_below"}
    if unknown:
        raise _error(path, where, f"unknown key {sorted(unknown)[0]}")
    models = data.get("models", [])
    aaguids = data.get("aaguids", [])
    if not isinstance(models, list) or not all(isinstance(m, str) and m.strip() for m in models):
        raise _error(path, where, "models must be a list of model names")
    if not isinstance(aaguids, list) or not all(isinstance(a, str) for a in aaguids):
        raise _error(path, where, "aaguids must be a list of AAGUIDs")
    if not models and not aaguids:
        raise _error(path, where, "name the models or the AAGUIDs it affects")
    try:
        canonical = frozenset(str(uuid.UUID(a)) for a in aaguids)
        below = parse_version(_text(path, where, data, "firmware_below"))
        low = data.get("firmware_from")
        start = parse_version(low) if isinstance(low, str) else None
    except ValueError as e:
        raise _error(path, where, str(e)) from None
    if low is not None and not isinstance(low, str):
        raise _error(path, where, "firmware_from must be a version string")
    return Affects(tuple(m.strip() for m in models), canonical, start, below)


def load_advisories(path: str | Path) -> list[Advisory]:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {p}: {e.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{p} is larger than {MAX_FILE_BYTES} bytes")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{p} is not a UTF-8 TOML file: {e}") from None
    items = data.get("advisory")
    if set(data) - {"advisory"} or not isinstance(items, list) or not items:
        raise _error(p, "advisory", "the file holds [[advisory]] tables and nothing else")
    out: list[Advisory] = []
    seen: set[str] = set()
    for n, item in enumerate(items):
        where = f"advisory {n + 1}"
        if not isinstance(item, dict):
            raise _error(p, where, "each advisory is a table")
        unknown = set(item) - {"id", "vendor", "title", "url", "action", "affects"}
        if unknown:
            raise _error(p, where, f"unknown key {sorted(unknown)[0]}")
        ident = _text(p, where, item, "id")
        if ident in seen:
            raise _error(p, where, f"advisory {ident} is listed twice")
        seen.add(ident)
        url = _text(p, ident, item, "url")
        if not url.startswith("https://"):
            raise _error(p, ident, "url must be an https:// address")
        affects = item.get("affects")
        if not isinstance(affects, list) or not affects:
            raise _error(p, ident, "at least one [[advisory.affects]] block is needed")
        out.append(
            Advisory(
                id=ident,
                vendor=_text(p, ident, item, "vendor"),
                title=_text(p, ident, item, "title"),
                url=url,
                action=_text(p, ident, item, "action"),
                affects=tuple(
                    _affects(p, f"{ident} affects {i + 1}", a) for i, a in enumerate(affects)
                ),
            )
        )
    return out
