"""A private PostgreSQL server for tests and benchmarks: initdb in a temporary directory,
listening on 127.0.0.1 on a free port, trust authentication, stopped at the end.

Needs Debian's postgresql package (initdb/pg_ctl under /usr/lib/postgresql/N/bin). As root,
the server runs as the ``postgres`` system user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import uuid
from pathlib import Path


class PostgresUnavailable(Exception):
    pass


def _bindir() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if not found:
        raise PostgresUnavailable(
            "PostgreSQL server binaries not found (apt-get install postgresql)"
        )
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivatePostgres:
    def __init__(self, workdir: Path, *, fsync: bool = False) -> None:
        """``fsync`` False (tests): -F, no fsync; True (benchmarks): durable commits."""
        self.workdir = Path(workdir)
        self.fsync = fsync
        self.data = self.workdir / "data"
        self.port = _free_port()
        self.bindir = _bindir()
        self.as_root = os.geteuid() == 0
        self.started = False

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = list(args)
        if self.as_root:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.as_root:
            shutil.chown(self.workdir, "postgres", "postgres")
        init = self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        )
        if init.returncode:
            raise PostgresUnavailable(f"initdb failed: {init.stderr.strip()[-500:]}")
        self.start_again()

    def start_again(self) -> None:
        """Start the server on its existing data directory (after ``stop``), same port."""
        opts = (
            f"{'' if self.fsync else '-F '}-k {self.workdir} -p {self.port} "
            "-c listen_addresses=127.0.0.1 "
            "-c max_connections=200 -c shared_buffers=64MB"
        )
        started = self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.workdir / "log"),
            "-o",
            opts,
            "-w",
            "-t",
            "60",
            "start",
        )
        if started.returncode:
            log = (
                (self.workdir / "log").read_text()[-800:] if (self.workdir / "log").exists() else ""
            )
            raise PostgresUnavailable(f"pg_ctl start failed: {started.stderr.strip()} {log}")
        self.started = True

    def stop(self) -> None:
        if self.started:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
            self.started = False

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
