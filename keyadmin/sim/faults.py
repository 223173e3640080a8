"""The faults a software key injects, as hooks its CTAP core consults at named points.

The core (keyadmin.sim.authenticator and the command modules) is written to CTAP 2.1 and
passes each value a fault could spoil through one hook of :class:`FaultHooks`:

==================  ===============================  =======================================
hook                what it may change               faults (``KeyState.faults``)
==================  ===============================  =======================================
``before``          answer instead / answer late     ctap-error, slow
``reply``           the encoded success reply        malformed-cbor, truncated
``rp_id``           the RP ID hashed into authData   wrong-rpid-hash
``flags``           the authData flags byte          clear-up-uv
``counter``         the signature counter            counter_mode "rollback"
``signature``       every attestation and assertion  bad-signature
                    signature
``leaf``            the attestation certificate      cert-aaguid-mismatch, no-cert-aaguid
==================  ===============================  =======================================

:class:`NoFaults` changes nothing (a key that follows the spec); :class:`StateFaults` applies
what the key's state file names, read at every call, so changing ``key.state.faults`` on a
running key takes effect at its next command.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from keyadmin.sim.ctap import FLAG_UP, FLAG_UV, Cmd, CtapFailure, Err, Status
from keyadmin.sim.state import Credential, KeyState

Keepalive = Callable[[int], None]

#: The commands ctap-error, slow, malformed-cbor and truncated hit when fault_commands is empty.
DEFAULT_FAULT_COMMANDS = (Cmd.MAKE_CREDENTIAL, Cmd.GET_ASSERTION, Cmd.GET_NEXT_ASSERTION)


class FaultHooks(Protocol):
    """Where a fault may change what the key does (the identity in every hook = no fault)."""

    def before(
        self, command: int, keepalive: Keepalive | None, cancel: threading.Event | None
    ) -> bytes | None:
        """Before ``command`` runs: a reply to send instead of running it, or None. May wait
        (sending keepalives) and raise CtapFailure(KEEPALIVE_CANCEL) when cancelled."""
        ...

    def reply(self, command: int, reply: bytes) -> bytes:
        """The success reply (status byte + CBOR) as it leaves."""
        ...

    def rp_id(self, rp_id: str) -> str:
        """The RP ID whose SHA-256 goes into authenticator data."""
        ...

    def flags(self, flags: int) -> int:
        """The authenticator-data flags byte."""
        ...

    def counter(self, cred: Credential, counter: int) -> int:
        """The signature counter ``cred`` reports (after the core counted this use)."""
        ...

    def signature(self, signature: bytes) -> bytes:
        """An attestation or assertion signature."""
        ...

    def leaf(self, leaf_der: bytes) -> bytes:
        """The batch attestation certificate (DER) put first in x5c."""
        ...


class NoFaults:
    """A key that does what CTAP 2.1 says."""

    def before(
        self, command: int, keepalive: Keepalive | None, cancel: threading.Event | None
    ) -> bytes | None:
        return None

    def reply(self, command: int, reply: bytes) -> bytes:
        return reply

    def rp_id(self, rp_id: str) -> str:
        return rp_id

    def flags(self, flags: int) -> int:
        return flags

    def counter(self, cred: Credential, counter: int) -> int:
        return counter

    def signature(self, signature: bytes) -> bytes:
        return signature

    def leaf(self, leaf_der: bytes) -> bytes:
        return leaf_der


class StateFaults:
    """The faults named in ``state`` (``keyadmin sim init --fault``), read at each call."""

    def __init__(self, state: KeyState) -> None:
        self.state = state

    def _on(self, fault: str) -> bool:
        return fault in self.state.faults

    def _hits(self, fault: str, command: int) -> bool:
        if not self._on(fault):
            return False
        commands = self.state.fault_commands or [int(c) for c in DEFAULT_FAULT_COMMANDS]
        return command in commands

    def before(
        self, command: int, keepalive: Keepalive | None, cancel: threading.Event | None
    ) -> bytes | None:
        if self._hits("ctap-error", command):
            return bytes([self.state.fault_ctap_error & 0xFF])
        if self._hits("slow", command):
            _wait(self.state.fault_delay, keepalive, cancel)
        return None

    def reply(self, command: int, reply: bytes) -> bytes:
        if self._hits("malformed-cbor", command):
            return reply[:1] + b"\xff\xfe" + reply[1:]
        if self._hits("truncated", command):
            return reply[: max(1, len(reply) // 2)]
        return reply

    def rp_id(self, rp_id: str) -> str:
        return rp_id + ".attacker.example" if self._on("wrong-rpid-hash") else rp_id

    def flags(self, flags: int) -> int:
        return flags & ~(FLAG_UP | FLAG_UV) if self._on("clear-up-uv") else flags

    def counter(self, cred: Credential, counter: int) -> int:
        s = self.state
        if s.counter_mode == "rollback" and s.rollback_after and cred.uses > s.rollback_after:
            return cred.uses - s.rollback_after
        return counter

    def signature(self, signature: bytes) -> bytes:
        if self._on("bad-signature"):
            return signature[:-1] + bytes([signature[-1] ^ 0x01])
        return signature

    def leaf(self, leaf_der: bytes) -> bytes:
        mismatch, absent = self._on("cert-aaguid-mismatch"), self._on("no-cert-aaguid")
        if not (mismatch or absent):
            return leaf_der
        return _forged_leaf(self.state, None if absent else uuid.uuid4().bytes)


def _wait(delay: float, keepalive: Keepalive | None, cancel: threading.Event | None) -> None:
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        if keepalive:
            keepalive(Status.UPNEEDED)
        if cancel is not None and cancel.wait(0.05):
            raise CtapFailure(Err.KEEPALIVE_CANCEL, "cancelled by the platform")
        if cancel is None:
            time.sleep(0.05)


def _forged_leaf(state: KeyState, aaguid: bytes | None) -> bytes:
    """The batch certificate re-issued (same key, same validity) with ``aaguid`` in its
    AAGUID extension, or with none."""
    from keyadmin.sim.pki import ec_key, issue_leaf

    inter = x509.load_pem_x509_certificate(state.intermediate_cert_pem.encode())
    leaf = x509.load_pem_x509_certificate(state.leaf_cert_pem.encode())
    forged = issue_leaf(
        aaguid,
        inter,
        ec_key(state.intermediate_key_pem),
        ec_key(state.leaf_key_pem),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
    )
    return forged.public_bytes(serialization.Encoding.DER)
