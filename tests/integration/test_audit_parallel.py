"""The audit's scan split across forked processes (a large registry) finds exactly what the
one-process scan finds, on SQLite and PostgreSQL; a process that fails or dies leaves the scan
to the parent; the parent's connections survive its children; and the scan's read-only
snapshot holds no writer lock on SQLite (writers go on while an audit reads)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from keyadmin.flows import audit as audit_flow
from keyadmin.policy.loader import load_policy
from keyadmin.policy.metadata import IndexMetadata
from keyadmin.store import estate, registry
from keyadmin.store.db import reading, transaction
from keyadmin.store.mds_index import MdsIndex
from tests.support.bulk import generate, lab_model, write_policy

A = "6b657961-646d-4e00-8000-0000000000a1"
B = "6b657961-646d-4e00-8000-0000000000b2"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path / 'registry.db'}"


def _findings(result: Any) -> list[tuple[str, str, str, str]]:
    return sorted((f.kind, f.subject, f.rule, f.severity) for f in result.findings)


def _audit(url: str, policy: Path, *, enforce: bool = False) -> Any:
    return audit_flow.audit(
        registry_url=url,
        policy=load_policy(policy),
        metadata=IndexMetadata(MdsIndex(url)),
        actor="auditor",
        enforce=enforce,
    )


def _parallel(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make every registry 'large' and record how many ranges each process scan returned
    (None: it fell back to the one-process scan)."""
    assert len(os.sched_getaffinity(0)) >= 2, "this test needs two CPUs (CI machines have two)"
    monkeypatch.setattr(audit_flow, "PARALLEL_FROM", 1)
    monkeypatch.setattr(audit_flow, "MAX_SCAN_WORKERS", 3)
    seen: list[int] = []
    real = audit_flow._scan_in_processes

    def spy(*args: Any) -> Any:
        parts = real(*args)
        seen.append(-1 if parts is None else len(parts))
        return parts

    monkeypatch.setattr(audit_flow, "_scan_in_processes", spy)
    return seen


def test_the_split_scan_finds_what_the_one_process_scan_finds(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = lab_model(A), lab_model(B)
    ids = generate(url, 41, [a, b], users=20)
    only_a = write_policy(tmp_path, [a], extra_roots=(b.root_file(tmp_path),), name="only-a")

    serial = _audit(url, only_a)
    seen = _parallel(monkeypatch)
    split = _audit(url, only_a)

    assert seen and seen[0] >= 2, f"the scan did not run in processes: {seen}"
    assert split.credentials_checked == serial.credentials_checked == 41
    assert split.evidence_groups == serial.evidence_groups == 2
    assert _findings(split) == _findings(serial)
    failing = {bytes.fromhex(f.subject) for f in split.findings if f.severity == "fail"}
    assert failing == set(ids[1::2])  # model B's, every one of them

    # the parent's engine and connections survived its children: it still writes
    enforced = _audit(url, only_a, enforce=True)
    assert {bytes.fromhex(c) for c in enforced.quarantined} == set(ids[1::2])
    with transaction(url) as s:
        status = {bytes.fromhex(c.credential_id): c.status for c in registry.list_credentials(s)}
    assert {c for c, st in status.items() if st == "quarantined"} == set(ids[1::2])


def _fails(job: Any) -> Any:
    """A scan process that fails (the registry went away, say)."""
    raise RuntimeError("boom")


def _dies(job: Any) -> Any:
    """A scan process that is killed."""
    os._exit(9)


@pytest.mark.parametrize("broken", [_fails, _dies], ids=["fails", "dies"])
def test_a_scan_process_that_fails_or_dies_leaves_the_scan_to_the_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broken: Any
) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    a, b = lab_model(A), lab_model(B)
    generate(url, 30, [a, b], users=10)
    only_a = write_policy(tmp_path, [a], extra_roots=(b.root_file(tmp_path),), name="only-a")
    serial = _audit(url, only_a)

    seen = _parallel(monkeypatch)
    monkeypatch.setattr(audit_flow, "_scan_range", broken)
    again = _audit(url, only_a)

    assert seen == [-1]  # the processes were tried and given up
    assert again.credentials_checked == 30 and again.evidence_groups == 2
    assert _findings(again) == _findings(serial)


def test_the_scan_snapshot_holds_no_writer_lock_on_sqlite(tmp_path: Path) -> None:
    """While an audit's read snapshot is open, another process enrols-like writes (a status
    change, logged) and commits; the snapshot keeps seeing what it saw."""
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    generate(url, 3, [lab_model(A)], users=3)
    with transaction(url) as s:
        first = registry.list_credentials(s)[0].credential_id
    writer = textwrap.dedent(
        f"""
        from keyadmin.store import registry
        from keyadmin.store.db import transaction
        with transaction({url!r}) as s:
            rid = next(c.id for c in registry.list_credentials(s)
                       if c.credential_id == {first!r})
            registry.change_status(s, rid, "suspend", reason="test", actor="other desk")
        print("committed")
        """
    )
    with reading(url) as reader:
        before = [r[0] for r in estate.iter_audit_rows(reader, ("active",))]
        done = subprocess.run(
            [sys.executable, "-c", writer],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,  # the writer waits up to 30 s for a lock before it fails
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert done.returncode == 0 and "committed" in done.stdout, done.stderr
        still = [r[0] for r in estate.iter_audit_rows(reader, ("active",))]
    assert len(before) == 3 and still == before  # its snapshot
    with reading(url) as reader:
        assert len(list(estate.iter_audit_rows(reader, ("active",)))) == 2
