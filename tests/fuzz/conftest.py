"""The fuzz suite's budget and its lab: one software key enrolled for alice, a registry, a
receipt key and a log key, made once and copied into each example's own directory."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings

from tests.fuzz.hostile import SHARED, make_files
from tests.fuzz.runner import run_cli
from tests.support import pristine

pristine.start()

#: The budget: examples per fuzz test (CI runs the default; raise it for a deeper search).
EXAMPLES = int(os.environ.get("KEYADMIN_FUZZ_EXAMPLES", "0")) or None


def budget(default: int) -> settings:
    """Fixed and reproducible: the same examples every run (derandomize), no shrinking (a
    timed-out example would be re-run many times), no database of old failures."""
    return settings(
        max_examples=EXAMPLES or default,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )


PIN = "4821-lab"
STDIN = f"{PIN}\n" * 8


class Lab:
    """A directory holding a working set-up; ``example()`` copies it for one example."""

    def __init__(self, template: Path, base: Path) -> None:
        self.template = template
        self.base = base

    def example(self, **extra_env: str) -> tuple[Path, dict[str, str]]:
        where = Path(tempfile.mkdtemp(dir=self.base))
        shutil.rmtree(where)
        shutil.copytree(self.template, where, symlinks=True)
        make_files(where)
        return where, {**env_for(where), **extra_env}

    def discard(self, where: Path) -> None:
        shutil.rmtree(where, ignore_errors=True)


def env_for(where: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(where),
        "KEYADMIN_HOME": str(where / "home"),
        "XDG_DATA_HOME": str(where / "xdg"),
        # never the system's PC/SC service: a socket that does not exist
        "PCSCLITE_CSOCK_NAME": str(where / "no-pcscd.comm"),
        "KEYADMIN_OPERATOR": "fuzz",
        "KEYADMIN_MDS_DEADLINE": "10",
    }


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    from tests.integration.test_stepup_support import make_lab

    template = tmp_path_factory.mktemp("fuzz-template")
    home = template / "home"
    home.mkdir(mode=0o700)
    (template / "lab").mkdir()
    made = make_lab(template / "lab", f"sqlite:///{home / 'keyadmin.db'}")
    shutil.move(made.keys["alice"], template / "alice.key")
    env = env_for(template)
    roots = SHARED / "mds" / "roots"
    for argv in (
        ["receipt", "keygen", "--receipt-key", "receipt-key.pem", "--no-passphrase"],
        ["log", "keygen", "--log-key", "log-key.pem", "--no-passphrase"],
        # real metadata, so that mds, policy and audit commands get past "no metadata"
        [
            "mds",
            "import",
            str(SHARED / "mds" / "mds-blob-prod-no9-2021-12-01.jwt"),
            "--trust-root",
            str(roots / "globalsign_root_ca_r3.pem"),
            "--allow-missing-crl",
            "--at",
            "2021-12-02T00:00:00Z",
        ],
    ):
        done = run_cli(argv, env=env, cwd=str(template))
        assert done.code == 0, done.describe()
    shutil.copy(SHARED / "mds" / "mds-blob-conformance-no42-nextUpdate-2022-11-09.jwt",
                template / "blob.jwt")  # fmt: skip
    shutil.copy(SHARED / "mds" / "mds-blob-prod-no9-2021-12-01.jwt", template / "blob2.jwt")
    record = json.loads((SHARED / "attestations" / "fidomds-yubikey_5_nfc.json").read_text())
    (template / "att.json").write_text(json.dumps(record))
    base = tmp_path_factory.mktemp("fuzz-examples")
    yield Lab(template, base)
