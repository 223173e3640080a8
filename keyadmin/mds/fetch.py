"""HTTP GET for the BLOB and CRLs, with ETag / If-None-Match. Standard library only."""

from __future__ import annotations

import contextvars
import math
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from keyadmin.mds.errors import DownloadFailed

DEFAULT_MDS_URL = "https://mds3.fidoalliance.org/"
MAX_BYTES = 64 * 1024 * 1024
USER_AGENT = "keyadmin-mds/0.1"
#: Seconds one `mds update` may spend downloading, all requests together (BLOB and CRLs):
#: a server that trickles bytes never trips a per-read timeout, only this.
ENV_DEADLINE = "KEYADMIN_MDS_DEADLINE"
DEFAULT_DEADLINE = 300.0
MAX_DEADLINE = 3600.0

#: The monotonic time by which the current download(s) must end (set by ``overall_deadline``).
_END: contextvars.ContextVar[tuple[float, float] | None] = contextvars.ContextVar(
    "keyadmin_mds_deadline", default=None
)


def configured_deadline() -> float:
    """$KEYADMIN_MDS_DEADLINE (seconds, more than 0 and at most 3600), else 300."""
    from keyadmin.errors import ConfigError

    raw = os.environ.get(ENV_DEADLINE)
    if not raw:
        return DEFAULT_DEADLINE
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_DEADLINE):
        raise ConfigError(
            f"{ENV_DEADLINE}={raw!r} is not a number of seconds from 0 to {MAX_DEADLINE:g}",
            hint=f"set {ENV_DEADLINE} to e.g. 300, or unset it",
        )
    return seconds


@contextmanager
def overall_deadline() -> Iterator[None]:
    """Every ``http_get`` inside shares one deadline ($KEYADMIN_MDS_DEADLINE from now)."""
    seconds = configured_deadline()
    token = _END.set((time.monotonic() + seconds, seconds))
    try:
        yield
    finally:
        _END.reset(token)


def _socket_timeout(resp: Any, seconds: float) -> None:
    """Bound the next read of ``resp`` (http.client keeps its socket under fp.raw._sock)."""
    sock = getattr(getattr(getattr(resp, "fp", None), "raw", None), "_sock", None)
    if sock is not None:
        sock.settimeout(max(seconds, 0.001))


@dataclass(frozen=True)
class HttpResult:
    url: str
    status: int  # 200, or 304 when the ETag still matches
    body: bytes
    etag: str | None


def _read(resp: Any, url: str, left: Any) -> bytes:
    """The body, at most MAX_BYTES + 1 bytes, reporting progress as it arrives; each read
    waits at most ``left()`` seconds (the overall deadline's remainder)."""
    from keyadmin.progress import report

    length = resp.headers.get("Content-Length")
    total = int(length) if length and length.isdigit() else None
    chunks: list[bytes] = []
    got = 0
    while got <= MAX_BYTES:
        _socket_timeout(resp, left())
        chunk = resp.read1(min(1 << 16, MAX_BYTES + 1 - got))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
        report(f"downloading {url.split('//', 1)[-1].split('/', 1)[0]} (bytes)", got, total)
    return b"".join(chunks)


def http_get(url: str, *, etag: str | None = None, timeout: float = 30.0) -> HttpResult:
    """GET ``url``; with ``etag``, a 304 answer returns an empty body and status 304."""
    if not url.lower().startswith(("http://", "https://")):
        raise DownloadFailed(f"refusing to fetch {url!r}: only http and https URLs", url=url)
    headers = {"User-Agent": USER_AGENT}
    if etag:
        headers["If-None-Match"] = etag
    req = urllib.request.Request(url, headers=headers)  # noqa: S310 - scheme checked above
    shared = _END.get()
    end, budget = shared if shared else (time.monotonic() + configured_deadline(), 0.0)
    budget = budget or configured_deadline()

    def left() -> float:
        remaining = end - time.monotonic()
        if remaining <= 0:
            raise DownloadFailed(
                f"GET {url} did not finish within {budget:g} s ({ENV_DEADLINE})",
                url=url,
                hint=f"check the network or the server; raise {ENV_DEADLINE} for a slow link",
            )
        return min(timeout, remaining)

    try:
        with urllib.request.urlopen(req, timeout=left()) as resp:  # noqa: S310
            body = _read(resp, url, left)
            if len(body) > MAX_BYTES:
                raise DownloadFailed(f"{url} sent more than {MAX_BYTES} bytes", url=url)
            return HttpResult(url, resp.status, body, resp.headers.get("ETag"))
    except urllib.error.HTTPError as e:
        if e.code == 304:
            return HttpResult(url, 304, b"", e.headers.get("ETag") or etag)
        raise DownloadFailed(
            f"GET {url} answered HTTP {e.code} {e.reason}", url=url, status=e.code
        ) from e
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        if time.monotonic() >= end:
            left()  # the deadline, not the last read, is what ended it: say so
        reason = getattr(e, "reason", e)
        raise DownloadFailed(f"GET {url} failed: {reason}", url=url) from e


def fetch_bytes(url: str) -> bytes:
    """A plain GET for CRLs (no cache validation)."""
    return http_get(url).body
