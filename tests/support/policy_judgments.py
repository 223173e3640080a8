"""Every judgment keyadmin's policy layer makes on the real data in ../shared/data, as digests.

``judgments(registry_url, workdir)`` evaluates every real registration (attestations/ and
attestations_pqc/, plus deterministic byte flips of three of them) under the shipped policies
and variants, with and without metadata, at the capture's time and at a time when the metadata
is stale (with and without the operator's override); and asks the catalog about every metadata
model (``explain_model``) and for each policy's admitted list (``admitted_models``).

Each judgment is kept as its decision, its outcomes (one letter per rule) and the SHA-256 of
its canonical JSON (every rule, outcome and detail, the subject and the evidence), so that any
change in any message is seen. The recorded file (tests/unit/data/policy_judgments.json) was
written by ``python -m tests.support.policy_judgments record`` on the evaluator as it was
before its split into facts and rules; tests/unit/test_policy_judgments.py recomputes them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from tests.unit.test_policy_support import AUDIT_AT, CAPTURE_AT

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
SHARED_DATA = ROOT.parent / "shared" / "data"
RECORDED = ROOT / "tests" / "unit" / "data" / "policy_judgments.json"
DATA_DIRS = ("attestations", "attestations_pqc")
ZERO = "00000000-0000-0000-0000-000000000000"
YUBIKEY_5_NFC = "2fc0579f-8113-47ea-b116-bb5a8db9202a"

#: After no. 291's nextUpdate + every shipped policy's grace: the metadata is stale.
STALE_AT = datetime(2026, 12, 1, tzinfo=UTC)
MUTATED = (
    "jws-realexamples-YubikeyFips5Nfc",
    "fidomds-yubikey_5_nfc",
    "jws-realexamples-YubiKey4",
)
UV_REQUIRED = 'user_verification = "required"'
UV_PREFERRED = 'user_verification = "preferred"'
#: policy name -> (shipped file, exact-text replacements)
POLICY_VARIANTS: dict[str, tuple[str, dict[str, str]]] = {
    "hardware": ("fido-certified-hardware.toml", {}),
    "hardware-uv-preferred": ("fido-certified-hardware.toml", {UV_REQUIRED: UV_PREFERRED}),
    "hardware-mds31": (
        "fido-certified-hardware.toml",
        {
            UV_REQUIRED: UV_PREFERRED,
            'min_certification = "FIDO_CERTIFIED_L1"': 'min_certification = "FIDO_CERTIFIED_L2"\n'
            'fips_level_min = 1\ncertification_profiles = ["enterprise"]\n'
            'retired = "until-sunset"',
        },
    ),
    "hardware-allowlist": (
        "fido-certified-hardware.toml",
        {
            UV_REQUIRED: UV_PREFERRED,
            'formats = ["packed", "fido-u2f"]': 'formats = ["packed", "fido-u2f", "tpm", "apple",'
            ' "android-key", "none"]',
            'types = ["basic", "attca"]': 'types = ["basic", "attca", "anonca"]',
            "allow_any_metadata_model = true": "allow_any_metadata_model = false\n"
            'allow_aaguids = ["cb69481e-8ff7-4039-93ec-0a2729a154a8",'
            ' "c1f9a0bc-1dd2-404a-b27f-8e29047a43fd"]',
            "deny_aaguids = []": 'deny_aaguids = ["ee882879-721c-4913-9775-3dfcce97072a"]',
            'key_protection = ["hardware"]': 'key_protection = ["hardware", "secure_element"]',
            "device_bound = true": "device_bound = false",
        },
    ),
    "yubikey-fips": ("yubikey-fips.toml", {}),
    "yubikey-fips-uv-preferred": ("yubikey-fips.toml", {UV_REQUIRED: UV_PREFERRED}),
    # the lab policy trusting, as its extra root, the root the metadata names for YubiKey 5 NFC
    "lab-softkey": ("lab-softkey.toml", {'"lab-root.pem"': '"lab-root.pem"'}),
}


def b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _rp_id(record: dict[str, object], att: bytes, origin: str) -> str:
    """The capture's RP ID, else the suffix of the origin's host hashing to authData's rpIdHash."""
    given = record.get("rp_id")
    if isinstance(given, str) and given:
        return given
    host = origin.split("//", 1)[1].split(":")[0].split("/")[0]
    try:
        from fido2 import cbor

        want = bytes(cbor.decode(att)["authData"][:32])
    except Exception:  # noqa: BLE001 - malformed captures: the host itself
        return host
    parts = host.split(".")
    for i in range(len(parts)):
        cand = ".".join(parts[i:])
        if hashlib.sha256(cand.encode()).digest() == want:
            return cand
    return host


def captures() -> Iterator[tuple[str, bytes, bytes, str, str, datetime]]:
    """(name, attestationObject, clientDataJSON, origin, rp_id, time) of every real
    registration in the shared data directories, sorted by name."""
    paths = sorted(p for d in DATA_DIRS for p in (SHARED_DATA / d).glob("*.json"))
    for path in paths:
        record = json.loads(path.read_text())
        att = b64u_decode(record["attestationObject"])
        cdj = b64u_decode(record["clientDataJSON"])
        origin = json.loads(cdj)["origin"]
        at = CAPTURE_AT.get(path.stem, AUDIT_AT)
        yield path.stem, att, cdj, origin, _rp_id(record, att, origin), at


def _flips(data: bytes, n: int = 12) -> Iterator[tuple[int, bytes]]:
    for k in range(n):
        i = (k * 7919 + 13) % len(data)
        yield i, data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


def _digest(doc: object) -> str:
    canon = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def _summary(doc: object, allowed: bool, outcomes: str) -> str:
    """``allowed|outcomes|digest``: the decision, one letter per rule (pass, fail, skip), and
    the first 64 bits of the SHA-256 of the canonical JSON of everything it says."""
    return f"{'allowed' if allowed else 'refused'}|{outcomes}|{_digest(doc)[:16]}"


def load_policies(workdir: Path, registry: str) -> dict[str, object]:
    from keyadmin.policy import load_policy
    from keyadmin.store.mds_index import MdsIndex

    der = base64.b64decode(MdsIndex(registry).attestation_roots(YUBIKEY_5_NFC)[0])
    pem = base64.encodebytes(der).decode("ascii")
    (workdir / "lab-root.pem").write_text(
        f"-----BEGIN CERTIFICATE-----\n{pem}-----END CERTIFICATE-----\n"
    )
    out: dict[str, object] = {}
    for name, (source, replacements) in POLICY_VARIANTS.items():
        text = (POLICIES / source).read_text()
        for old, new in replacements.items():
            if old not in text:
                raise AssertionError(f"{old!r} not in {source}")
            text = text.replace(old, new)
        path = POLICIES / source if not replacements else workdir / f"{name}.toml"
        if replacements:
            path.write_text(text)
        out[name] = load_policy(path)
    return out


def judgments(registry: str, workdir: Path) -> dict[str, str]:
    """case key -> ``_summary`` of every judgment (see the module doc)."""
    from keyadmin.policy import admitted_models, evaluate_registration, explain_model
    from keyadmin.policy.metadata import IndexMetadata
    from keyadmin.store.mds_index import MdsIndex

    policies = load_policies(workdir, registry)
    metadata = IndexMetadata(MdsIndex(registry))
    out: dict[str, str] = {}

    def registration(key: str, policy: object, att: bytes, cdj: bytes, **kw: object) -> None:
        d = evaluate_registration(policy, att, cdj, **kw)
        doc = d.to_dict()
        doc["path"] = Path(str(doc.get("policy", {}).get("path"))).name
        doc["policy"] = {k: v for k, v in doc["policy"].items() if k != "path"}
        out[key] = _summary(doc, d.allowed, "".join(r.outcome[0] for r in d.reasons))

    cases = list(captures())
    for name, att, cdj, origin, rp_id, at in cases:
        for pname, policy in policies.items():
            for mname, source in (("mds", metadata), ("none", None)):
                for when, moment, override in (
                    ("at", at, False),
                    ("stale", STALE_AT, False),
                    ("stale-override", STALE_AT, True),
                ):
                    registration(
                        f"registration/{name}/{pname}/{mname}/{when}",
                        policy,
                        att,
                        cdj,
                        at=moment,
                        metadata=source,
                        rp_id=rp_id,
                        origins=[origin],
                        stale_metadata_override=override,
                    )
            # the policy's own relying party (most captures were made for another)
            registration(
                f"registration/{name}/{pname}/mds/own-rp",
                policy,
                att,
                cdj,
                at=at,
                metadata=metadata,
            )
    by_name = {c[0]: c for c in cases}
    for name in MUTATED:
        _, att, cdj, origin, rp_id, at = by_name[name]
        flips = [("att", i, m, cdj) for i, m in _flips(att)]
        flips += [("cdj", i, att, m) for i, m in _flips(cdj, 4)]
        for part, i, a, c in flips:
            for pname in ("hardware-uv-preferred", "hardware-allowlist"):
                registration(
                    f"mutated/{name}/{part}@{i}/{pname}",
                    policies[pname],
                    a,
                    c,
                    at=at,
                    metadata=metadata,
                    rp_id=rp_id,
                    origins=[origin],
                )
    aaguids = sorted({a for a in map(_aaguid_of, metadata.models()) if a})
    u2f_key_ids = sorted(_u2f_key_ids(cases))
    for pname, policy in policies.items():
        for aaguid in aaguids:
            d = explain_model(policy, metadata, aaguid, at=AUDIT_AT)
            out[f"model/{aaguid}/{pname}"] = _summary(
                d.to_dict(), d.allowed, "".join(r.outcome[0] for r in d.reasons)
            )
        for name, kid in u2f_key_ids:  # U2F models, named by their attestation key identifier
            d = explain_model(policy, metadata, ZERO, at=AUDIT_AT, key_id=kid)
            out[f"model/u2f/{name}/{pname}"] = _summary(
                d.to_dict(), d.allowed, "".join(r.outcome[0] for r in d.reasons)
            )
        for when, moment in (("at", AUDIT_AT), ("stale", STALE_AT)):
            listing = admitted_models(policy, metadata, at=moment)
            out[f"models/{pname}/{when}"] = _summary(
                listing.to_dict(), True, f"{len(listing.models)} models"
            )
    return out


def _aaguid_of(entry: object) -> str | None:
    """A metadata entry's AAGUID, whether the source hands out dicts or typed entries."""
    value = entry.get("aaguid") if isinstance(entry, dict) else getattr(entry, "aaguid", None)
    return str(value) if value else None


def _u2f_key_ids(
    cases: list[tuple[str, bytes, bytes, str, str, datetime]],
) -> Iterator[tuple[str, str]]:
    """(capture, attestation key identifier) of every fido-u2f capture."""
    from keyadmin.attestation import AttestationError, parse_registration
    from keyadmin.policy.evaluate import key_identifier

    for name, att, cdj, *_ in cases:
        try:
            parsed = parse_registration(att, cdj)
        except AttestationError:
            continue
        if parsed.fmt == "fido-u2f" and parsed.x5c:
            yield name, key_identifier(parsed.x5c[0])


def _fresh_registry(base: Path) -> str:
    from keyadmin.mds.ingest import import_package
    from keyadmin.store.mds_index import MdsIndex

    url = f"sqlite:///{base / 'keyadmin.db'}"
    import_package(index=MdsIndex(url), now=datetime.now(UTC))
    return url


def main(argv: list[str]) -> int:
    if argv[1:] != ["record"]:
        print("usage: python -m tests.support.policy_judgments record", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        result = judgments(_fresh_registry(Path(tmp)), Path(tmp))
    RECORDED.parent.mkdir(parents=True, exist_ok=True)
    RECORDED.write_text(json.dumps(result, indent=0, sort_keys=True) + "\n")
    print(f"{len(result)} judgments -> {RECORDED}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
