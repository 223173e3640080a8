"""HTTP GET for the BLOB and CRLs, with ETag / If-None-Match. Standard library only."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from keyadmin.mds.errors import DownloadFailed

DEFAULT_MDS_URL = "https://mds3.fidoalliance.org/"
MAX_BYTES = 64 * 1024 * 1024
USER_AGENT = "keyadmin-mds/0.1"


@dataclass(frozen=True)
class HttpResult:
    url: str
    status: int  # 200, or 304 when the ETag still matches
    body: bytes
    etag: str | None


def _read(resp: Any, url: str) -> bytes:
    """The body, at most MAX_BYTES + 1 bytes, reporting progress as it arrives."""
    from keyadmin.progress import report

    length = resp.headers.get("Content-Length")
    total = int(length) if length and length.isdigit() else None
    chunks: list[bytes] = []
    got = 0
    while got <= MAX_BYTES:
        chunk = resp.read(min(1 << 16, MAX_BYTES + 1 - got))
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
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            body = _read(resp, url)
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
        reason = getattr(e, "reason", e)
        raise DownloadFailed(f"GET {url} failed: {reason}", url=url) from e


def fetch_bytes(url: str) -> bytes:
    """A plain GET for CRLs (no cache validation)."""
    return http_get(url).body
