"""The software key's CTAP 2.1 authenticator: CBOR request in, status byte + CBOR out.

Transports (keyadmin.sim.hid, keyadmin.sim.pcsc) frame these bytes; this module
knows nothing about them. Every state change is written to the state file
before the reply leaves, so a reply the platform saw is never lost.

This is the core: lifecycle, dispatch, getInfo, makeCredential, getAssertion and reset,
written to CTAP 2.1. The other commands live beside it (clientpin, credmgmt, config,
largeblobs; extensions and attest for what makeCredential/getAssertion add). The faults
a test injects are not here: the core passes what a fault may spoil through the hooks
of keyadmin.sim.faults (``StateFaults`` by default: the faults the state file names).

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
from dataclasses import dataclass, field
from pathlib import Path

from fido2 import cbor

from keyadmin.sim import SOFTWARE_KEY_LABEL
from keyadmin.sim import config as _config
from keyadmin.sim import extensions as _ext
from keyadmin.sim.attest import attest, attest_enterprise
from keyadmin.sim.clientpin import ClientPin
from keyadmin.sim.credkeys import (
    IMPLEMENTED,
    CredentialKey,
    check_available,
    cose_public,
    generate,
    pem,
    sign,
)
from keyadmin.sim.credkeys import load as load_credential_key
from keyadmin.sim.credmgmt import CredentialManagement
from keyadmin.sim.ctap import (
    FLAG_AT,
    FLAG_BE,
    FLAG_BS,
    FLAG_ED,
    FLAG_UP,
    FLAG_UV,
    MAX_PIN_RETRIES,
    Cmd,
    CtapFailure,
    Err,
    Perm,
)
from keyadmin.sim.enterprise import grants as grants_enterprise
from keyadmin.sim.faults import DEFAULT_FAULT_COMMANDS as DEFAULT_FAULT_COMMANDS
from keyadmin.sim.faults import FaultHooks, Keepalive, StateFaults
from keyadmin.sim.largeblobs import MAX_SERIALIZED_LARGE_BLOB_ARRAY, LargeBlobs
from keyadmin.sim.params import (
    CborIn,
    CborOut,
    Params,
    Reply,
    optional,
    optional_list,
    optional_map,
    require,
    require_list,
    require_map,
    text_or_none,
)
from keyadmin.sim.pki import generate_lab_pki
from keyadmin.sim.state import (
    ATTESTATION_MODES,
    COUNTER_MODES,
    FAULTS,
    Credential,
    KeyState,
    b64e,
    load_state,
    save_state,
)

log = logging.getLogger(__name__)

MAX_MSG_SIZE = 1200
MAX_CRED_COUNT_IN_LIST = 8
MAX_CRED_ID_LENGTH = 64
MAX_RPIDS_FOR_MIN_PIN = _config.MAX_RPIDS_FOR_MIN_PIN


def _load_key(pem: str) -> CredentialKey:
    return load_credential_key(pem)


@dataclass
class _PendingAssertions:
    rp_id: str
    client_data_hash: bytes
    creds: list[Credential]
    uv: bool
    up: bool
    with_user_details: bool
    extensions: dict[CborIn, CborIn] = field(default_factory=dict)


class SoftKey:
    """A SOFTWARE CTAP 2.1 authenticator whose state lives in one file.

    ``faults``: the hooks its commands pass through (default: the faults ``state`` names;
    ``keyadmin.sim.faults.NoFaults()`` for a key that follows the spec whatever the file says).
    """

    product_name = SOFTWARE_KEY_LABEL

    def __init__(
        self, state: KeyState, path: Path | None, *, faults: FaultHooks | None = None
    ) -> None:
        self.state = state
        self.path = path
        self.faults: FaultHooks = faults if faults is not None else StateFaults(state)
        self._lock = threading.RLock()
        self._pin = ClientPin(state, self._save)
        self._cred_mgmt = CredentialManagement(state, self._pin, self._save)
        self._pending: _PendingAssertions | None = None
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
            self._pin.power_cycle()
            self._pending = None
            self._cred_mgmt.power_cycle()
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
                instead = self.faults.before(command, keepalive, cancel)
                if instead is not None:
                    return instead
                result = self._dispatch(command, self._decode_params(request[1:]))
                reply = bytes([Err.SUCCESS]) + (cbor.encode(result) if result is not None else b"")
            except CtapFailure as failure:
                log.debug("softkey command 0x%02x refused: %s", command, failure)
                return bytes([failure.code])
            return self.faults.reply(command, reply)

    @staticmethod
    def _decode_params(data: bytes) -> Params:
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

    def _dispatch(self, command: int, params: Params) -> Reply | None:
        s = self.state
        if command == Cmd.GET_INFO:
            return self.get_info()
        if command == Cmd.MAKE_CREDENTIAL:
            return self._make_credential(params)
        if command == Cmd.GET_ASSERTION:
            return self._get_assertion(params)
        if command == Cmd.GET_NEXT_ASSERTION:
            return self._get_next_assertion()
        if command == Cmd.CLIENT_PIN:
            return self._pin.command(params)
        if command == Cmd.RESET:
            self._reset()
            return None
        if command in (Cmd.CREDENTIAL_MGMT, Cmd.CREDENTIAL_MGMT_PRE):
            return self._cred_mgmt.command(params)
        if command == Cmd.SELECTION:
            return None
        if command == Cmd.CONFIG:
            _config.command(params, s, self._pin, self._save)
            return None
        if command == Cmd.LARGE_BLOBS:
            protected = s.pin_hash is not None or s.always_uv
            return self._large_blobs.command(
                params, s, protected, self._pin.check_token, self._save
            )
        raise CtapFailure(Err.INVALID_COMMAND, f"unknown command 0x{command:02x}")

    # ----------------------------------------------------------- getInfo
    def get_info(self) -> Reply:
        s = self.state
        options: dict[str, CborOut] = {
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
            0x14: max(0, s.max_discoverable - len(s.discoverable())),
        }

    # ----------------------------------------------------------- makeCredential
    def _make_credential(self, params: Params) -> Reply:
        s = self.state
        self._pin.selection_probe(params, 0x08)
        cdh = require(params, 0x01, bytes)
        rp = require_map(params, 0x02)
        user = require_map(params, 0x03)
        cred_params = require_list(params, 0x04)
        exclude = optional_list(params, 0x05) or []
        extensions = optional_map(params, 0x06) or {}
        options = optional_map(params, 0x07) or {}
        ep = optional(params, 0x0A, int)
        rp_id = rp.get("id")
        user_id = user.get("id")
        if not isinstance(rp_id, str) or not isinstance(user_id, bytes):
            raise CtapFailure(Err.MISSING_PARAMETER, "rp.id or user.id missing")
        if len(user_id) > 64:
            raise CtapFailure(Err.INVALID_LENGTH, "user.id longer than 64 bytes")
        alg = self._pick_algorithm(cred_params)
        rk = bool(options.get("rk", False))
        if options.get("uv"):
            raise CtapFailure(Err.INVALID_OPTION, "no built-in user verification; use the PIN")
        if options.get("up") is False:
            raise CtapFailure(Err.INVALID_OPTION, "makeCredential always needs user presence")
        uv = False
        if 0x08 in params:
            self._pin.check_token(params, 0x08, 0x09, cdh, Perm.MC, rp_id)
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
            found = self._find_credential(rp_id, desc)
            if found is not None and (found.cred_protect < 3 or uv):
                raise CtapFailure(Err.CREDENTIAL_EXCLUDED, "a credential in excludeList exists")
        cred_protect = extensions.get("credProtect", 1)
        if not isinstance(cred_protect, int) or cred_protect not in (1, 2, 3):
            raise CtapFailure(Err.INVALID_OPTION, "credProtect must be 1, 2 or 3")
        same_user: list[Credential] = []
        if rk:
            same_user = [
                c for c in s.discoverable() if c.rp_id == rp_id and c.user_id_bytes == user_id
            ]
            if not same_user and len(s.discoverable()) >= s.max_discoverable:
                raise CtapFailure(Err.KEY_STORE_FULL, "no room for another discoverable credential")

        key = generate(alg)
        cred = Credential(
            credential_id=b64e(os.urandom(32)),
            rp_id=rp_id,
            rp_name=text_or_none(rp.get("name")),
            user_id=b64e(user_id),
            user_name=text_or_none(user.get("name")),
            user_display_name=text_or_none(user.get("displayName")),
            algorithm=alg,
            private_key_pem=pem(key),
            discoverable=rk,
            cred_protect=cred_protect,
            created=time.time(),
        )
        more = _ext.make_credential(extensions, cred, s, self._pin.protocols, uv=uv)
        for old in same_user:  # one discoverable credential per (RP, user), once extensions pass
            s.credentials.remove(old)
        counter = self._next_counter(cred)
        s.credentials.append(cred)
        flags = FLAG_UP | FLAG_AT | (FLAG_UV if uv else 0)
        ext_out: dict[str, CborOut] = {}
        if "credProtect" in extensions:
            ext_out["credProtect"] = cred_protect
        ext_out.update(more.auth_data)
        if ext_out:
            flags |= FLAG_ED
        aaguid = b"\0" * 16 if s.attestation == "fido-u2f" else self.aaguid
        cose = cose_public(alg, key)
        att_cred = (
            aaguid + len(cred.id_bytes).to_bytes(2, "big") + cred.id_bytes + cbor.encode(cose)
        )
        auth_data = self._auth_data(rp_id, flags, counter) + att_cred
        if ext_out:
            auth_data += cbor.encode(ext_out)
        if enterprise:
            fmt, att_stmt = attest_enterprise(s, self.faults, auth_data + cdh)
        else:
            fmt, att_stmt = attest(
                s,
                self.faults,
                auth_data=auth_data,
                cdh=cdh,
                cred=cred,
                key=key,
                cose=cose,
                rp_id=rp_id,
            )
        self._save()
        result: Reply = {0x01: fmt, 0x02: auth_data, 0x03: att_stmt}
        if enterprise:
            result[0x04] = True
        if more.large_blob_key is not None:
            result[0x05] = more.large_blob_key
        return result

    def _pick_algorithm(self, cred_params: list[CborIn]) -> int:
        """The first public-key algorithm offered that this key has and implements."""
        for p in cred_params:
            if not isinstance(p, dict) or p.get("type") != "public-key":
                continue
            alg = p.get("alg")
            if isinstance(alg, int) and alg in self.state.algorithms and alg in IMPLEMENTED:
                return alg
        raise CtapFailure(Err.UNSUPPORTED_ALGORITHM, "no supported algorithm offered")

    def _auth_data(self, rp_id: str, flags: int, counter: int) -> bytes:
        s = self.state
        if s.backup_eligible:
            flags |= FLAG_BE
        if s.backed_up:
            flags |= FLAG_BS
        rp_id_hash = hashlib.sha256(self.faults.rp_id(rp_id).encode()).digest()
        return rp_id_hash + bytes([self.faults.flags(flags)]) + counter.to_bytes(4, "big")

    def _next_counter(self, cred: Credential) -> int:
        """Count a use of ``cred``; its signature counter in the key's counter mode."""
        s = self.state
        cred.uses += 1
        if s.counter_mode == "zero":
            counter = 0
        elif s.counter_mode == "global":
            s.global_counter += 1
            counter = s.global_counter
        else:
            counter = cred.uses
        cred.counter = self.faults.counter(cred, counter)
        return cred.counter

    def _find_credential(self, rp_id: str, descriptor: CborIn) -> Credential | None:
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
    def _get_assertion(self, params: Params) -> Reply:
        s = self.state
        self._pending = None  # a new getAssertion ends any earlier one, refused or not
        self._pin.selection_probe(params, 0x06)
        rp_id = require(params, 0x01, str)
        cdh = require(params, 0x02, bytes)
        allow = optional_list(params, 0x03) or []
        extensions = optional_map(params, 0x04) or {}
        options = optional_map(params, 0x05) or {}
        if options.get("uv"):
            raise CtapFailure(Err.INVALID_OPTION, "no built-in user verification; use the PIN")
        if "rk" in options:
            raise CtapFailure(Err.UNSUPPORTED_OPTION, "rk is not an option of getAssertion")
        up = bool(options.get("up", True))
        uv = False
        if 0x06 in params:
            self._pin.check_token(params, 0x06, 0x07, cdh, Perm.GA, rp_id)
            uv = True
        elif s.always_uv and s.pin_hash is not None:
            raise CtapFailure(Err.PUAT_REQUIRED, "alwaysUv is on: user verification required")
        if allow:
            found = [c for c in (self._find_credential(rp_id, d) for d in allow) if c is not None]
            creds = [c for c in found if c.cred_protect < 3 or uv]
        else:
            creds = [
                c for c in s.discoverable() if c.rp_id == rp_id and (c.cred_protect == 1 or uv)
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

    def _get_next_assertion(self) -> Reply:
        pending = self._pending
        if pending is None or not pending.creds:
            self._pending = None
            raise CtapFailure(Err.NOT_ALLOWED, "no assertions pending")
        cred = pending.creds.pop(0)
        return self._assert_one(cred, pending, discoverable=True)

    def _assert_one(
        self, cred: Credential, pending: _PendingAssertions, *, discoverable: bool
    ) -> Reply:
        flags = (FLAG_UP if pending.up else 0) | (FLAG_UV if pending.uv else 0)
        more = _ext.get_assertion(pending.extensions, cred, self._pin.protocols, uv=pending.uv)
        if more.auth_data:
            flags |= FLAG_ED
        counter = self._next_counter(cred)
        auth_data = self._auth_data(pending.rp_id, flags, counter)
        if more.auth_data:
            auth_data += cbor.encode(more.auth_data)
        key = _load_key(cred.private_key_pem)
        sig = sign(cred.algorithm, key, auth_data + pending.client_data_hash)
        self._save()
        response: Reply = {
            0x01: {"type": "public-key", "id": cred.id_bytes},
            0x02: auth_data,
            0x03: self.faults.signature(sig),
        }
        if discoverable:
            user: dict[str, CborOut] = {"id": cred.user_id_bytes}
            if pending.with_user_details:
                if cred.user_name is not None:
                    user["name"] = cred.user_name
                if cred.user_display_name is not None:
                    user["displayName"] = cred.user_display_name
            response[0x04] = user
        if more.large_blob_key is not None:
            response[0x07] = more.large_blob_key
        return response

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
