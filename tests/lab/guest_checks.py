"""Runs INSIDE the hardware-lab guest, as root (PID 1's child): the software key served through
/dev/uhid, the real systemd-udevd with keyadmin's rule, keyadmin as an unprivileged operator, and
libfido2's command-line tools as a second, independent client.

It judges nothing: it records what each command did (exit code, output, file modes, udev
properties) in RESULTS/results.json, and the tests in tests/lab/ assert on it one by one.
Usage: guest_checks.py RESULTS_DIR
"""

from __future__ import annotations

import base64
import grp
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
KEYADMIN = str(REPO / ".venv" / "bin" / "keyadmin")
OUT = Path(sys.argv[1]) if sys.argv[1] != "--operator" else Path("/nonexistent")
RESULTS: dict[str, Any] = {}
USER, UID = "labop", 1500
HOME = Path("/home") / USER
PIN = "4821-lab"
ACTION = "lab.payout"


def save() -> None:
    tmp = OUT / "results.json.tmp"
    tmp.write_text(json.dumps(RESULTS, indent=1, sort_keys=True))
    tmp.replace(OUT / "results.json")


def record(name: str, **facts: Any) -> dict[str, Any]:
    facts["at"] = round(time.time() - RESULTS["started"], 2)  # seconds since the checks began
    RESULTS[name] = facts
    save()
    print(f"lab-guest: {name}: {json.dumps(facts)[:300]}", flush=True)
    return facts


def user_env() -> dict[str, str]:
    return {"HOME": str(HOME), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "USER": USER}


def run(
    name: str | None,
    argv: list[str],
    *,
    as_user: bool = True,
    stdin: str | None = None,
    timeout: float = 60,
    cwd: Path | None = None,
) -> dict[str, Any]:
    t0 = time.monotonic()
    kw: dict[str, Any] = {"cwd": cwd}
    if as_user:
        kw = {
            "user": UID,
            "group": UID,
            "extra_groups": [grp.getgrnam("plugdev").gr_gid],
            "env": user_env(),
            "cwd": str(HOME),
        }
    try:
        p = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, **kw)
        facts = {"argv": argv, "code": p.returncode, "stdout": p.stdout, "stderr": p.stderr}
    except subprocess.TimeoutExpired as e:
        facts = {"argv": argv, "code": None, "stdout": str(e.stdout), "stderr": "TIMEOUT"}
    facts["seconds"] = round(time.monotonic() - t0, 2)
    if name:
        record(name, **facts)
    return facts


def add_user() -> None:
    """An operator account in plugdev (on the guest's tmpfs overlay: the host is not touched)."""
    with open("/etc/passwd", "a") as f:
        f.write(f"{USER}:x:{UID}:{UID}:lab operator:{HOME}:/bin/sh\n")
    with open("/etc/group", "a") as f:
        f.write(f"{USER}:x:{UID}:\n")
    lines = Path("/etc/group").read_text().splitlines()
    lines = [
        (ln + ("," if not ln.endswith(":") else "") + USER) if ln.startswith("plugdev:") else ln
        for ln in lines
    ]
    Path("/etc/group").write_text("\n".join(lines) + "\n")
    HOME.mkdir(parents=True, mode=0o700)
    os.chown(HOME, UID, UID)


def reach_repo() -> None:
    """Let the operator reach the checkout and its Python: on this machine the interpreter lives
    under /root (mode 0700). Only the guest's overlay changes; the host is not touched."""
    for target in (REPO, Path(os.path.realpath(sys.executable))):
        for d in (target, *target.parents):
            mode = d.stat().st_mode
            if d.is_dir() and not mode & 0o001:
                os.chmod(d, (mode & 0o7777) | 0o001)


class Served:
    """`keyadmin sim serve --transport uhid` in the background; .node is its /dev/hidrawN."""

    def __init__(self, state: Path) -> None:
        self.proc = subprocess.Popen(
            [KEYADMIN, "sim", "serve", "--state", str(state), "--transport", "uhid"],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stderr is not None
        self.banner = self.proc.stderr.readline().strip()
        self.node = next((w for w in self.banner.split() if w.startswith("/dev/hidraw")), None)

    def settle(self) -> None:
        subprocess.run(["udevadm", "trigger", "--action=add", "--subsystem-match=hidraw"])
        subprocess.run(["udevadm", "settle", "--timeout=20"])

    def unplug(self, sig: int = signal.SIGTERM) -> dict[str, Any]:
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = None
        rest = self.proc.stderr.read() if self.proc.stderr else ""
        subprocess.run(["udevadm", "settle", "--timeout=20"])
        return {
            "serve_code": code,
            "serve_stderr": self.banner + "\n" + rest,
            "node_exists_after": bool(self.node and os.path.exists(self.node)),
        }


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def libfido2(node: str) -> None:
    """libfido2 on the node: getInfo, a credential and its attestation, an assertion."""
    run("fido2_token_L", ["fido2-token", "-L"])
    run("fido2_token_I", ["fido2-token", "-I", node])
    work = HOME / "fido2"
    work.mkdir()
    os.chown(work, UID, UID)
    rp = "libfido2.lab.example"
    cred_in = work / "cred.in"
    cred_in.write_text(
        "\n".join(
            [b64(hashlib.sha256(b"lab make").digest()), rp, "lab-user", b64(b"lab-user-id-0001")]
        )
        + "\n"
    )
    run(
        "fido2_cred_M", ["fido2-cred", "-M", "-i", str(cred_in), "-o", str(work / "cred.out"), node]
    )
    run(
        "fido2_cred_V",
        ["fido2-cred", "-V", "-i", str(work / "cred.out"), "-o", str(work / "cred.pub")],
    )
    lines = (work / "cred.pub").read_text().splitlines() if (work / "cred.pub").exists() else []
    cred_id = lines[0] if lines else ""
    (work / "pub.pem").write_text("\n".join(lines[1:]) + "\n")
    assert_in = work / "assert.in"
    assert_in.write_text("\n".join([b64(hashlib.sha256(b"lab get").digest()), rp, cred_id]) + "\n")
    run(
        "fido2_assert_G",
        ["fido2-assert", "-G", "-i", str(assert_in), "-o", str(work / "assert.out"), node],
    )
    run(
        "fido2_assert_V",
        ["fido2-assert", "-V", "-i", str(work / "assert.out"), str(work / "pub.pem"), "es256"],
    )
    # a tampered assertion must NOT verify: the check above can fail
    out = (work / "assert.out").read_text().splitlines() if (work / "assert.out").exists() else []
    if len(out) >= 4:
        sig = bytearray(base64.b64decode(out[3]))
        sig[-1] ^= 1
        out[3] = b64(bytes(sig))
        (work / "assert.bad").write_text("\n".join(out) + "\n")
        run(
            "fido2_assert_V_tampered",
            ["fido2-assert", "-V", "-i", str(work / "assert.bad"), str(work / "pub.pem"), "es256"],
        )


def libfido2_with_pin(node: str) -> None:
    """libfido2 again once keyadmin set a PIN: user verification through its own clientPIN code
    (the PIN on stdin: the tools read it from there when there is no terminal)."""
    work = HOME / "fido2"
    run("fido2_token_I_pin", ["fido2-token", "-I", node])
    run("fido2_cred_M_uv", ["fido2-cred", "-M", "-v", "-i", str(work / "cred.in"),
                            "-o", str(work / "uv.out"), node], stdin=f"{PIN}\n")  # fmt: skip
    run("fido2_cred_V_uv", ["fido2-cred", "-V", "-v", "-i", str(work / "uv.out"),
                            "-o", str(work / "uv.pub")])  # fmt: skip
    lines = (work / "uv.pub").read_text().splitlines() if (work / "uv.pub").exists() else [""]
    (work / "uv.pem").write_text("\n".join(lines[1:]) + "\n")
    (work / "uv.in").write_text("\n".join([
        b64(hashlib.sha256(b"lab uv").digest()), "libfido2.lab.example", lines[0]
    ]) + "\n")  # fmt: skip
    run("fido2_assert_G_uv", ["fido2-assert", "-G", "-v", "-i", str(work / "uv.in"),
                              "-o", str(work / "uv.assert"), node], stdin=f"{PIN}\n")  # fmt: skip
    run("fido2_assert_V_uv", ["fido2-assert", "-V", "-v", "-i", str(work / "uv.assert"),
                              str(work / "uv.pem"), "es256"])  # fmt: skip
    run("fido2_token_L_r", ["fido2-token", "-L", "-r", node], stdin=f"{PIN}\n")
    # a discoverable EdDSA credential: made, its attestation verified, listed, deleted
    rk_in = work / "rk.in"
    rk_in.write_text("\n".join([
        b64(hashlib.sha256(b"lab rk").digest()), "rk.lab.example", "rk-user", b64(b"rk-user-id")
    ]) + "\n")  # fmt: skip
    made = ["fido2-cred", "-M", "-r", "-v", "-i", str(rk_in), "-o", str(work / "rk.out")]
    run("fido2_cred_M_rk_eddsa", [*made, node, "eddsa"], stdin=f"{PIN}\n")
    run("fido2_cred_V_rk_eddsa", ["fido2-cred", "-V", "-v", "-i", str(work / "rk.out"),
                                  "-o", str(work / "rk.pub"), "eddsa"])  # fmt: skip
    rk_id = (work / "rk.pub").read_text().split("\n", 1)[0] if (work / "rk.pub").exists() else ""
    record("fido2_rk_id", id=rk_id)
    run("fido2_token_L_k", ["fido2-token", "-L", "-k", "rk.lab.example", node], stdin=f"{PIN}\n")
    run("fido2_token_D", ["fido2-token", "-D", "-i", rk_id, node], stdin=f"{PIN}\n")
    run("fido2_token_L_k_after", ["fido2-token", "-L", "-k", "rk.lab.example", node],
        stdin=f"{PIN}\n")  # fmt: skip


def node_facts(node: str) -> dict[str, Any]:
    st = os.stat(node)
    props = subprocess.run(
        ["udevadm", "info", "--query=property", "--name", node], capture_output=True, text=True
    ).stdout
    return {
        "node": node,
        "mode": oct(st.st_mode & 0o777),
        "uid": st.st_uid,
        "group": grp.getgrgid(st.st_gid).gr_name,
        "properties": props,
    }


def keyadmin_flows(keys: Path, node: str) -> None:
    lab = HOME / "lab"
    lab.mkdir(mode=0o700)
    shutil.copy(REPO / "policies" / "lab-softkey.toml", lab / "lab-softkey.toml")
    shutil.copy(keys / "lab-root.pem", lab / "lab-root.pem")
    shutil.copy(keys / "receipt.pem", lab / "receipt.pem")
    for p in (lab, *lab.iterdir()):
        os.chown(p, UID, UID)
    policy, db = str(lab / "lab-softkey.toml"), f"sqlite:///{lab / 'registry.db'}"
    run("doctor_ok", [KEYADMIN, "doctor", "--json", "--db", db])
    os.chmod(node, 0o600)
    run("doctor_unreadable", [KEYADMIN, "doctor", "--json", "--db", db])
    os.chmod(node, 0o660)
    # One operator process runs the rest through keyadmin's own app (as tests/e2e do): the imports
    # (~600 modules) are paid once instead of five times, which is most of the emulated time.
    batch = HOME / "operator.json"
    run("operator_batch", [sys.executable, __file__, "--operator", str(batch), policy, db])
    if batch.exists():
        for name, facts in json.loads(batch.read_text()).items():
            record(name, **facts)


def operator_batch(out: Path, policy: str, db: str) -> None:
    """As the operator: device list/info (no --device), prepare, enrol, step-up, in-process."""
    from typer.testing import CliRunner

    from keyadmin.cli.main import app

    receipt = str(HOME / "lab" / "receipt.pem")  # made on the host, unencrypted
    steps = [
        ("device_list", ["device", "list", "--json"], None),
        ("device_info", ["device", "info", "--json"], None),
        ("device_prepare", ["device", "prepare", "--policy", policy, "--db", db, "--json"], PIN),
        ("enrol", ["enrol", "alice", "--policy", policy, "--db", db, "--json"], PIN),
        ("step_up", ["step-up", "alice", "--action", ACTION, "--policy", policy,
                     "--receipt-key", receipt, "--db", db, "--json"], PIN),
    ]  # fmt: skip
    done: dict[str, Any] = {}
    for name, args, pin in steps:
        t0 = time.monotonic()
        r = CliRunner().invoke(app, args, input=f"{pin}\n" if pin else None)
        crash = repr(r.exception) if r.exit_code and r.exception else None
        done[name] = {"argv": ["keyadmin", *args], "code": r.exit_code, "stdout": r.stdout,
                      "stderr": r.stderr, "seconds": round(time.monotonic() - t0, 2),
                      "exception": crash}  # fmt: skip
        out.write_text(json.dumps(done))
    done["ctaphid_ping"] = ping_max(done["device_list"]["stdout"])
    out.write_text(json.dumps(done))


def ping_max(listed: str) -> dict[str, Any]:
    """CTAPHID PINGs through the kernel: 1886 bytes (32 reports, what uhid's output queue holds)
    and 7609 bytes (129 reports, the longest message)."""
    from fido2.ctap import CtapError
    from fido2.hid import CTAPHID, open_device

    facts: dict[str, Any] = {"code": 0}
    try:
        node = json.loads(listed)[0]["device"].removeprefix("hid:")
        dev = open_device(node)
        for size in (1886, 7609):
            data = os.urandom(size)
            got: dict[str, str] = {}

            def ping(data: bytes = data, got: dict[str, str] = got) -> None:
                try:
                    got["r"] = "equal" if dev.call(CTAPHID.PING, data) == data else "DIFFERENT"
                except CtapError as e:
                    got["r"] = f"CtapError {e.code.name}"

            t = threading.Thread(target=ping, daemon=True)
            t.start()
            t.join(10)  # bounded: the batch must not hang on one message
            facts[str(size)] = got.get("r", "no answer in 10 s")
            if t.is_alive():
                break
    except Exception as e:  # recorded, judged by the test
        facts.update(code=1, stderr=repr(e))
    return facts


def pulled_mid_command(keys: Path) -> None:
    """A key whose getInfo takes 60 s; its uhid device is destroyed while `device info` waits."""
    served = Served(keys / "slow.key")
    served.settle()
    t0 = time.monotonic()
    cmd = subprocess.Popen(
        [KEYADMIN, "device", "info", "--json"],
        user=UID,
        group=UID,
        extra_groups=[grp.getgrnam("plugdev").gr_gid],
        env=user_env(),
        cwd=str(HOME),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until_open(cmd.pid, served.node)
    time.sleep(1.0)  # INIT and getInfo follow the open within milliseconds; getInfo takes 60 s
    running_at_pull = cmd.poll() is None
    gone = served.unplug(signal.SIGKILL)  # the abrupt pull: the kernel destroys the device
    try:
        stdout, stderr = cmd.communicate(timeout=40)
        code: int | None = cmd.returncode
    except subprocess.TimeoutExpired:
        cmd.kill()
        stdout, stderr = cmd.communicate()
        code = None
    record(
        "pulled_mid_command",
        code=code,
        stdout=stdout,
        stderr=stderr,
        running_at_pull=running_at_pull,
        seconds=round(time.monotonic() - t0, 2),
        node=served.node,
        **gone,
    )


def wait_until_open(pid: int, node: str | None, timeout: float = 40) -> None:
    """Until process ``pid`` holds ``node`` open (python's start-up is slow under emulation)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if any(
                os.readlink(f"/proc/{pid}/fd/{fd}") == node for fd in os.listdir(f"/proc/{pid}/fd")
            ):
                return
        except OSError:
            pass
        time.sleep(0.1)


class Replug:
    """The device suite's power switch (its `--controller` interface, answered by
    tests/support/fido2_suite.PowerController): off unplugs the key (SIGTERM to `sim serve`, the
    node disappears), on serves the same state file again as a new uhid device. `start` returns
    at once (the suite's HTTP call times out after 5 s; `sim serve` starts slower under emulation):
    the suite itself waits for the new hidraw node."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.proc: subprocess.Popen[str] | None = None
        self.starts = self.stops = 0
        self.stderr = ""

    def start(self) -> None:
        if self.proc is None:
            argv = [KEYADMIN, "sim", "serve", "--state", str(self.state), "--transport", "uhid"]
            self.proc = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
            )
            self.starts += 1

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        self.stderr += err
        self.stops += 1


def fido2_device_suite(keys: Path) -> None:
    """python-fido2's own device tests (test_hid.py, test_info.py of the fido2 sdist, unmodified)
    in one pytest, as root, against a fresh key on the hidraw node: with no --reader the suite
    picks the one FIDO HID device; it unplugs and re-plugs the key through --controller for its
    closing factory reset."""
    where = keys / "fido2-suite.txt"
    if not where.exists():
        missing = keys / "fido2-suite-missing.txt"
        record("fido2_device_suite", missing=missing.read_text() if missing.exists() else "?")
        return
    sys.path.insert(0, str(REPO))
    from tests.support.fido2_suite import PowerController, parse_junit

    root = Path(where.read_text().strip())
    junit = Path("/root/fido2-device-suite.xml")
    t0 = time.monotonic()
    power = Replug(keys / "suite.key")
    power.start()
    with PowerController(power) as controller:  # type: ignore[arg-type]
        argv = [sys.executable, "-m", "pytest", "tests/device/test_hid.py",
                "tests/device/test_info.py", "--controller", controller.url,
                # hypothesis's plugin (installed for keyadmin's tests) costs ~15 s to import here
                "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-rfEsxX",
                "--junitxml", str(junit),
                "-o", "junit_family=xunit2"]  # fmt: skip
        ran = run(None, argv, as_user=False, timeout=90, cwd=root)
        calls = list(controller.calls)
    power.stop()
    facts: dict[str, Any] = {"code": ran["code"], "output": (ran["stdout"] + ran["stderr"])[-6000:],
                             "pytest_seconds": ran["seconds"], "controller_calls": calls,
                             "starts": power.starts, "stops": power.stops,
                             "serve_stderr": power.stderr[-2000:]}  # fmt: skip
    if junit.exists():
        result = parse_junit(junit)
        facts.update(passed=result.passed, failed=result.failed, errors=result.errors,
                     skipped=result.skipped, xfailed=result.xfailed)  # fmt: skip
    facts["seconds"] = round(time.monotonic() - t0, 2)
    record("fido2_device_suite", **facts)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    RESULTS["started"] = time.time()
    record("kernel", release=os.uname().release)
    run(None, ["ip", "link", "set", "lo", "up"], as_user=False)  # the suite's controller URL
    run("modprobe", ["modprobe", "-a", "uhid", "hid-generic"], as_user=False)
    record("dev_uhid", exists=os.path.exists("/dev/uhid"))
    run("udevd", ["/lib/systemd/systemd-udevd", "--daemon"], as_user=False)
    run(None, ["udevadm", "control", "--ping", "--timeout=20"], as_user=False)
    run("pcscd", ["pcscd"], as_user=False)  # for doctor's pcsc check (the guest's own daemon)
    add_user()
    reach_repo()
    keys = Path("/root/keys")  # made on the host by tests/lab/conftest.py (saves emulated time)
    shutil.copytree(OUT / "input", keys)
    served = Served(keys / "lab.key")
    record("serve", banner=served.banner, node=served.node, running=served.proc.poll() is None)
    if not served.node:
        return
    served.settle()
    record("udev_node_without_rule", **node_facts(served.node))  # the control
    Path("/etc/udev/rules.d").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "udev" / "70-keyadmin-fido.rules", "/etc/udev/rules.d/")
    run(None, ["udevadm", "control", "--reload"], as_user=False)
    served.settle()
    record("udev_node", **node_facts(served.node))
    libfido2(served.node)
    keyadmin_flows(keys, served.node)
    libfido2_with_pin(served.node)
    record("unplug", **served.unplug())
    pulled_mid_command(keys)
    fido2_device_suite(keys)


if __name__ == "__main__":
    if sys.argv[1] == "--operator":
        operator_batch(Path(sys.argv[2]), sys.argv[3], sys.argv[4])
        sys.exit(0)
    try:
        main()
    finally:
        RESULTS["finished"] = time.time()
        save()
