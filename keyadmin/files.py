"""The one way keyadmin checks, creates and writes its files (a shared helper, like config).

Rules, after OpenSSH's StrictModes (``safe_path``: the file and every directory above it
must be owned by root or the user and writable by nobody else):

- every directory from a file's parent up to ``/`` is owned by root or by us, and no one
  else can write to it, except a directory with the sticky bit (``/tmp``: others can
  create entries there but cannot rename or delete what is ours);
- keyadmin's own directories and files (the data directory, the registry, keys, state
  files) are owned by us; if others can write them they are refused, if others can only
  read them they are tightened (0700 / 0600);
- a file keyadmin only reads for trust (a receipt public key) is owned by root or us and
  writable by no one else;
- new files are written atomically: a temporary file in the same directory, created with
  ``O_CREAT | O_EXCL | O_NOFOLLOW`` and its final mode, written, fsynced, renamed over the
  target, and the directory fsynced. A planted symlink is never followed.

Refusals raise ``UnsafePath`` (a ConfigError, exit 1) naming the path and the fix.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from keyadmin.errors import ConfigError

_WRITE_BITS = stat.S_IWGRP | stat.S_IWOTH


class UnsafePath(ConfigError):
    """A file or directory another user owns or can write, or a symlink where none may be."""


def _owner_problem(path: Path, st: os.stat_result, *, root_ok: bool) -> str | None:
    me = os.geteuid()
    if st.st_uid == me or (root_ok and st.st_uid == 0):
        return None
    return f"{path} is owned by uid {st.st_uid}, not by you (uid {me})"


def _refuse(problem: str, fix: str) -> UnsafePath:
    return UnsafePath(problem, hint=f"{fix} (keyadmin refuses files others control)")


def check_parents(path: Path) -> None:
    """Every directory from ``path`` (a directory) up to / is root's or ours, and writable by
    no one else unless it has the sticky bit."""
    current = Path(os.path.realpath(path))
    for d in (current, *current.parents):
        try:
            st = os.stat(d)
        except FileNotFoundError:
            raise ConfigError(
                f"the directory {d} does not exist", hint=f"create it first: mkdir -p -m 700 {d}"
            ) from None
        except OSError as e:
            raise ConfigError(f"cannot inspect {d}: {e.strerror}") from None
        problem = _owner_problem(d, st, root_ok=True)
        if problem:
            raise _refuse(problem, f"use a directory of your own, or chown {d}")
        if st.st_mode & _WRITE_BITS and not st.st_mode & stat.S_ISVTX:
            raise _refuse(
                f"{d} is writable by others (mode {stat.S_IMODE(st.st_mode):04o}), so they "
                f"could replace what keyadmin keeps below it",
                f"chmod go-w {d}, or use another directory",
            )


def private_dir(path: Path) -> Path:
    """Our own directory (created 0700 when missing), owned by us; refused when others
    can write it, tightened to 0700 when others can only read it; its parents checked."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        st = os.stat(path)
    problem = _owner_problem(path, st, root_ok=False)
    if problem:
        raise _refuse(problem, "set KEYADMIN_HOME to a directory of your own")
    if st.st_mode & _WRITE_BITS:
        raise _refuse(
            f"the directory {path} is writable by others (mode {stat.S_IMODE(st.st_mode):04o})",
            f"chmod 700 {path} after checking its contents",
        )
    if st.st_mode & 0o077:
        path.chmod(0o700)
    check_parents(path)  # resolved: a symlinked directory's real parents are checked
    return path


def check_own_file(path: Path, st: os.stat_result) -> None:
    """A file of ours: a regular file we own that no one else can write."""
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(f"{path} is not a regular file", f"remove {path} or choose another path")
    problem = _owner_problem(path, st, root_ok=False)
    if problem:
        raise _refuse(problem, f"use a file of your own, or chown {path}")
    if st.st_mode & _WRITE_BITS:
        raise _refuse(
            f"{path} is writable by others (mode {stat.S_IMODE(st.st_mode):04o})",
            f"chmod 600 {path} after checking it was not changed",
        )


def open_private(path: Path) -> int:
    """Open (or create, 0600) a file of ours read-write without following a symlink; checked
    on the open descriptor (no race with a rename), tightened to 0600 when others can read it.
    Returns the descriptor."""
    check_parents(path.parent)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as e:
        if os.path.islink(path):
            raise _refuse(
                f"{path} is a symbolic link", f"give the real path instead of {path}"
            ) from None
        raise ConfigError(f"cannot open {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        check_own_file(path, st)
        if st.st_mode & 0o077:
            os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_trusted_file(path: Path) -> None:
    """A file keyadmin reads and trusts (a public key): owned by root or us, writable by no
    one else, in directories that pass ``check_parents``."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    problem = _owner_problem(path, st, root_ok=True)
    if problem:
        raise _refuse(problem, f"chown {path}, or use a copy of your own")
    if st.st_mode & _WRITE_BITS:
        raise _refuse(
            f"{path} is writable by others (mode {stat.S_IMODE(st.st_mode):04o})",
            f"chmod go-w {path} after checking it",
        )
    check_parents(Path(os.path.realpath(path)).parent)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data``: a crash leaves the old or the new file, never half,
    and a symlink planted at ``path`` or at any temporary name is never written through."""
    if not path.name or path.name in (".", ".."):
        raise ConfigError(f"{str(path)!r} is not a file name", hint="give the path of a file")
    directory = path.parent if str(path.parent) else Path(".")
    check_parents(directory)
    tmp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, mode)
    except OSError as e:
        raise ConfigError(f"cannot write in {directory}: {e.strerror}") from None
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have narrowed it; never widen past mode
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise ConfigError(f"cannot write {path}: {e.strerror}; it is unchanged") from None
        raise
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


#: The largest input file keyadmin reads (policy, mapping, keys, state files, anchors,
#: attestation files); MDS BLOBs and CRLs may be larger (keyadmin.mds.fetch.MAX_BYTES).
MAX_INPUT_BYTES = 4 * 1024 * 1024


class InputFileError(ConfigError):
    """An input file that is not a regular file (a fifo, a device, a directory) or is too large."""


def read_input(path: str | os.PathLike[str], limit: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    Opened without blocking (a fifo with no writer would wait forever), checked on the open
    descriptor (a device such as /dev/zero never ends, a directory is no file), its size
    checked before reading, and never more than ``limit`` bytes read (a file growing
    meanwhile is refused too). Other failures raise the OSError ``open`` raises.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputFileError(
                f"{os.fsdecode(path)} is not a regular file", hint="give the path of a file"
            )
        if st.st_size > limit:
            raise InputFileError(
                f"{os.fsdecode(path)} is {st.st_size} bytes; at most {limit} are read",
                hint="check that this is the file you meant",
            )
        data = f.read(limit + 1)
    if len(data) > limit:
        raise InputFileError(f"{os.fsdecode(path)} grew past {limit} bytes while it was read")
    return data
