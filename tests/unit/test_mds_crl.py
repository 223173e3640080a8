"""CRLs and downloads, with a CA, signer, JWS and CRL issued here by cryptography, served over
real HTTP (a local http.server) where a download is under test."""

from __future__ import annotations

import datetime as dt
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyadmin.mds import errors as E
from keyadmin.mds.fetch import fetch_bytes, http_get
from keyadmin.mds.ingest import import_blob, update
from keyadmin.mds.roots import load_anchor_file, trust_set
from keyadmin.mds.verify import verify_blob
from keyadmin.store.mds_index import MdsIndex
from tests.unit.test_mds_support import YUBIKEY_5_NFC, TestPki, small_payload

AT = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


class _Server:
    """A real HTTP server on 127.0.0.1 serving in-memory files, with ETag / If-None-Match."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                inm = self.headers.get("If-None-Match")
                outer.requests.append((self.path, inm))
                body = outer.files.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                etag = f'"{hash(body) & 0xFFFFFFFF:x}"'
                if inm == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.close()


@pytest.fixture
def pki() -> TestPki:
    return TestPki.create()


def _verify(pki: TestPki, tmp_path: Path, crls=(), **kw):
    anchors = trust_set([load_anchor_file(pki.ca_pem(tmp_path))])
    return verify_blob(pki.jws(small_payload(5)), anchors=anchors, at=AT, crls=crls, **kw)


def test_signer_listed_on_the_issuers_crl_is_refused(pki: TestPki, tmp_path: Path) -> None:
    crl = pki.crl(revoked_serials=(pki.signer.serial_number,))
    with pytest.raises(E.CertificateRevoked) as ei:
        _verify(pki, tmp_path, crls=[("ca.crl", crl)])
    err = ei.value
    assert err.data["serial"] == format(pki.signer.serial_number, "x")
    assert err.data["revoked_at"] == "2026-06-01T00:00:00+00:00"
    assert err.data["crl_reason"] == "key_compromise"
    assert err.data["source"] == "ca.crl"


def test_signer_revoked_after_the_time_of_use_is_accepted_with_a_note(
    pki: TestPki, tmp_path: Path
) -> None:
    crl = pki.crl(
        revoked_serials=(pki.signer.serial_number,),
        revoked_on=dt.datetime(2026, 11, 25, tzinfo=dt.UTC),
        this_update=dt.datetime(2026, 11, 20, tzinfo=dt.UTC),
    )
    v = _verify(pki, tmp_path, crls=[("ca.crl", crl)])
    assert v.crl_checks[0].status == "not-revoked"
    assert "after the time of use" in (v.crl_checks[0].note or "")


def test_clean_crl_accepts_and_records_its_window(pki: TestPki, tmp_path: Path) -> None:
    other = pki.signer.serial_number + 1
    v = _verify(pki, tmp_path, crls=[("ca.crl", pki.crl(revoked_serials=(other,)))])
    (check,) = v.crl_checks
    assert (check.status, check.source) == ("not-revoked", "ca.crl")
    assert check.this_update == "2026-11-01T00:00:00+00:00"
    assert check.next_update == "2026-12-01T00:00:00+00:00"


def test_crl_signed_by_another_key_is_invalid(pki: TestPki, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    forged = pki.crl(key=ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(E.CrlInvalid, match="does not verify"):
        _verify(pki, tmp_path, crls=[("forged.crl", forged)])


def test_crl_past_its_next_update_is_stale(pki: TestPki, tmp_path: Path) -> None:
    old = pki.crl(
        this_update=dt.datetime(2026, 9, 1, tzinfo=dt.UTC),
        next_update=dt.datetime(2026, 10, 1, tzinfo=dt.UTC),
    )
    with pytest.raises(E.CrlStale) as ei:
        _verify(pki, tmp_path, crls=[("old.crl", old)])
    assert ei.value.data["next_update"] == "2026-10-01T00:00:00+00:00"


def test_garbage_crl_file_is_invalid(pki: TestPki, tmp_path: Path) -> None:
    with pytest.raises(E.CrlInvalid, match="not an X.509 CRL"):
        _verify(pki, tmp_path, crls=[("junk.crl", b"not a crl")])


def test_missing_crl_refuses_unless_allowed(pki: TestPki, tmp_path: Path) -> None:
    with pytest.raises(E.CrlMissing, match="no CRL distribution point"):
        _verify(pki, tmp_path)
    v = _verify(pki, tmp_path, allow_missing_crl=True)
    assert [c.status for c in v.crl_checks] == ["missing-allowed"]


def test_crl_downloaded_from_the_distribution_point(server: _Server, tmp_path: Path) -> None:
    pki = TestPki.create(crl_url=server.base + "/ca.crl")
    server.files["/ca.crl"] = pki.crl(revoked_serials=(pki.signer.serial_number,))
    with pytest.raises(E.CertificateRevoked) as ei:
        _verify(pki, tmp_path, fetch_crl=fetch_bytes)
    assert ei.value.data["source"] == server.base + "/ca.crl"
    assert server.requests == [("/ca.crl", None)]


def test_unreachable_distribution_point_is_a_missing_crl(server: _Server, tmp_path: Path) -> None:
    pki = TestPki.create(crl_url=server.base + "/gone.crl")
    with pytest.raises(E.CrlMissing, match="HTTP 404"):
        _verify(pki, tmp_path, fetch_crl=fetch_bytes)


def test_update_downloads_verifies_stores_then_uses_the_etag(
    server: _Server, tmp_path: Path
) -> None:
    pki = TestPki.create(crl_url=server.base + "/ca.crl")
    server.files["/ca.crl"] = pki.crl()
    server.files["/blob"] = pki.jws(small_payload(7))
    index = MdsIndex(f"sqlite:///{tmp_path / 'reg.db'}")
    root = pki.ca_pem(tmp_path)
    first = update(index=index, now=AT, url=server.base + "/blob", trust_roots=[root])
    assert (first.changed, first.reason, first.snapshot.no) == (True, "stored", 7)
    assert first.snapshot.etag and first.snapshot.source == server.base + "/blob"
    assert first.snapshot.operator_roots[0]["sha256"] == load_anchor_file(root).sha256
    assert first.snapshot.series.startswith("root:")
    assert [c["status"] for c in first.crl] == ["not-revoked"]
    assert index.entry_doc(YUBIKEY_5_NFC)["description"] == "YubiKey 5 Series with NFC"

    second = update(index=index, now=AT, url=server.base + "/blob", trust_roots=[root])
    assert (second.changed, second.reason) == (False, "not-modified")
    assert server.requests[-1] == ("/blob", first.snapshot.etag)


def test_update_refuses_a_rolled_back_blob(server: _Server, tmp_path: Path) -> None:
    pki = TestPki.create()
    index = MdsIndex(f"sqlite:///{tmp_path / 'reg.db'}")
    root = pki.ca_pem(tmp_path)
    kw = {"index": index, "now": AT, "trust_roots": [root], "allow_missing_crl": True}
    import_blob(pki.jws(small_payload(8)), source="a", source_kind="file", **kw)
    with pytest.raises(E.RollbackRefused) as ei:
        import_blob(pki.jws(small_payload(7)), source="b", source_kind="file", **kw)
    assert (ei.value.data["no"], ei.value.data["stored_no"]) == (7, 8)
    with pytest.raises(E.RollbackRefused, match="same no. 8"):
        import_blob(pki.jws(small_payload(8, "2026-12-02")), source="c", source_kind="file", **kw)
    assert index.current_snapshot().no == 8


def test_download_errors_name_the_url() -> None:
    with pytest.raises(E.DownloadFailed, match="only http and https"):
        http_get("file:///etc/passwd")
    with pytest.raises(E.DownloadFailed, match="127.0.0.1:9"):
        http_get("http://127.0.0.1:9/blob", timeout=2)
