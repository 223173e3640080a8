"""Run a private pcscd with the vpcd reader driver, for tests, benches and demos.

pcscd reads its reader list from a configuration directory; ``pcscd -c DIR``
replaces the system's ``/etc/reader.conf.d``, so the private daemon loads only
our vpcd reader (listening on our TCP port for :class:`keyadmin.sim.pcsc.VirtualCard`).
pcscd's socket is fixed at ``/run/pcscd/pcscd.comm``: only one pcscd can run
per machine, and :class:`PrivatePcscd` refuses to start next to another one.

Debian's vpcd driver serves two card slots per reader entry: slot 0 on the
configured port and slot 1 on port + 1. pcscd names them ``"<name> 00 00"``
and ``"<name> 00 01"``; :attr:`PrivatePcscd.card_reader` is the slot-0 name,
the reader a :class:`~keyadmin.sim.pcsc.VirtualCard` on ``port`` appears in.

Typical use::

    with PrivatePcscd(port=35963) as daemon:
        card = VirtualCard(softkey, port=daemon.port)
        card.start()
        wait_for_card(daemon.reader_name, timeout=10)
        ...
        card.stop()

Needs (Debian): ``pcscd``, ``vsmartcard-vpcd``, and pyscard
(``pip install 'keyadmin[pcsc]'``) for :func:`wait_for_card`.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import ModuleType, TracebackType
from typing import IO

from keyadmin.errors import KeyadminError

logger = logging.getLogger(__name__)

VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
PCSCD_RUN_DIR = Path("/run/pcscd")
PCSCD_SOCKET = PCSCD_RUN_DIR / "pcscd.comm"
PCSCD_PIDFILE = PCSCD_RUN_DIR / "pcscd.pid"
DEFAULT_PORT = 35963
DEFAULT_READER_NAME = "keyadmin SoftKey vpcd"


class PcscdError(KeyadminError):
    """The private pcscd cannot run, or the card does not show up."""


class PcscdMissing(PcscdError):
    """pcscd, the vpcd driver or pyscard is not installed."""


class PcscdAlreadyRunning(PcscdError):
    """Another pcscd owns /run/pcscd; only one can run per machine."""


class PcscdStartFailed(PcscdError):
    """pcscd exited or never became ready."""


class CardWaitTimeout(PcscdError):
    """The card did not appear (or disappear) in time."""


def find_pcscd() -> str:
    """Path of the pcscd binary, or :class:`PcscdMissing` naming the package."""
    found = shutil.which("pcscd") or next(
        (p for p in ("/usr/sbin/pcscd", "/sbin/pcscd") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise PcscdMissing(
            "pcscd is not installed",
            hint="install it: sudo apt-get install pcscd",
        )
    return found


def find_vpcd_driver() -> Path:
    """Path of the vpcd reader driver, or :class:`PcscdMissing` naming the package."""
    if not VPCD_DRIVER.exists():
        raise PcscdMissing(
            f"the vpcd reader driver {VPCD_DRIVER} is missing",
            hint="install it: sudo apt-get install vsmartcard-vpcd",
        )
    return VPCD_DRIVER


def _import_scard() -> ModuleType:
    """pyscard's scard module (untyped: its attributes are what pyscard's SWIG binding makes)."""
    try:
        from smartcard import scard
    except ImportError:
        raise PcscdMissing(
            "pyscard is not installed",
            hint=(
                "install it: pip install 'keyadmin[pcsc]' (it compiles: "
                "sudo apt-get install swig libpcsclite-dev gcc pkg-config python3-dev)"
            ),
        ) from None
    return scard


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_pcscd() -> str | None:
    """Describe the pcscd that already owns /run/pcscd, or None when there is none.

    A pcscd answers on its socket (so does systemd's ``pcscd.socket``, which starts
    pcscd on demand); a live PID in the PID file counts as well.
    """
    if PCSCD_SOCKET.exists():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(str(PCSCD_SOCKET))
        except OSError:
            pass  # stale socket file: nothing listens
        else:
            return f"something listens on {PCSCD_SOCKET}"
        finally:
            probe.close()
    try:
        pid = int(PCSCD_PIDFILE.read_text().strip())
    except (OSError, ValueError):
        return None
    if _pid_alive(pid):
        return f"pcscd PID {pid} (from {PCSCD_PIDFILE})"
    return None


def write_reader_config(config_dir: Path, reader_name: str, port: int) -> Path:
    """Write the vpcd reader file pcscd reads with ``-c config_dir``."""
    if not 0 < port < 0xFFFF:
        raise ValueError(f"port {port} is not a TCP port")
    if '"' in reader_name or "\n" in reader_name:
        raise ValueError("the reader name cannot contain quotes or newlines")
    driver = find_vpcd_driver()
    from keyadmin.files import write_atomic

    config_dir.mkdir(parents=True, exist_ok=True)
    path = config_dir / "vpcd"
    text = (
        f'FRIENDLYNAME "{reader_name}"\n'
        f"DEVICENAME   /dev/null:0x{port:04X}\n"
        f"LIBPATH      {driver}\n"
        f"CHANNELID    0x{port:04X}\n"
    )
    write_atomic(path, text.encode(), 0o644)
    return path


class PrivatePcscd:
    """A pcscd process that this program starts, owns and stops.

    ``start()`` waits until the daemon lists the vpcd reader; ``stop()`` sends
    SIGTERM and waits (SIGKILL would leave a stale /run/pcscd behind).
    pcscd's own log goes to ``log_path`` (``debug=True`` makes it verbose).
    """

    def __init__(
        self,
        *,
        port: int = DEFAULT_PORT,
        reader_name: str = DEFAULT_READER_NAME,
        workdir: Path | None = None,
        debug: bool = False,
    ) -> None:
        self.port = port
        self.reader_name = reader_name
        self.debug = debug
        self._own_workdir = workdir is None
        self.workdir = (
            Path(workdir)
            if workdir is not None
            else Path(tempfile.mkdtemp(prefix="keyadmin-pcscd-"))
        )
        self.config_dir = self.workdir / "reader.conf.d"
        self.log_path = self.workdir / "pcscd.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.slot_readers: list[str] = []  # PC/SC names of the vpcd slots, slot 0 first

    def __repr__(self) -> str:
        state = f"pid {self._proc.pid}" if self.running and self._proc else "stopped"
        return f"PrivatePcscd(port={self.port}, {state})"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def card_reader(self) -> str:
        """The PC/SC name of vpcd's slot 0, where a virtual card on :attr:`port` shows up."""
        if not self.slot_readers:
            raise PcscdStartFailed("the private pcscd is not started")
        return self.slot_readers[0]

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start pcscd and wait until it lists the vpcd reader."""
        if self.running:
            raise PcscdStartFailed("this private pcscd is already running")
        binary = find_pcscd()
        write_reader_config(self.config_dir, self.reader_name, self.port)
        other = running_pcscd()
        if other:
            raise PcscdAlreadyRunning(
                f"another pcscd is running ({other}); only one pcscd can run per machine",
                hint=(
                    "stop it first (with systemd: sudo systemctl stop pcscd.socket pcscd.service), "
                    "or use that pcscd with the vpcd reader from /etc/reader.conf.d"
                ),
            )
        self._check_port_free()
        args = [binary, "--foreground", "--config", str(self.config_dir)]
        if self.debug:
            args.append("--debug")
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        self._log = os.fdopen(os.open(self.log_path, flags, 0o600), "ab")  # closed in stop()
        logger.info("starting %s (log %s)", " ".join(args), self.log_path)
        self._proc = subprocess.Popen(  # noqa: S603 (fixed argument list, no shell)
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a terminal's Ctrl-C is ours to handle, then stop()
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _check_port_free(self) -> None:
        for port in (self.port, self.port + 1):  # vpcd's two slots
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(("0.0.0.0", port))  # noqa: S104 (vpcd binds all addresses too)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise PcscdStartFailed(
                        f"TCP port {port} (for the vpcd reader's slots on {self.port} and "
                        f"{self.port + 1}) is already in use",
                        hint="choose another port, or stop the program that holds it",
                    ) from None
                raise
            finally:
                probe.close()

    def _wait_ready(self, timeout: float) -> None:
        scard = _import_scard()
        deadline = time.monotonic() + timeout
        assert self._proc is not None
        while True:
            if self._proc.poll() is not None:
                raise PcscdStartFailed(
                    f"pcscd exited with status {self._proc.returncode} at start",
                    hint=(
                        f"pcscd needs write access to {PCSCD_RUN_DIR} (root on Debian); "
                        f"see its log: {self.log_path}\n{self.log_tail()}"
                    ),
                )
            ours = sorted(r for r in _list_readers(scard) if r.startswith(self.reader_name + " "))
            if ours:
                self.slot_readers = ours
                logger.info("pcscd PID %d is up with readers %s", self._proc.pid, ours)
                return
            if time.monotonic() >= deadline:
                raise PcscdStartFailed(
                    f"pcscd did not list the reader {self.reader_name!r} within {timeout:.0f} s",
                    hint=f"see its log: {self.log_path}\n{self.log_tail()}",
                )
            try:  # wait for its exit, at most a short poll interval
                self._proc.wait(0.05)
            except subprocess.TimeoutExpired:
                pass

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then wait. SIGKILL only as a last resort (it leaves /run/pcscd stale)."""
        proc, self._proc = self._proc, None
        self.slot_readers = []
        try:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    logger.warning("pcscd PID %d ignored SIGTERM; killing it", proc.pid)
                    proc.kill()
                    proc.wait(timeout)
                logger.info("pcscd PID %d stopped (status %s)", proc.pid, proc.returncode)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def cleanup(self) -> None:
        """Stop, then remove the working directory if this object created it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PrivatePcscd:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


def _list_readers(scard: ModuleType) -> list[str]:
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        return []
    try:
        hresult, readers = scard.SCardListReaders(context, [])
        return list(readers) if hresult == scard.SCARD_S_SUCCESS else []
    finally:
        scard.SCardReleaseContext(context)


def wait_for_card(reader_substring: str, timeout: float = 10.0, *, present: bool = True) -> str:
    """Wait until a reader whose name contains ``reader_substring`` holds a card.

    With ``present=False``, wait until that reader has no card (or is gone).
    Returns the reader's full name (or ``""`` when it vanished). pcscd notices
    a vpcd card on its next poll of the reader (about every 400 ms); this blocks
    in ``SCardGetStatusChange`` until pcscd reports the change, re-checking the
    reader list in short intervals while the reader is not there yet. Raises
    :class:`CardWaitTimeout` after ``timeout`` seconds.
    """
    scard = _import_scard()
    deadline = time.monotonic() + timeout
    context = None
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                want = "a card in" if present else "no card in"
                raise CardWaitTimeout(
                    f"no reader matching {reader_substring!r} had {want} it within {timeout:g} s",
                    hint=(
                        "is the private pcscd running and the virtual card connected "
                        "to its vpcd port?"
                    ),
                )
            if context is None:
                hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
                if hresult != scard.SCARD_S_SUCCESS:
                    context = None
                    time.sleep(min(0.05, remaining))  # pcscd not up (yet): poll again
                    continue
            hresult, readers = scard.SCardListReaders(context, [])
            if hresult not in (scard.SCARD_S_SUCCESS, scard.SCARD_E_NO_READERS_AVAILABLE):
                scard.SCardReleaseContext(context)  # pcscd restarted: new context
                context = None
                continue
            matching = [r for r in (readers or []) if reader_substring in r]
            if not matching:
                if not present:
                    return ""
                time.sleep(min(0.05, remaining))  # reader not loaded yet: poll again
                continue
            reader = matching[0]
            state = scard.SCARD_STATE_UNAWARE
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                hresult, states = scard.SCardGetStatusChange(
                    context, max(1, int(min(remaining, 1.0) * 1000)), [(reader, state)]
                )
                if hresult == scard.SCARD_E_TIMEOUT:
                    continue
                if hresult != scard.SCARD_S_SUCCESS:
                    break  # reader gone or pcscd restarted: list again
                _, event_state, _atr = states[0]
                has_card = bool(event_state & scard.SCARD_STATE_PRESENT) and not (
                    event_state & scard.SCARD_STATE_MUTE
                )
                if has_card == present:
                    return str(reader)
                state = event_state & ~scard.SCARD_STATE_CHANGED
    finally:
        if context is not None:
            scard.SCardReleaseContext(context)
