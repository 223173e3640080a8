"""Step-up admission: does the policy still admit the model of the key being used?

A credential enrolled under an older policy (or older metadata) is re-judged at every step-up:
allowlist, deny list and metadata status (``keyadmin.policy.catalog.explain_model``). The
answer depends on the policy, the metadata snapshot, the model and (only through metadata
freshness) the time, so it is kept in a small LRU for ``ADMIT_CACHE_TTL_SECONDS``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Never

if TYPE_CHECKING:
    from keyadmin.policy.metadata import MetadataSource
    from keyadmin.policy.model import Policy

#: fido-u2f models have no AAGUID: they are named by their attestation key identifier.
ZERO_AAGUID = "00000000-0000-0000-0000-000000000000"


class _NoMetadata:
    """An empty metadata source (for policies that do not require metadata): every model is
    unknown to it, which differs from no source at all (a failing ``metadata.entry``)."""

    def snapshot(self) -> None:
        return None

    def by_aaguid(self, aaguid: str) -> None:
        return None

    def by_key_id(self, key_id: str) -> None:
        return None

    def models(self) -> Iterator[Never]:
        return iter(())


#: How long a ``policy_admits`` answer is reused, in seconds of the step-up's own time
#: (``at``): the only time-dependent rule is metadata freshness, and a new snapshot or a new
#: policy file is a new cache key at once.
ADMIT_CACHE_TTL_SECONDS = 30.0
_ADMIT_CACHE_SIZE = 1024

#: The answer: admitted, and the failing rules (``{"rule", "outcome": "fail", "detail"}``).
Admitted = tuple[bool, tuple[dict[str, str], ...]]
#: A policy as a cache key: its file's SHA-256 and those of the trust roots it loaded.
_PolicyKey = tuple[str, tuple[str, ...]]
#: (policy, metadata snapshot (number, SHA-256) or None, model name).
_AdmitKey = tuple[_PolicyKey, tuple[object, str] | None, str]

_admitted: OrderedDict[_AdmitKey, tuple[float, Admitted]] = OrderedDict()
_admitted_lock = threading.Lock()
_policy_keys: dict[int, tuple[Policy, _PolicyKey]] = {}


def _admit_key(policy: Policy, metadata: MetadataSource | None, model: str) -> _AdmitKey | None:
    """What the answer depends on besides the time, or None when that cannot be named.

    ``model`` is the AAGUID, or "AAGUID/key id" for U2F models. The policy: its file's
    SHA-256 and the SHA-256 of the trust roots it loaded. The metadata: none, or the
    snapshot's number and SHA-256 (a source without a hashed snapshot is not cached).
    """
    hit = _policy_keys.get(id(policy))
    if hit is not None and hit[0] is policy:
        pkey = hit[1]
    else:  # a loaded policy is frozen: its file and root hashes are read once
        pkey = (policy.sha256, tuple(r.sha256 for r in getattr(policy, "trust_roots", ())))
        if len(_policy_keys) >= 64:
            _policy_keys.clear()
        _policy_keys[id(policy)] = (policy, pkey)
    if metadata is None:
        return (pkey, None, model)
    snap = metadata.snapshot()
    digest = getattr(snap, "sha256", None) if snap is not None else None
    if not digest:
        return None
    return (pkey, (getattr(snap, "no", None), digest), model)


def attestation_key_id(leaf_der: bytes | None) -> str | None:
    """The key identifier of a stored attestation certificate (how U2F models are named)."""
    if not leaf_der:
        return None
    from cryptography import x509

    from keyadmin.policy.evaluate import key_identifier

    return key_identifier(x509.load_der_x509_certificate(leaf_der))


def policy_admits(
    policy: Policy,
    metadata: MetadataSource | None,
    aaguid: str,
    at: datetime,
    key_id: str | None = None,
) -> Admitted:
    """Does the policy still admit this model (allowlist, deny list, metadata status)? The
    answer, and the failing rules as reasons (``{"rule", "outcome": "fail", "detail"}``).

    ``keyadmin.policy.catalog.explain_model``; the answer is kept in an LRU keyed on the
    policy (file and trust-root hashes), the metadata snapshot (number and hash) and the
    AAGUID, and reused for ``ADMIT_CACHE_TTL_SECONDS`` either side of the time it was
    computed for.
    """
    from keyadmin.policy.catalog import explain_model

    key = _admit_key(policy, metadata, f"{aaguid}/{key_id}" if key_id else aaguid)
    when = at.timestamp()
    if key is not None:
        with _admitted_lock:
            hit = _admitted.get(key)
            if hit is not None and abs(when - hit[0]) < ADMIT_CACHE_TTL_SECONDS:
                _admitted.move_to_end(key)
                return hit[1]
    source = metadata if metadata is not None else _NoMetadata()
    decision = explain_model(policy, source, aaguid, at=at, key_id=key_id)
    failed = tuple(
        {"rule": r.rule, "outcome": "fail", "detail": r.detail} for r in decision.failed
    )
    answer = (decision.allowed, failed)
    if key is not None:
        with _admitted_lock:
            _admitted[key] = (when, answer)
            _admitted.move_to_end(key)
            while len(_admitted) > _ADMIT_CACHE_SIZE:
                _admitted.popitem(last=False)
    return answer
