"""The pinned trust anchors of the production FIDO MDS3 BLOB, and operator-added roots.

The production BLOB's chain ended at GlobalSign Root CA - R3 until 2026-08-21 and ends at
GlobalSign Root R46 since (some served chains carry an R46 cross-signed by R3). Both are pinned
here by SHA-256 fingerprint; the PEM text (copied from Debian's ca-certificates) is checked
against the pin when loaded. An operator may add a root for one verification with
``--trust-root FILE``; such a root is recorded with the snapshot and never pinned silently.

Because both roots are public web-PKI roots, a path to them is only accepted when the signer
certificate is issued for one of :data:`PRODUCTION_SIGNER_NAMES` (see ``chain.py``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from keyadmin.files import read_input
from keyadmin.mds.errors import TrustRootInvalid

if TYPE_CHECKING:
    from cryptography.x509 import Certificate

#: DNS names the production BLOB signer certificate may carry (subjectAltName).
PRODUCTION_SIGNER_NAMES: tuple[str, ...] = ("mds.fidoalliance.org", "mds3.fidoalliance.org")

R46_SHA256 = "4fa3126d8d3a11d1c4855a4f807cbad6cf919d3a5a88b03bea2c6372d93c40c9"
R3_SHA256 = "cbb522d7b7f127ad6a0113865bdf1cd4102e7d0759af635a7cf4720dc963c53b"

_R46_PEM = """\
-----BEGIN CERTIFICATE-----
MIIFWjCCA0KgAwIBAgISEdK7udcjGJ5AXwqdLdDfJWfRMA0GCSqGSIb3DQEBDAUA
MEYxCzAJBgNVBAYTAkJFMRkwFwYDVQQKExBHbG9iYWxTaWduIG52LXNhMRwwGgYD
VQQDExNHbG9iYWxTaWduIFJvb3QgUjQ2MB4XDTE5MDMyMDAwMDAwMFoXDTQ2MDMy
MDAwMDAwMFowRjELMAkGA1UEBhMCQkUxGTAXBgNVBAoTEEdsb2JhbFNpZ24gbnYt
c2ExHDAaBgNVBAMTE0dsb2JhbFNpZ24gUm9vdCBSNDYwggIiMA0GCSqGSIb3DQEB
AQUAA4ICDwAwggIKAoICAQCsrHQy6LNl5brtQyYdpokNRbopiLKkHWPd08EsCVeJ
OaFV6Wc0dwxu5FUdUiXSE2te4R2pt32JMl8Nnp8semNgQB+msLZ4j5lUlghYruQG
vGIFAha/r6gjA7aUD7xubMLL1aa7DOn2wQL7Id5m3RerdELv8HQvJfTqa1VbkNud
316HCkD7rRlr+/fKYIje2sGP1q7Vf9Q8g+7XFkyDRTNrJ9CG0Bwta/OrffGFqfUo
0q3v84RLHIf8E6M6cqJaESvWJ3En7YEtbWaBkoe0G1h6zD8K+kZPTXhc+CtI4wSE
y132tGqzZfxCnlEmIyDLPRT5ge1lFgBPGmSXZgjPjHvjK8Cd+RTyG/FWaha/LIWF
zXg4mutCagI0GIMXTpRW+LaCtfOW3T3zvn8gdz57GSNrLNRyc0NXfeD412lPFzYE
+cCQYDdF3uYM2HSNrpyibXRdQr4G9dlkbgIQrImwTDsHTUB+JMWKmIJ5jqSngiCN
I/onccnfxkF0oE32kRbcRoxfKWMxWXEM2G/CtjJ9++ZdU6Z+Ffy7dXxd7Pj2Fxzs
x2sZy/N78CsHpdlseVR2bJ0cpm4O6XkMqCNqo98bMDGfsVR7/mrLZqrcZdCinkqa
ByFrgY/bxFn63iLABJzjqls2k+g9vXqhnQt2sQvHnf3PmKgGwvgqo6GDoLclcqUC
4wIDAQABo0IwQDAOBgNVHQ8BAf8EBAMCAYYwDwYDVR0TAQH/BAUwAwEB/zAdBgNV
HQ4EFgQUA1yrc4GHqMywptWU4jaWSf8FmSwwDQYJKoZIhvcNAQEMBQADggIBAHx4
7PYCLLtbfpIrXTncvtgdokIzTfnvpCo7RGkerNlFo048p9gkUbJUHJNOxO97k4Vg
JuoJSOD1u8fpaNK7ajFxzHmuEajwmf3lH7wvqMxX63bEIaZHU1VNaL8FpO7XJqti
2kM3S+LGteWygxk6x9PbTZ4IevPuzz5i+6zoYMzRx6Fcg0XERczzF2sUyQQCPtIk
pnnpHs6i58FZFZ8d4kuaPp92CC1r2LpXFNqD6v6MVenQTqnMdzGxRBF6XLE+0xRF
FRhiJBPSy03OXIPBNvIQtQ6IbbjhVp+J3pZmOUdkLG5NrmJ7v2B0GbhWrJKsFjLt
rWhV/pi60zTe9Mlhww6G9kuEYO4Ne7UyWHmRVSyBQ7N0H3qqJZ4d16GLuc1CLgSk
ZoNNiTW2bKg2SnkheCLQQrzRQDGQob4Ez8pn7fXwgNNgyYMqIgXQBztSvwyeqiv5
u+YfjyW6hY0XHgL+XVAEV8/+LbzvXMAaq7afJMbfc2hIkCwU9D9SGuTSyxTDYWnP
4vkYxboznxSjBF25cfe1lNj2M8FawTSLfJvdkzrnE6JwYZ+vj+vYxXX4M2bUdGc6
N3ec592kD3ZDZopD8p/7DEJ4Y9HiD2971KE9dJeFt0g5QdYg/NA6s/rob8SKunE3
vouXsXgxT7PntgMTzlSdriVZzH81Xwj3QEUxeCp6
-----END CERTIFICATE-----
"""

_R3_PEM = """\
-----BEGIN CERTIFICATE-----
MIIDXzCCAkegAwIBAgILBAAAAAABIVhTCKIwDQYJKoZIhvcNAQELBQAwTDEgMB4G
A1UECxMXR2xvYmFsU2lnbiBSb290IENBIC0gUjMxEzARBgNVBAoTCkdsb2JhbFNp
Z24xEzARBgNVBAMTCkdsb2JhbFNpZ24wHhcNMDkwMzE4MTAwMDAwWhcNMjkwMzE4
MTAwMDAwWjBMMSAwHgYDVQQLExdHbG9iYWxTaWduIFJvb3QgQ0EgLSBSMzETMBEG
A1UEChMKR2xvYmFsU2lnbjETMBEGA1UEAxMKR2xvYmFsU2lnbjCCASIwDQYJKoZI
hvcNAQEBBQADggEPADCCAQoCggEBAMwldpB5BngiFvXAg7aEyiie/QV2EcWtiHL8
RgJDx7KKnQRfJMsuS+FggkbhUqsMgUdwbN1k0ev1LKMPgj0MK66X17YUhhB5uzsT
gHeMCOFJ0mpiLx9e+pZo34knlTifBtc+ycsmWQ1z3rDI6SYOgxXG71uL0gRgykmm
KPZpO/bLyCiR5Z2KYVc3rHQU3HTgOu5yLy6c+9C7v/U9AOEGM+iCK65TpjoWc4zd
QQ4gOsC0p6Hpsk+QLjJg6VfLuQSSaGjlOCZgdbKfd/+RFO+uIEn8rUAVSNECMWEZ
XriX7613t2Saer9fwRPvm2L7DWzgVGkWqQPabumDk3F2xmmFghcCAwEAAaNCMEAw
DgYDVR0PAQH/BAQDAgEGMA8GA1UdEwEB/wQFMAMBAf8wHQYDVR0OBBYEFI/wS3+o
LkUkrk1Q+mOai97i3Ru8MA0GCSqGSIb3DQEBCwUAA4IBAQBLQNvAUKr+yAzv95ZU
RUm7lgAJQayzE4aGKAczymvmdLm6AC2upArT9fHxD4q/c2dKg8dEe3jgr25sbwMp
jjM5RcOO5LlXbKr8EpbsU8Yt5CRsuZRj+9xTaGdWPoO4zzUhw8lo/s7awlOqzJCK
6fBdRoyV3XpYKBovHd7NADdBj+1EbddTKJd+82cEHhXXipa0095MJ6RMG3NzdvQX
mcIfeg7jLQitChws/zyrVQ4PkX4268NXSb7hLi18YIvDQVETI53O9zJrlAGomecs
Mx86OyXShkDOOyyGeMlhLxS67ttVb9+E7gUJTb0o2HLO02JQZR7rkpeDMdmztcpH
WD9f
-----END CERTIFICATE-----
"""


@dataclass(frozen=True)
class Anchor:
    """A trust anchor: a root certificate and where trust in it comes from."""

    name: str
    sha256: str
    pinned: bool
    der: bytes
    origin: str  # "pinned" or the file an operator passed with --trust-root

    def certificate(self) -> Certificate:
        from cryptography import x509

        return x509.load_der_x509_certificate(self.der)

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "sha256": self.sha256,
            "pinned": self.pinned,
            "origin": self.origin,
        }


def _pem_to_der(pem: str) -> bytes:
    from keyadmin.b64 import decode_std

    body = "".join(
        line for line in pem.strip().splitlines() if line and not line.startswith("-----")
    )
    return decode_std(body)


def pinned_anchors() -> list[Anchor]:
    """The two pinned GlobalSign roots, each checked against its SHA-256 pin."""
    out = []
    for name, pem, pin in (
        ("GlobalSign Root R46", _R46_PEM, R46_SHA256),
        ("GlobalSign Root CA - R3", _R3_PEM, R3_SHA256),
    ):
        der = _pem_to_der(pem)
        digest = hashlib.sha256(der).hexdigest()
        if digest != pin:  # pragma: no cover - would mean this file was edited
            raise TrustRootInvalid(
                f"embedded root {name!r} does not match its pin ({digest} != {pin})",
                hint="reinstall keyadmin; its pinned roots were modified",
            )
        out.append(Anchor(name=name, sha256=pin, pinned=True, der=der, origin="pinned"))
    return out


def load_anchor_file(path: str | Path) -> Anchor:
    """Load an operator-supplied root (PEM or DER) for ``--trust-root FILE``."""
    from cryptography import x509

    p = Path(path)
    try:
        data = read_input(p)
    except OSError as e:
        raise TrustRootInvalid(f"cannot read trust root {p}: {e.strerror}", path=str(p)) from e
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            cert = x509.load_pem_x509_certificate(data)
        else:
            cert = x509.load_der_x509_certificate(data)
    except ValueError as e:
        raise TrustRootInvalid(f"{p} is not an X.509 certificate: {e}", path=str(p)) from e
    from cryptography.hazmat.primitives.serialization import Encoding

    der = cert.public_bytes(Encoding.DER)
    return Anchor(
        name=cert.subject.rfc4514_string(),
        sha256=hashlib.sha256(der).hexdigest(),
        pinned=False,
        der=der,
        origin=str(p),
    )


def trust_set(extra: list[Anchor] | None = None) -> list[Anchor]:
    """Pinned roots plus the operator's additions (never empty)."""
    anchors = pinned_anchors()
    seen = {a.sha256 for a in anchors}
    for a in extra or []:
        if a.sha256 not in seen:
            anchors.append(a)
            seen.add(a.sha256)
    return anchors
