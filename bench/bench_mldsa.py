"""ML-DSA-44 step-up verification next to ES256, in the same run: raw signature verifications
per second with `cryptography`, keyadmin's step-up signature check (``check_signature``: the
stored COSE key parsed once and cached, authenticatorData || SHA-256(clientDataJSON)), and
complete step-ups (``keyadmin.stepup.finish``, committed on SQLite) for one credential of each.

    python bench/bench_mldsa.py [-n 1000] [--json]

Challenges and assertions are made before the clock starts. SQLite runs with the documented
opt-in KEYADMIN_SQLITE_SYNCHRONOUS=normal so that the disk's fsync does not hide the
algorithms' difference; bench_stepup.py measures the durable default.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SOFTKEY_AAGUID = "6b657961-646d-4e00-8000-736f66746b79"
ACTION = "bench: rotate signing key"
ALGS = {"ES256": -7, "ML-DSA-44": -48}


def _key(alg: int) -> tuple[Any, bytes, Callable[[bytes], bytes]]:
    """(private key, its COSE_Key bytes, sign(message)) as the software key makes them."""
    from fido2 import cbor

    from keyadmin.sim.credkeys import cose_public, generate, sign

    key = generate(alg)
    return key, bytes(cbor.encode(cose_public(alg, key))), lambda m: sign(alg, key, m)


def raw_verify(alg: int, n: int) -> float:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key, _, sign = _key(alg)
    pub = key.public_key()
    msgs = [os.urandom(69) for _ in range(64)]
    sigs = [sign(m) for m in msgs]
    if alg == -7:
        algo = ec.ECDSA(hashes.SHA256())
        t = time.perf_counter()
        for i in range(n):
            pub.verify(sigs[i % 64], msgs[i % 64], algo)
    else:
        t = time.perf_counter()
        for i in range(n):
            pub.verify(sigs[i % 64], msgs[i % 64])
    return n / (time.perf_counter() - t)


def check_rate(alg: int, n: int) -> float:
    from keyadmin.stepup.verify import check_signature

    _, cose, sign = _key(alg)
    jobs = []
    for i in range(64):
        ad = os.urandom(32) + b"\x05" + (i + 1).to_bytes(4, "big")
        cd = json.dumps({"type": "webauthn.get", "challenge": f"c{i}"}).encode()
        jobs.append((ad, cd, sign(ad + hashlib.sha256(cd).digest())))
    check_signature(cose, *jobs[0])  # parse and cache the key before the clock starts
    t = time.perf_counter()
    for i in range(n):
        ad, cd, sig = jobs[i % 64]
        check_signature(cose, ad, cd, sig)
    return n / (time.perf_counter() - t)


def _policy(tmp: Path) -> Any:
    from keyadmin.policy.loader import load_policy
    from keyadmin.sim.authenticator import SoftKey

    (tmp / "lab-root.pem").write_text(SoftKey.create(None).root_certificate_pem())
    text = (REPO / "policies" / "lab-softkey.toml").read_text()
    text = text.replace(
        "challenge_lifetime_seconds = 120",
        "challenge_lifetime_seconds = 3600\nmax_live_challenges = 1000000",  # all issued first
    )
    text = text.replace('algorithms = ["ES256", "EdDSA"]', 'algorithms = ["ES256", "ML-DSA-44"]')
    (tmp / "policy.toml").write_text(text)
    return load_policy(tmp / "policy.toml")


def finish_rate(alg: int, n: int, tmp: Path) -> float:
    """Committed step-ups per second for one credential of ``alg`` (SQLite, sync=NORMAL)."""
    from keyadmin.b64 import encode_url
    from keyadmin.stepup import begin, finish
    from keyadmin.stepup.verify import Assertion
    from keyadmin.store import registry
    from keyadmin.store.db import SYNCHRONOUS_ENV, get_engine, transaction

    url = f"sqlite:///{tmp / 'registry.db'}"
    os.environ[SYNCHRONOUS_ENV] = "normal"
    try:
        get_engine(url)
    finally:
        os.environ.pop(SYNCHRONOUS_ENV, None)
    policy = _policy(tmp)
    _, cose, sign = _key(alg)
    cred_id = os.urandom(32)
    with transaction(url) as s:
        user = registry.get_or_create_user(s, "bench-admin")
        pid = registry.record_policy(
            s, sha256=policy.sha256, name=policy.name, path=str(policy.path), content=""
        )
        registry.add_credential(
            s, user=user, credential_id=cred_id, public_key_cose=cose, sign_count=0,
            aaguid=SOFTKEY_AAGUID, transports=["usb"], backup_eligible=False, backed_up=False,
            nickname=None, evidence={}, decision={}, attestation_object=b"",
            client_data_json=b"", policy_version_id=pid, metadata_no=None,
            operator="bench", witness=None,
        )  # fmt: skip
    rp_hash = hashlib.sha256(policy.relying_party.rp_id.encode()).digest()
    jobs = []
    for i in range(n + 20):
        ch = begin(url, policy, user="bench-admin", action=ACTION)
        cd = json.dumps(
            {"type": "webauthn.get", "challenge": encode_url(ch.challenge), "origin": ch.origin}
        ).encode()
        ad = rp_hash + bytes([0x05]) + (i + 1).to_bytes(4, "big")
        sig = sign(ad + hashlib.sha256(cd).digest())
        jobs.append((ch.challenge_id, Assertion(cred_id, cd, ad, sig, None).to_json()))
    for cid, resp in jobs[:20]:  # warm-up: caches, pool, statement cache
        finish(url, policy, challenge_id=cid, action=ACTION, response=resp)
    t = time.perf_counter()
    for cid, resp in jobs[20:]:
        finish(url, policy, challenge_id=cid, action=ACTION, response=resp)
    return n / (time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=1000, help="step-ups per algorithm")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    rows: dict[str, dict[str, float]] = {}
    work = Path(tempfile.mkdtemp(prefix="keyadmin-bench-mldsa-"))
    try:
        for name, alg in ALGS.items():
            rows[f"raw {name} verify (cryptography)"] = {"per_second": raw_verify(alg, 5 * args.n)}
            rows[f"step-up signature check, {name}"] = {"per_second": check_rate(alg, 5 * args.n)}
            (work / name).mkdir()
            rows[f"step-up finish, {name} (SQLite, NORMAL)"] = {
                "per_second": finish_rate(alg, args.n, work / name)
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for row in rows.values():
        row["us_each"] = 1e6 / row["per_second"]
    measures = {
        "raw verify": "raw {} verify (cryptography)",
        "step-up signature check": "step-up signature check, {}",
        "step-up finish": "step-up finish, {} (SQLite, NORMAL)",
    }
    ratios = {
        what: rows[row.format("ML-DSA-44")]["per_second"] / rows[row.format("ES256")]["per_second"]
        for what, row in measures.items()
    }
    result = {
        "at": datetime.now(UTC).isoformat(),
        "python": sys.version.split()[0],
        "rows": rows,
        "mldsa44_to_es256": {
            k.replace("ALG ", "").replace(", ALG", ""): v for k, v in ratios.items()
        },
    }
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return 0
    sys.stdout.write(f"{'measure':<44} {'per second':>12} {'µs each':>10}\n")
    for name, row in rows.items():
        sys.stdout.write(f"{name:<44} {row['per_second']:>12.0f} {row['us_each']:>10.1f}\n")
    for what, ratio in ratios.items():
        sys.stdout.write(
            f"ML-DSA-44 / ES256, {what.replace('ALG ', '').replace(', ALG', '')}: {ratio:.2f}x\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
