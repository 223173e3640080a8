"""The software key's CTAP 2.1 authenticator: CBOR request in, status byte + CBOR out.

Transports (keyadmin.sim.hid, keyadmin.sim.pcsc) frame these bytes; this module
knows nothing about them. Every state change is written to the state file
before the reply leaves, so a reply the platform saw is never lost.

A SOFTWARE key: see keyadmin.sim.SOFTWARE_KEY_LABEL.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fido2 import cbor

from keyadmin.sim import SOFTWARE_KEY_LABEL
from keyadmin.sim import extensions as _ext
from keyadmin.sim.credkeys import ES256, IMPLEMENTED, check_available, generate
from keyadmin.sim.credkeys import cose_public as _cose_public
from keyadmin.sim.credkeys import sign as _sign
from keyadmin.sim.ctap import (
    FLAG_AT,
    FLAG_BE,
    FLAG_BS,
    FLAG_ED,
    FLAG_UP,
    FLAG_UV,
    MAX_CONSECUTIVE_PIN_FAILURES,
    MAX_PIN_RETRIES,
    Cmd,
    CtapFailure,
    Err,
    Perm,
    Status,
)
from keyadmin.sim.enterprise import grants as grants_enterprise
from keyadmin.sim.enterprise import signing_identity as enterprise_identity
from keyadmin.sim.largeblobs import MAX_SERIALIZED_LARGE_BLOB_ARRAY, LargeBlobs
from keyadmin.sim.pinproto import PinProtocol, PinProtocolError, PinProtocolV1, PinProtocolV2
from keyadmin.sim.pki import generate_lab_pki, issue_leaf
from keyadmin.sim.state import (
    ATTESTATION_MODES,
    COUNTER_MODES,
    FAULTS,
    Credential,
    KeyState,
    b64d,
    b64e,
    load_state,
    save_state,
)

log = logging.getLogger(__name__)

MAX_MSG_SIZE = 1200
MAX_CRED_COUNT_IN_LIST = 8
MAX_CRED_ID_LENGTH = 64
MAX_RPIDS_FOR_MIN_PIN = 4
DEFAULT_FAULT_COMMANDS = (Cmd.MAKE_CREDENTIAL, Cmd.GET_ASSERTION, Cmd.GET_NEXT_ASSERTION)

Keepalive = Callable[[int], None]


def _load_key(pem: str) -> Any:
    return serialization.load_pem_private_key(pem.encode(), password=None)


def _pem(key: Any) -> str:
    return str(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
    )


def _der(cert_pem: str) -> bytes:
    return x509.load_pem_x509_certificate(cert_pem.encode()).public_bytes(
        serialization.Encoding.DER
    )


def _require(params: dict[int, Any], key: int, kind: type | tuple[type, ...]) -> Any:
    if key not in params:
        raise CtapFailure(Err.MISSING_PARAMETER, f"parameter 0x{key:02x} missing")
    value = params[key]
    if not isinstance(value, kind):
        raise CtapFailure(Err.CBOR_UNEXPECTED_TYPE, f"parameter 0x{key:02x} has the wrong type")
    return value


def _optional(params: dict[int, Any], key: int, kind: type | tuple[type, ...]) -> Any:
    if key not in params:
        return None
    return _require(params, key, kind)


@dataclass
class _Token:
    """The current pinUvAuthToken and its permissions (CTAP 2.1 §6.5.2.1)."""

    value: bytes = field(default_factory=lambda: os.urandom(32))
    permissions: int = 0
    rp_id: str | None = None
    protocol: int = 0
    in_use: bool = False

    def reset(self) -> None:
        self.value = os.urandom(32)
        self.permissions = 0
        self.rp_id = None
        self.protocol = 0
        self.in_use = False


@dataclass
class _PendingAssertions:
    rp_id: str
    client_data_hash: bytes
    creds: list[Credential]
    uv: bool
    up: bool
    with_user_details: bool
    extensions: dict[str, Any] = field(default_factory=dict)


class SoftKey:
    """A SOFTWARE CTAP 2.1 authenticator whose state lives in one file."""

    product_name = SOFTWARE_KEY_LABEL

    def __init__(self, state: KeyState, path: Path | None) -> None:
        self.state = state
        self.path = path
        self._lock = threading.RLock()
        self._protocols: dict[int, PinProtocol] = {1: PinProtocolV1(), 2: PinProtocolV2()}
        self._token = _Token()
        self._pending: _PendingAssertions | None = None
        self._enum_rps: list[str] = []
        self._enum_creds: list[Credential] = []
        self._large_blobs = LargeBlobs(max_fragment=MAX_MSG_SIZE - 64)
        self.power_cycle()

    # ----------------------------------------------------------- lifecycle
    @classmethod
    def open(cls, state_path: str | Path) -> SoftKey:
        path = Path(state_path)
        return cls(load_state(path), path)

    @classmethod
    def create(
        cls,
        state_path: str | Path | None,
        *,
        aaguid: str | None = None,
        firmware: int | None = None,
        counter_mode: str = "per-credential",
        rollback_after: int = 0,
        attestation: str = "packed",
        backup_eligible: bool = False,
        backed_up: bool = False,
        faults: list[str] | None = None,
        fault_commands: list[int] | None = None,
        fault_ctap_error: int = Err.OTHER,
        fault_delay: float = 0.0,
        transports: list[str] | None = None,
        algorithms: list[int] | None = None,
    ) -> SoftKey:
        """Create a new key with a fresh lab PKI; write it to ``state_path`` (unless None).

        ``algorithms``: the COSE algorithms its credentials may use (default ES256, EdDSA)."""
        if counter_mode not in COUNTER_MODES:
            raise ValueError(f"counter mode must be one of {', '.join(COUNTER_MODES)}")
        if attestation not in ATTESTATION_MODES:
            raise ValueError(f"attestation must be one of {', '.join(ATTESTATION_MODES)}")
        unknown = sorted(set(faults or []) - set(FAULTS))
        if unknown:
            raise ValueError(f"unknown fault {unknown[0]!r}; known: {', '.join(FAULTS)}")
        state = KeyState(
            counter_mode=counter_mode,
            rollback_after=rollback_after,
            attestation=attestation,
            backup_eligible=backup_eligible or backed_up,
            backed_up=backed_up,
            faults=list(faults or []),
            fault_commands=list(fault_commands or []),
            fault_ctap_error=int(fault_ctap_error),
            fault_delay=fault_delay,
        )
        if aaguid:
            state.aaguid = str(uuid.UUID(aaguid))
        if firmware is not None:
            state.firmware = firmware
        if transports:
            state.transports = list(transports)
        if algorithms:
            for alg in algorithms:
                check_available(alg)
            state.algorithms = list(dict.fromkeys(algorithms))
        pki = generate_lab_pki(state.aaguid, leaf_under_root=attestation == "fido-u2f")
        state.root_cert_pem, state.root_key_pem = pki.root_cert_pem, pki.root_key_pem
        state.intermediate_cert_pem = pki.intermediate_cert_pem
        state.intermediate_key_pem = pki.intermediate_key_pem
        state.leaf_cert_pem, state.leaf_key_pem = pki.leaf_cert_pem, pki.leaf_key_pem
        path = Path(state_path) if state_path is not None else None
        if path is not None:
            save_state(path, state)
        return cls(state, path)

    def power_cycle(self) -> None:
        """What removing and re-inserting the key does: volatile state is gone."""
        with self._lock:
            self._consecutive_pin_failures = 0
            for proto in self._protocols.values():
                proto.regenerate()
            self._token.reset()
            self._pending = None
            self._enum_rps = []
            self._enum_creds = []
            self._large_blobs.power_cycle()

    @property
    def aaguid(self) -> bytes:
        return uuid.UUID(self.state.aaguid).bytes

    def root_certificate_pem(self) -> str:
        return self.state.root_cert_pem

    def _save(self) -> None:
        if self.path is not None:
            save_state(self.path, self.state)

    # ----------------------------------------------------------- dispatch
    def process(
        self,
        request: bytes,
        *,
        keepalive: Keepalive | None = None,
        cancel: threading.Event | None = None,
    ) -> bytes:
        """Answer one CTAP2 request (command byte + CBOR) with status byte + CBOR."""
        with self._lock:
            if not request:
                return bytes([Err.INVALID_LENGTH])
            command = request[0]
            try:
                if self._fault_applies("ctap-error", command):
                    return bytes([self.state.fault_ctap_error & 0xFF])
                if self._fault_applies("slow", command):
                    self._wait_slowly(keepalive, cancel)
                params = self._decode_params(request[1:])
                result = self._dispatch(command, params, keepalive, cancel)
                reply = bytes([Err.SUCCESS]) + (cbor.encode(result) if result is not None else b"")
            except CtapFailure as failure:
                log.debug("softkey command 0x%02x refused: %s", command, failure)
                return bytes([failure.code])
            if self._fault_applies("malformed-cbor", command):
                return reply[:1] + b"\xff\xfe" + reply[1:]
            if self._fault_applies("truncated", command):
                return reply[: max(1, len(reply) // 2)]
            return reply

    def _fault_applies(self, fault: str, command: int) -> bool:
        if fault not in self.state.faults:
            return False
        commands = self.state.fault_commands or [int(c) for c in DEFAULT_FAULT_COMMANDS]
        return command in commands

    def _wait_slowly(self, keepalive: Keepalive | None, cancel: threading.Event | None) -> None:
        deadline = time.monotonic() + self.state.fault_delay
        while time.monotonic() < deadline:
            if keepalive:
                keepalive(Status.UPNEEDED)
            if cancel is not None and cancel.wait(0.05):
                raise CtapFailure(Err.KEEPALIVE_CANCEL, "cancelled by the platform")
            if cancel is None:
                time.sleep(0.05)

    @staticmethod
    def _decode_params(data: bytes) -> dict[int, Any]:
        if not data:
            return {}
        try:
            value, rest = cbor.decode_from(data)
        except Exception:  # noqa: BLE001 - any decoding failure is invalid CBOR
            raise CtapFailure(Err.INVALID_CBOR, "request is not valid CBOR") from None
        if rest:
            raise CtapFailure(Err.INVALID_CBOR, "trailing bytes after the request")
        if not isinstance(value, dict):
            raise CtapFailure(Err.CBOR_UNEXPECTED_TYPE, "request parameters are not a map")
        return value

    def _dispatch(
        self,
        command: int,
        params: dict[int, Any],
        keepalive: Keepalive | None,
        cancel: threading.Event | None,
    ) -> dict[int, Any] | None:
        if command == Cmd.GET_INFO:
            return self.get_info()
        if command == Cmd.MAKE_CREDENTIAL:
            return self._make_credential(params)
        if command == Cmd.GET_ASSERTION:
            return self._get_assertion(params)
        if command == Cmd.GET_NEXT_ASSERTION:
            return self._get_next_assertion()
        if command == Cmd.CLIENT_PIN:
            return self._client_pin(params)
        if command == Cmd.RESET:
            self._reset()
            return None
        if command in (Cmd.CREDENTIAL_MGMT, Cmd.CREDENTIAL_MGMT_PRE):
            return self._cred_mgmt(params, command)
        if command == Cmd.SELECTION:
            return None
        if command == Cmd.CONFIG:
            self._config(params)
            return None
        if command == Cmd.LARGE_BLOBS:
            protected = self.state.pin_hash is not None or self.state.always_uv
            return self._large_blobs.command(
                params, self.state, protected, self._check_lbw_token, self._save
            )
        raise CtapFailure(Err.INVALID_COMMAND, f"unknown command 0x{command:02x}")

    # ----------------------------------------------------------- getInfo
    def _discoverable(self) -> list[Credential]:
        return [c for c in self.state.credentials if c.discoverable]

    def get_info(self) -> dict[int, Any]:
        s = self.state
        options: dict[str, bool] = {
            "rk": True,
            "up": True,
            "plat": False,
            "clientPin": s.pin_hash is not None,
            "credMgmt": True,
            "authnrCfg": True,
            "alwaysUv": s.always_uv,
            "setMinPINLength": True,
            "ep": s.ep_enabled,
            "pinUvAuthToken": True,
            "makeCredUvNotRqd": not s.always_uv,
            "largeBlobs": True,
        }
        return {
            0x01: ["FIDO_2_0", "FIDO_2_1"],
            0x02: list(_ext.SUPPORTED),
            0x03: self.aaguid,
            0x04: options,
            0x05: MAX_MSG_SIZE,
            0x06: [2, 1],
            0x07: MAX_CRED_COUNT_IN_LIST,
            0x08: MAX_CRED_ID_LENGTH,
            0x09: list(s.transports),
            0x0A: [{"type": "public-key", "alg": a} for a in s.algorithms],
            0x0B: MAX_SERIALIZED_LARGE_BLOB_ARRAY,
            0x0C: s.force_pin_change,
            0x0D: s.min_pin_length,
            0x0E: s.firmware,
            0x0F: _ext.MAX_CRED_BLOB_LENGTH,
            0x10: MAX_RPIDS_FOR_MIN_PIN,
            0x14: max(0, s.max_discoverable - len(self._discoverable())),
        }

    # ----------------------------------------------------------- PIN/UV auth
    def _protocol(self, params: dict[int, Any], key: int) -> PinProtocol:
        version = _require(params, key, int)
        proto = self._protocols.get(version)
        if proto is None:
            raise CtapFailure(Err.INVALID_PARAMETER, f"PIN/UV protocol {version} not supported")
        return proto

    def _check_token(
        self,
        params: dict[int, Any],
        param_key: int,
        proto_key: int,
        message: bytes,
        permission: int,
        rp_id: str | None,
    ) -> None:
        """Verify pinUvAuthParam over ``message`` with the current token (CTAP 2.1 §6.5.5.7)."""
        proto = self._protocol(params, proto_key)
        auth = _require(params, param_key, bytes)
        tok = self._token
        if not tok.in_use or tok.protocol != proto.version:
            raise CtapFailure(Err.PIN_AUTH_INVALID, "no token from this protocol")
        if not proto.verify(tok.value, message, auth):
            raise CtapFailure(Err.PIN_AUTH_INVALID, "pinUvAuthParam does not verify")
        if not tok.permissions & permission:
            raise CtapFailure(Err.PIN_AUTH_INVALID, "token lacks the permission")
        if rp_id is not None:
            if tok.rp_id is None:
                tok.rp_id = rp_id
            elif not hmac.compare_digest(tok.rp_id.encode(), rp_id.encode()):
                raise CtapFailure(Err.PIN_AUTH_INVALID, "token is bound to another RP ID")

    def _check_lbw_token(
        self, params: dict[int, Any], param_key: int, proto_key: int, message: bytes, perm: int
    ) -> None:
        self._check_token(params, param_key, proto_key, message, perm, None)

    def _uv_gate(self, params: dict[int, Any], param_key: int, probe: bool) -> None:
        """An empty pinUvAuthParam is a 'touch to select' probe (CTAP 2.1 §6.1.2 step 1)."""
        auth = params.get(param_key)
        if probe and isinstance(auth, bytes) and len(auth) == 0:
            if self.state.pin_hash is not None:
                raise CtapFailure(Err.PIN_AUTH_INVALID, "selection probe; a PIN is set")
            raise CtapFailure(Err.PIN_NOT_SET, "selection probe; no PIN set")

    # ----------------------------------------------------------- makeCredential
    def _make_credential(self, params: dict[int, Any]) -> dict[int, Any]:
        s = self.state
        self._uv_gate(params, 0x08, probe=True)
        cdh = _require(params, 0x01, bytes)
        rp = _require(params, 0x02, dict)
        user = _require(params, 0x03, dict)
        cred_params = _require(params, 0x04, list)
        exclude = _optional(params, 0x05, list) or []
        extensions = _optional(params, 0x06, dict) or {}
        options = _optional(params, 0x07, dict) or {}
        ep = _optional(params, 0x0A, int)
        rp_id = rp.get("id")
        user_id = user.get("id")
        if not isinstance(rp_id, str) or not isinstance(user_id, bytes):
            raise CtapFailure(Err.MISSING_PARAMETER, "rp.id or user.id missing")
        if len(user_id) > 64:
            raise CtapFailure(Err.INVALID_LENGTH, "user.id longer than 64 bytes")
        alg = next(
            (
                p.get("alg")
                for p in cred_params
                if isinstance(p, dict)
                and p.get("type") == "public-key"
                and p.get("alg") in s.algorithms
                and p.get("alg") in IMPLEMENTED
            ),
            None,
        )
        if alg is None:
            raise CtapFailure(Err.UNSUPPORTED_ALGORITHM, "no supported algorithm offered")
        rk = bool(options.get("rk", False))
        if options.get("uv"):
            raise CtapFailure(Err.INVALID_OPTION, "no built-in user verification; use the PIN")
        if options.get("up") is False:
            raise CtapFailure(Err.INVALID_OPTION, "makeCredential always needs user presence")
        uv = False
        if 0x08 in params:
            self._check_token(params, 0x08, 0x09, cdh, Perm.MC, rp_id)
            uv = True
        elif s.pin_hash is not None and (rk or s.always_uv):
            raise CtapFailure(Err.PUAT_REQUIRED, "a PIN is set: user verification required")
        elif s.always_uv:
            raise CtapFailure(Err.PIN_NOT_SET, "alwaysUv is on but no PIN is set")
        if ep is not None:
            if not s.ep_enabled:
                raise CtapFailure(Err.INVALID_PARAMETER, "enterprise attestation is not enabled")
            if ep not in (1, 2):
                raise CtapFailure(Err.INVALID_OPTION, "enterpriseAttestation must be 1 or 2")
        enterprise = grants_enterprise(s, ep, rp_id)
        for desc in exclude:
            cred = self._find_credential(rp_id, desc)
            if cred is not None and (cred.cred_protect < 3 or uv):
                raise CtapFailure(Err.CREDENTIAL_EXCLUDED, "a credential in excludeList exists")
        cred_protect = extensions.get("credProtect", 1)
        if not isinstance(cred_protect, int) or cred_protect not in (1, 2, 3):
            raise CtapFailure(Err.INVALID_OPTION, "credProtect must be 1, 2 or 3")
        same_user: list[Credential] = []
        if rk:
            same_user = [
                c for c in self._discoverable() if c.rp_id == rp_id and c.user_id_bytes == user_id
            ]
            if not same_user and len(self._discoverable()) >= s.max_discoverable:
                raise CtapFailure(Err.KEY_STORE_FULL, "no room for another discoverable credential")

        key: Any = generate(alg)
        cred = Credential(
            credential_id=b64e(os.urandom(32)),
            rp_id=rp_id,
            rp_name=rp.get("name") if isinstance(rp.get("name"), str) else None,
            user_id=b64e(user_id),
            user_name=user.get("name") if isinstance(user.get("name"), str) else None,
            user_display_name=(
                user.get("displayName") if isinstance(user.get("displayName"), str) else None
            ),
            algorithm=alg,
            private_key_pem=_pem(key),
            discoverable=rk,
            cred_protect=cred_protect,
            created=time.time(),
        )
        more = _ext.make_credential(extensions, cred, s, self._protocols, uv=uv)
        for old in same_user:  # one discoverable credential per (RP, user), once extensions pass
            s.credentials.remove(old)
        counter = self._next_counter(cred)
        s.credentials.append(cred)
        flags = FLAG_UP | FLAG_AT | (FLAG_UV if uv else 0)
        ext_out: dict[str, Any] = {}
        if "credProtect" in extensions:
            ext_out["credProtect"] = cred_protect
        ext_out.update(more.auth_data)
        if ext_out:
            flags |= FLAG_ED
        aaguid = b"\0" * 16 if s.attestation == "fido-u2f" else self.aaguid
        cose = _cose_public(alg, key)
        att_cred = (
            aaguid + len(cred.id_bytes).to_bytes(2, "big") + cred.id_bytes + cbor.encode(cose)
        )
        auth_data = self._auth_data(rp_id, flags, counter) + att_cred
        if ext_out:
            auth_data += cbor.encode(ext_out)
        if enterprise:
            fmt, att_stmt = self._attest_enterprise(auth_data + cdh)
        else:
            fmt, att_stmt = self._attest(auth_data, cdh, cred, key, cose, rp_id)
        self._save()
        result: dict[int, Any] = {0x01: fmt, 0x02: auth_data, 0x03: att_stmt}
        if enterprise:
            result[0x04] = True
        if more.large_blob_key is not None:
            result[0x05] = more.large_blob_key
        return result

    def _auth_data(self, rp_id: str, flags: int, counter: int) -> bytes:
        s = self.state
        if "wrong-rpid-hash" in s.faults:
            rp_id = rp_id + ".attacker.example"
        if s.backup_eligible:
            flags |= FLAG_BE
        if s.backed_up:
            flags |= FLAG_BS
        if "clear-up-uv" in s.faults:
            flags &= ~(FLAG_UP | FLAG_UV)
        return hashlib.sha256(rp_id.encode()).digest() + bytes([flags]) + counter.to_bytes(4, "big")

    def _maybe_break(self, signature: bytes) -> bytes:
        if "bad-signature" in self.state.faults:
            return signature[:-1] + bytes([signature[-1] ^ 0x01])
        return signature

    def _attest(
        self,
        auth_data: bytes,
        cdh: bytes,
        cred: Credential,
        key: Any,
        cose: dict[int, Any],
        rp_id: str,
    ) -> tuple[str, dict[str, Any]]:
        s = self.state
        mode = s.attestation
        if mode == "none":
            return "none", {}
        if mode == "self":
            sig = _sign(cred.algorithm, key, auth_data + cdh)
            return "packed", {"alg": cred.algorithm, "sig": self._maybe_break(sig)}
        leaf_key = _load_key(s.leaf_key_pem)
        leaf_der = _der(s.leaf_cert_pem)
        if "cert-aaguid-mismatch" in s.faults or "no-cert-aaguid" in s.faults:
            other = None if "no-cert-aaguid" in s.faults else uuid.uuid4().bytes
            inter = x509.load_pem_x509_certificate(s.intermediate_cert_pem.encode())
            leaf = x509.load_pem_x509_certificate(s.leaf_cert_pem.encode())
            forged = issue_leaf(
                other,
                inter,
                _load_key(s.intermediate_key_pem),
                leaf_key,
                not_before=leaf.not_valid_before_utc,
                not_after=leaf.not_valid_after_utc,
            )
            leaf_der = forged.public_bytes(serialization.Encoding.DER)
        if mode == "fido-u2f":
            if cred.algorithm != ES256:
                raise CtapFailure(Err.UNSUPPORTED_ALGORITHM, "fido-u2f attestation needs ES256")
            point = b"\x04" + cose[-2] + cose[-3]
            signed = b"\0" + hashlib.sha256(rp_id.encode()).digest() + cdh + cred.id_bytes + point
            sig = _sign(ES256, leaf_key, signed)
            return "fido-u2f", {"sig": self._maybe_break(sig), "x5c": [leaf_der]}
        sig = _sign(ES256, leaf_key, auth_data + cdh)
        return "packed", {
            "alg": ES256,
            "sig": self._maybe_break(sig),
            "x5c": [leaf_der, _der(s.intermediate_cert_pem)],
        }

    def _attest_enterprise(self, signed: bytes) -> tuple[str, dict[str, Any]]:
        """Packed attestation with the key's own enterprise certificate (its serial)."""
        ep_key, ep_der = enterprise_identity(self.state)
        return "packed", {
            "alg": ES256,
            "sig": self._maybe_break(_sign(ES256, ep_key, signed)),
            "x5c": [ep_der, _der(self.state.intermediate_cert_pem)],
        }

    def _next_counter(self, cred: Credential) -> int:
        s = self.state
        cred.uses += 1
        mode = s.counter_mode
        if mode == "zero":
            cred.counter = 0
        elif mode == "global":
            s.global_counter += 1
            cred.counter = s.global_counter
        elif mode == "rollback" and s.rollback_after and cred.uses > s.rollback_after:
            cred.counter = cred.uses - s.rollback_after
        else:
            cred.counter = cred.uses
        return cred.counter

    def _find_credential(self, rp_id: str, descriptor: Any) -> Credential | None:
        if not isinstance(descriptor, dict):
            raise CtapFailure(Err.CBOR_UNEXPECTED_TYPE, "credential descriptor is not a map")
        cred_id = descriptor.get("id")
        if not isinstance(cred_id, bytes):
            raise CtapFailure(Err.CBOR_UNEXPECTED_TYPE, "credential descriptor without id")
        for cred in self.state.credentials:
            if cred.rp_id == rp_id and hmac.compare_digest(cred.id_bytes, cred_id):
                return cred
        return None

    # ----------------------------------------------------------- getAssertion
    def _get_assertion(self, params: dict[int, Any]) -> dict[int, Any]:
        s = self.state
        self._pending = None  # a new getAssertion ends any earlier one, refused or not
        self._uv_gate(params, 0x06, probe=True)
        rp_id = _require(params, 0x01, str)
        cdh = _require(params, 0x02, bytes)
        allow = _optional(params, 0x03, list) or []
        extensions = _optional(params, 0x04, dict) or {}
        options = _optional(params, 0x05, dict) or {}
        if options.get("uv"):
            raise CtapFailure(Err.INVALID_OPTION, "no built-in user verification; use the PIN")
        if "rk" in options:
            raise CtapFailure(Err.UNSUPPORTED_OPTION, "rk is not an option of getAssertion")
        up = bool(options.get("up", True))
        uv = False
        if 0x06 in params:
            self._check_token(params, 0x06, 0x07, cdh, Perm.GA, rp_id)
            uv = True
        elif s.always_uv and s.pin_hash is not None:
            raise CtapFailure(Err.PUAT_REQUIRED, "alwaysUv is on: user verification required")
        if allow:
            found = [c for c in (self._find_credential(rp_id, d) for d in allow) if c is not None]
            creds = [c for c in found if c.cred_protect < 3 or uv]
        else:
            creds = [
                c for c in self._discoverable() if c.rp_id == rp_id and (c.cred_protect == 1 or uv)
            ]
            creds.sort(key=lambda c: c.created, reverse=True)
        if not creds:
            raise CtapFailure(Err.NO_CREDENTIALS, f"no credential for {rp_id}")
        pending = _PendingAssertions(
            rp_id, cdh, creds[1:], uv, up, with_user_details=uv, extensions=extensions
        )
        response = self._assert_one(creds[0], pending, discoverable=not allow)
        if not allow and len(creds) > 1:
            response[0x05] = len(creds)
            self._pending = pending
        else:
            self._pending = None
        return response

    def _get_next_assertion(self) -> dict[int, Any]:
        pending = self._pending
        if pending is None or not pending.creds:
            self._pending = None
            raise CtapFailure(Err.NOT_ALLOWED, "no assertions pending")
        cred = pending.creds.pop(0)
        return self._assert_one(cred, pending, discoverable=True)

    def _assert_one(
        self, cred: Credential, pending: _PendingAssertions, *, discoverable: bool
    ) -> dict[int, Any]:
        flags = (FLAG_UP if pending.up else 0) | (FLAG_UV if pending.uv else 0)
        more = _ext.get_assertion(pending.extensions, cred, self._protocols, uv=pending.uv)
        if more.auth_data:
            flags |= FLAG_ED
        counter = self._next_counter(cred)
        auth_data = self._auth_data(pending.rp_id, flags, counter)
        if more.auth_data:
            auth_data += cbor.encode(more.auth_data)
        key = _load_key(cred.private_key_pem)
        sig = self._maybe_break(_sign(cred.algorithm, key, auth_data + pending.client_data_hash))
        self._save()
        response: dict[int, Any] = {
            0x01: {"type": "public-key", "id": cred.id_bytes},
            0x02: auth_data,
            0x03: sig,
        }
        if discoverable:
            user: dict[str, Any] = {"id": cred.user_id_bytes}
            if pending.with_user_details:
                if cred.user_name is not None:
                    user["name"] = cred.user_name
                if cred.user_display_name is not None:
                    user["displayName"] = cred.user_display_name
            response[0x04] = user
        if more.large_blob_key is not None:
            response[0x07] = more.large_blob_key
        return response

    # ----------------------------------------------------------- clientPIN
    def _client_pin(self, params: dict[int, Any]) -> dict[int, Any] | None:
        sub = _require(params, 0x02, int)
        s = self.state
        if sub == 0x01:  # getPINRetries; a YubiKey without a PIN answers PIN_NOT_SET
            if s.pin_hash is None:
                raise CtapFailure(Err.PIN_NOT_SET, "no PIN set")
            return {0x03: s.pin_retries, 0x04: self._pin_auth_blocked()}
        proto = self._protocol(params, 0x01)
        if sub == 0x02:  # getKeyAgreement
            return {0x01: proto.get_public_key()}
        if sub == 0x03:
            self._set_pin(params, proto)
            return None
        if sub == 0x04:
            self._change_pin(params, proto)
            return None
        if sub == 0x05:  # getPinToken (CTAP 2.0): mc and ga permissions
            return self._pin_token(params, proto, Perm.MC | Perm.GA, None)
        if sub == 0x09:  # getPinUvAuthTokenUsingPinWithPermissions
            permissions = _require(params, 0x09, int)
            rp_id = _optional(params, 0x0A, str)
            if permissions == 0:
                raise CtapFailure(Err.INVALID_PARAMETER, "permissions must not be zero")
            if permissions & ~(Perm.MC | Perm.GA | Perm.CM | Perm.LBW | Perm.ACFG):
                raise CtapFailure(Err.UNAUTHORIZED_PERMISSION, "permission not supported")
            if permissions & (Perm.MC | Perm.GA) and rp_id is None:
                raise CtapFailure(Err.MISSING_PARAMETER, "mc/ga permissions need an rpId")
            return self._pin_token(params, proto, permissions, rp_id)
        if sub in (0x06, 0x07):
            raise CtapFailure(Err.INVALID_SUBCOMMAND, "no built-in user verification")
        raise CtapFailure(Err.INVALID_SUBCOMMAND, f"clientPIN subcommand {sub}")

    def _pin_auth_blocked(self) -> bool:
        return self._consecutive_pin_failures >= MAX_CONSECUTIVE_PIN_FAILURES

    def _shared_secret(self, params: dict[int, Any], proto: PinProtocol) -> bytes:
        platform_key = _require(params, 0x03, dict)
        try:
            return proto.decapsulate(platform_key)
        except PinProtocolError as e:
            raise CtapFailure(Err.INVALID_PARAMETER, str(e)) from None

    def _decrypt_new_pin(self, proto: PinProtocol, shared: bytes, new_pin_enc: bytes) -> bytes:
        expected = 64 if proto.version == 1 else 80
        if len(new_pin_enc) != expected:
            raise CtapFailure(Err.INVALID_PARAMETER, "newPinEnc has the wrong length")
        try:
            padded = proto.decrypt(shared, new_pin_enc)
        except PinProtocolError as e:
            raise CtapFailure(Err.INVALID_PARAMETER, str(e)) from None
        pin = padded.split(b"\0", 1)[0]
        if len(pin) > 63:
            raise CtapFailure(Err.PIN_POLICY_VIOLATION, "PIN longer than 63 bytes")
        try:
            code_points = len(pin.decode("utf-8"))
        except UnicodeDecodeError:
            raise CtapFailure(Err.PIN_POLICY_VIOLATION, "PIN is not UTF-8") from None
        if code_points < self.state.min_pin_length:
            raise CtapFailure(Err.PIN_POLICY_VIOLATION, "PIN shorter than minPINLength")
        return pin

    def _store_pin(self, pin: bytes) -> None:
        s = self.state
        s.pin_hash = b64e(hashlib.sha256(pin).digest()[:16])
        s.pin_code_points = len(pin.decode("utf-8"))
        s.pin_retries = MAX_PIN_RETRIES
        s.force_pin_change = False
        self._token.reset()
        self._save()

    def _set_pin(self, params: dict[int, Any], proto: PinProtocol) -> None:
        shared = self._shared_secret(params, proto)
        auth = _require(params, 0x04, bytes)
        new_pin_enc = _require(params, 0x05, bytes)
        if self.state.pin_hash is not None:
            raise CtapFailure(Err.PIN_AUTH_INVALID, "a PIN is already set; use changePIN")
        if not proto.verify(shared, new_pin_enc, auth):
            raise CtapFailure(Err.PIN_AUTH_INVALID, "pinUvAuthParam does not verify")
        self._store_pin(self._decrypt_new_pin(proto, shared, new_pin_enc))

    def _verify_pin_hash(self, proto: PinProtocol, shared: bytes, pin_hash_enc: bytes) -> None:
        """Check pinHashEnc against the stored PIN, counting retries (CTAP 2.1 §6.5.5.5)."""
        s = self.state
        if s.pin_retries <= 0:
            raise CtapFailure(Err.PIN_BLOCKED, "PIN retries exhausted")
        if self._pin_auth_blocked():
            raise CtapFailure(Err.PIN_AUTH_BLOCKED, "power cycle needed")
        s.pin_retries -= 1
        self._save()  # the decrement is persisted before the comparison
        try:
            got = proto.decrypt(shared, pin_hash_enc)[:16]
        except PinProtocolError:
            got = b""
        stored = b64d(s.pin_hash or "")
        if not (len(got) == 16 and hmac.compare_digest(got, stored)):
            proto.regenerate()
            self._consecutive_pin_failures += 1
            if s.pin_retries <= 0:
                raise CtapFailure(Err.PIN_BLOCKED, "PIN retries exhausted")
            if self._pin_auth_blocked():
                raise CtapFailure(Err.PIN_AUTH_BLOCKED, "3 consecutive wrong PINs")
            raise CtapFailure(Err.PIN_INVALID, "wrong PIN")
        s.pin_retries = MAX_PIN_RETRIES
        self._consecutive_pin_failures = 0
        self._save()

    def _change_pin(self, params: dict[int, Any], proto: PinProtocol) -> None:
        shared = self._shared_secret(params, proto)
        auth = _require(params, 0x04, bytes)
        new_pin_enc = _require(params, 0x05, bytes)
        pin_hash_enc = _require(params, 0x06, bytes)
        if self.state.pin_hash is None:
            raise CtapFailure(Err.PIN_NOT_SET, "no PIN to change")
        if self.state.pin_retries <= 0:
            raise CtapFailure(Err.PIN_BLOCKED, "PIN retries exhausted")
        if not proto.verify(shared, new_pin_enc + pin_hash_enc, auth):
            raise CtapFailure(Err.PIN_AUTH_INVALID, "pinUvAuthParam does not verify")
        self._verify_pin_hash(proto, shared, pin_hash_enc)
        new_pin = self._decrypt_new_pin(proto, shared, new_pin_enc)
        new_hash = b64e(hashlib.sha256(new_pin).digest()[:16])
        if self.state.force_pin_change and hmac.compare_digest(new_hash, self.state.pin_hash or ""):
            raise CtapFailure(Err.PIN_POLICY_VIOLATION, "a PIN change is forced: pick a new PIN")
        self._store_pin(new_pin)

    def _pin_token(
        self, params: dict[int, Any], proto: PinProtocol, permissions: int, rp_id: str | None
    ) -> dict[int, Any]:
        shared = self._shared_secret(params, proto)
        pin_hash_enc = _require(params, 0x06, bytes)
        if self.state.pin_hash is None:
            raise CtapFailure(Err.PIN_NOT_SET, "no PIN set")
        self._verify_pin_hash(proto, shared, pin_hash_enc)
        if self.state.force_pin_change:
            # CTAP 2.1 §6.5.5.7: getPinToken (0x05) answers PIN_INVALID, the 0x09 form
            # PIN_POLICY_VIOLATION; the right PIN was checked first, so no retry is lost
            legacy = params.get(0x02) == 0x05
            code = Err.PIN_INVALID if legacy else Err.PIN_POLICY_VIOLATION
            raise CtapFailure(code, "the PIN must be changed first")
        tok = self._token
        tok.reset()
        tok.permissions = permissions
        tok.rp_id = rp_id
        tok.protocol = proto.version
        tok.in_use = True
        return {0x02: proto.encrypt(shared, tok.value)}

    # ----------------------------------------------------------- reset
    def _reset(self) -> None:
        s = self.state
        s.credentials = []
        s.pin_hash = None
        s.pin_code_points = 0
        s.pin_retries = MAX_PIN_RETRIES
        s.min_pin_length = 4
        s.min_pin_length_rp_ids = []
        s.force_pin_change = False
        s.always_uv = False
        s.ep_enabled = False
        s.large_blob_array = ""
        s.global_counter = 0
        self._save()
        self.power_cycle()

    # ----------------------------------------------------------- credential management
    def _cred_mgmt(self, params: dict[int, Any], command: int) -> dict[int, Any] | None:
        sub = _require(params, 0x01, int)
        sub_params = _optional(params, 0x02, dict)
        authed = (0x01, 0x02, 0x04, 0x06, 0x07)
        rp_hash_param = (sub_params or {}).get(0x01)
        if sub in authed:
            message = bytes([sub]) + (cbor.encode(sub_params) if sub_params is not None else b"")
            rp_bound = None
            if sub == 0x04 and isinstance(rp_hash_param, bytes):
                rp_bound = self._rp_for_hash(rp_hash_param)
            self._check_token(params, 0x04, 0x03, message, Perm.CM, None)
            if rp_bound is not None and self._token.rp_id not in (None, rp_bound):
                raise CtapFailure(Err.PIN_AUTH_INVALID, "token bound to another RP")
        if sub == 0x01:
            disc = self._discoverable()
            return {0x01: len(disc), 0x02: max(0, self.state.max_discoverable - len(disc))}
        if sub == 0x02:
            rp_ids = sorted({c.rp_id for c in self._discoverable()})
            if not rp_ids:
                raise CtapFailure(Err.NO_CREDENTIALS, "no discoverable credentials")
            self._enum_rps = rp_ids[1:]
            return {**self._rp_entry(rp_ids[0]), 0x05: len(rp_ids)}
        if sub == 0x03:
            if not self._enum_rps:
                raise CtapFailure(Err.NOT_ALLOWED, "no RP enumeration in progress")
            return self._rp_entry(self._enum_rps.pop(0))
        if sub == 0x04:
            if not isinstance(rp_hash_param, bytes):
                raise CtapFailure(Err.MISSING_PARAMETER, "rpIDHash missing")
            creds = [
                c
                for c in self._discoverable()
                if hmac.compare_digest(hashlib.sha256(c.rp_id.encode()).digest(), rp_hash_param)
            ]
            if not creds:
                raise CtapFailure(Err.NO_CREDENTIALS, "no credentials for that RP")
            self._enum_creds = creds[1:]
            return {**self._cred_entry(creds[0]), 0x09: len(creds)}
        if sub == 0x05:
            if not self._enum_creds:
                raise CtapFailure(Err.NOT_ALLOWED, "no credential enumeration in progress")
            return self._cred_entry(self._enum_creds.pop(0))
        if sub == 0x06:
            cred = self._cred_by_descriptor(sub_params)
            self.state.credentials.remove(cred)
            self._save()
            return None
        if sub == 0x07:
            cred = self._cred_by_descriptor(sub_params)
            user = (sub_params or {}).get(0x03)
            if not isinstance(user, dict) or not isinstance(user.get("id"), bytes):
                raise CtapFailure(Err.MISSING_PARAMETER, "user entity missing")
            if not hmac.compare_digest(user["id"], cred.user_id_bytes):
                raise CtapFailure(Err.INVALID_PARAMETER, "user.id does not match the credential")
            cred.user_name = user.get("name") if isinstance(user.get("name"), str) else None
            name = user.get("displayName")
            cred.user_display_name = name if isinstance(name, str) else None
            self._save()
            return None
        raise CtapFailure(Err.INVALID_SUBCOMMAND, f"credentialManagement subcommand {sub}")

    def _rp_for_hash(self, rp_hash: bytes) -> str | None:
        for cred in self._discoverable():
            if hmac.compare_digest(hashlib.sha256(cred.rp_id.encode()).digest(), rp_hash):
                return cred.rp_id
        return None

    def _rp_entry(self, rp_id: str) -> dict[int, Any]:
        rp: dict[str, Any] = {"id": rp_id}
        name = next(
            (c.rp_name for c in self._discoverable() if c.rp_id == rp_id and c.rp_name), None
        )
        if name:
            rp["name"] = name
        return {0x03: rp, 0x04: hashlib.sha256(rp_id.encode()).digest()}

    def _cred_entry(self, cred: Credential) -> dict[int, Any]:
        user: dict[str, Any] = {"id": cred.user_id_bytes}
        if cred.user_name is not None:
            user["name"] = cred.user_name
        if cred.user_display_name is not None:
            user["displayName"] = cred.user_display_name
        key = _load_key(cred.private_key_pem)
        entry = {
            0x06: user,
            0x07: {"type": "public-key", "id": cred.id_bytes},
            0x08: _cose_public(cred.algorithm, key),
            0x0A: cred.cred_protect,
        }
        if cred.large_blob_key:
            entry[0x0B] = b64d(cred.large_blob_key)
        return entry

    def _cred_by_descriptor(self, sub_params: dict[int, Any] | None) -> Credential:
        desc = (sub_params or {}).get(0x02)
        if not isinstance(desc, dict) or not isinstance(desc.get("id"), bytes):
            raise CtapFailure(Err.MISSING_PARAMETER, "credentialID missing")
        for cred in self._discoverable():
            if hmac.compare_digest(cred.id_bytes, desc["id"]):
                if self._token.rp_id not in (None, cred.rp_id):
                    raise CtapFailure(Err.PIN_AUTH_INVALID, "token bound to another RP")
                return cred
        raise CtapFailure(Err.NO_CREDENTIALS, "no such credential")

    # ----------------------------------------------------------- authenticatorConfig
    def _config(self, params: dict[int, Any]) -> None:
        s = self.state
        sub = _require(params, 0x01, int)
        sub_params = _optional(params, 0x02, dict)
        if s.pin_hash is not None or s.always_uv or 0x04 in params:
            if s.pin_hash is None and 0x04 not in params:
                raise CtapFailure(Err.PUAT_REQUIRED, "alwaysUv is on: authenticate first")
            message = b"\xff" * 32 + bytes([Cmd.CONFIG, sub])
            if sub_params is not None:
                message += cbor.encode(sub_params)
            self._check_token(params, 0x04, 0x03, message, Perm.ACFG, None)
        if sub == 0x01:
            s.ep_enabled = True
        elif sub == 0x02:
            s.always_uv = not s.always_uv
        elif sub == 0x03:
            self._set_min_pin_length(sub_params or {})
        else:
            raise CtapFailure(Err.INVALID_SUBCOMMAND, f"authenticatorConfig subcommand {sub}")
        self._save()

    def _set_min_pin_length(self, sub_params: dict[int, Any]) -> None:
        s = self.state
        new_min = sub_params.get(0x01, s.min_pin_length)
        rp_ids = sub_params.get(0x02, [])
        force = bool(sub_params.get(0x03, False))
        if not isinstance(new_min, int) or not isinstance(rp_ids, list):
            raise CtapFailure(Err.CBOR_UNEXPECTED_TYPE, "bad setMinPINLength parameters")
        if new_min < s.min_pin_length or new_min > 63:
            raise CtapFailure(Err.PIN_POLICY_VIOLATION, "minPINLength may only grow")
        if len(rp_ids) > MAX_RPIDS_FOR_MIN_PIN:
            raise CtapFailure(Err.PIN_POLICY_VIOLATION, "too many RP IDs")
        if force and s.pin_hash is None:
            raise CtapFailure(Err.PIN_NOT_SET, "no PIN to force a change of")
        s.min_pin_length = new_min
        s.min_pin_length_rp_ids = [str(r) for r in rp_ids]
        if force or (s.pin_hash is not None and s.pin_code_points < new_min):
            s.force_pin_change = True
