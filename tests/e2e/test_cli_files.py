"""Files keyadmin writes and trusts (adversarial review, item 3): planted symlinks are not
followed, directories and files another user owns or can write are refused (the tests run
as root, so os.chown hands them to another uid), writes are atomic, and no core dump can
carry a PIN. Real files, real processes."""

from __future__ import annotations

import os
import resource
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keyadmin.store.db import dispose_all, get_engine
from tests.e2e.cli import invoke

STRANGER = 4242  # a uid that is not ours


def _as_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("these tests hand files to another uid: run them as root")
        pytest.skip("needs root to chown files to another uid")


def test_keygen_does_not_follow_a_symlink_planted_at_its_temp_path(tmp_path: Path) -> None:
    keydir = tmp_path / "keys"
    keydir.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (keydir / "receipt-key.pem.tmp").symlink_to(victim)
    (keydir / "absent-victim").symlink_to(tmp_path / "created-by-keyadmin")
    out = invoke("receipt", "keygen", "--receipt-key", str(keydir / "receipt-key.pem"),
                 "--no-passphrase", "--json")  # fmt: skip
    assert out.code == 0, out.stderr
    assert victim.read_text() == "precious\n"
    key = keydir / "receipt-key.pem"
    st = key.lstat()
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert b"PRIVATE KEY" in key.read_bytes()
    assert not [p.name for p in keydir.iterdir() if p.name.endswith(".tmp") and not p.is_symlink()]


def test_keygen_force_replaces_a_symlink_at_the_key_path_not_its_target(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    key = tmp_path / "k.pem"
    key.symlink_to(victim)
    out = invoke("receipt", "keygen", "--receipt-key", str(key), "--no-passphrase", "--force")
    assert out.code == 0, out.stderr
    assert victim.read_text() == "precious\n" and not key.is_symlink()


def test_a_data_directory_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    _as_root()
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    os.chown(home, STRANGER, STRANGER)
    out = invoke("creds", "list", env={"KEYADMIN_HOME": str(home)})
    assert out.code == 1, out.stdout + out.stderr
    assert f"owned by uid {STRANGER}" in out.stderr and str(home) in out.stderr
    assert not (home / "keyadmin.db").exists()
    keygen = invoke("receipt", "keygen", "--no-passphrase", env={"KEYADMIN_HOME": str(home)})
    assert keygen.code == 1 and not (home / "receipt-key.pem").exists()


def test_a_data_directory_under_a_writable_parent_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # no sticky bit: anyone could rename our directory away
    out = invoke("creds", "list", env={"KEYADMIN_HOME": str(shared / "home")})
    assert out.code == 1 and "writable by others" in out.stderr and str(shared) in out.stderr
    real = shared / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)  # a symlinked home: its real parents count
    linked = invoke("creds", "list", env={"KEYADMIN_HOME": str(tmp_path / "link")})
    assert linked.code == 1 and "writable by others" in linked.stderr
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)  # like /tmp: fine
    ok = invoke("creds", "list", env={"KEYADMIN_HOME": str(sticky / "home")})
    assert ok.code == 0, ok.stderr


@pytest.mark.parametrize("mode", [0o660, 0o606, 0o666])
def test_a_registry_file_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    db = tmp_path / "registry.db"
    url = f"sqlite:///{db}"
    get_engine(url)  # a new registry (read commands never create one)
    dispose_all()  # as a new process would: no engine cached for this URL
    db.chmod(mode)
    out = invoke("creds", "list", "--db", url)
    assert out.code == 1 and "writable by others" in out.stderr and str(db) in out.stderr
    assert stat.S_IMODE(db.stat().st_mode) == mode  # not silently "fixed"


def test_a_registry_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    _as_root()
    db = tmp_path / "registry.db"
    url = f"sqlite:///{db}"
    get_engine(url)  # a new registry (read commands never create one)
    dispose_all()
    os.chown(db, STRANGER, STRANGER)
    out = invoke("creds", "list", "--db", url)
    assert out.code == 1 and f"owned by uid {STRANGER}" in out.stderr


def test_a_registry_path_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.db"
    link = tmp_path / "registry.db"
    link.symlink_to(elsewhere)
    out = invoke("creds", "list", "--db", f"sqlite:///{link}")
    assert out.code == 1 and "symbolic link" in out.stderr and not elsewhere.exists()


def test_a_receipt_public_key_others_can_write_is_refused(tmp_path: Path) -> None:
    """Whoever can replace the public key can make the verifier accept their receipts."""
    key = tmp_path / "k.pem"
    assert invoke("receipt", "keygen", "--receipt-key", str(key), "--no-passphrase").code == 0
    pub = tmp_path / "k.pub.pem"
    pub.chmod(0o666)
    out = invoke("receipt", "verify", "a.b.c", "--action", "x", "--public-key", str(pub))
    assert out.code == 1 and "writable by others" in out.stderr


def test_software_key_state_is_written_atomically_and_privately(tmp_path: Path) -> None:
    from keyadmin.errors import StateFileError
    from keyadmin.sim.authenticator import SoftKey

    state = tmp_path / "k.key"
    SoftKey.create(state)
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["k.key"]  # no temporary left behind
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(StateFileError, match="writable by others"):
        SoftKey.create(shared / "k.key")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    from keyadmin.errors import ConfigError
    from keyadmin.files import write_atomic

    target = tmp_path / "target"
    target.mkdir()  # rename over a directory fails after the temporary file was written
    with pytest.raises(ConfigError, match="unchanged"):
        write_atomic(target, b"new")
    assert target.is_dir() and [p.name for p in tmp_path.iterdir()] == ["target"]
    keep = tmp_path / "keep"
    write_atomic(keep, b"one")
    write_atomic(keep, b"two")
    assert keep.read_bytes() == b"two" and stat.S_IMODE(keep.stat().st_mode) == 0o600


def _core_limit(pid: int) -> tuple[str, str]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            soft, hard = line.split()[4:6]
            return soft, hard
    raise AssertionError("no core limit line")


def _limits_while_waiting(args: list[str]) -> tuple[tuple[str, str], tuple[str, str], str]:
    """Start keyadmin with cores allowed (soft = hard), wait until it blocks for the secret
    on stdin (or 30 s), return its core limits at start and while waiting. Runs in a child
    of the pristine forkserver, so the hard limit is the session's, not one keyadmin lowered
    in this pytest process."""
    exe = os.path.join(os.path.dirname(sys.executable), "keyadmin")

    def cores_allowed() -> None:
        hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
        resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))

    env = {k: v for k, v in os.environ.items() if k != "KEYADMIN_RECEIPT_PASSPHRASE"}
    proc = subprocess.Popen(
        [exe, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=cores_allowed, env=env,
    )  # fmt: skip
    try:
        first = _core_limit(proc.pid)
        deadline = time.monotonic() + 30
        while _core_limit(proc.pid) != ("0", "0") and time.monotonic() < deadline:
            if proc.poll() is not None:
                return first, ("exited", str(proc.returncode)), proc.stderr.read().decode()
            time.sleep(0.05)
        waiting = _core_limit(proc.pid)
        return first, waiting, "alive" if proc.poll() is None else "exited"
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("command", ["pin", "passphrase"])
def test_no_core_dumps_while_a_secret_is_asked_for(tmp_path: Path, command: str) -> None:
    from keyadmin.sim.authenticator import SoftKey
    from tests.support import pristine

    if not Path("/proc/self/limits").exists():
        pytest.skip("needs /proc (Linux)")
    if pristine.call(resource.getrlimit, resource.RLIMIT_CORE)[1] == 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the session started with a hard core limit of 0: nothing to test")
        pytest.skip("this session started with a hard core limit of 0: nothing to lower")
    state = tmp_path / "k.key"
    SoftKey.create(state)
    args = {
        "pin": ["device", "pin", "verify", "-d", f"sim:{state}"],
        "passphrase": ["receipt", "keygen", "--receipt-key", str(tmp_path / "r.pem")],
    }[command]
    first, waiting, status = pristine.call(_limits_while_waiting, args)
    assert first != ("0", "0"), "the child started with cores off: the test proves nothing"
    assert waiting == ("0", "0") and status == "alive", (first, waiting, status)


def test_a_missing_directory_is_a_declared_error(tmp_path) -> None:
    """Found while benchmarking: a state file in a directory that does not exist ended in
    'unexpected FileNotFoundError'. It is a declared error naming the directory."""
    from tests.e2e.cli import invoke

    out = invoke("sim", "init", "--state", str(tmp_path / "no" / "such" / "key.json"))
    assert out.code == 1, out.stderr
    assert "does not exist" in out.stderr and "unexpected" not in out.stderr
