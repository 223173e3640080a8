"""authenticatorCredentialManagement (CTAP 2.1 §6.8) for the software key.

Metadata, RP and credential enumeration (the enumeration cursors are volatile, as on a real
key), deleting a credential and updating its user information. Every subcommand but the
enumeration 'next' steps needs a token with the cm permission; a token bound to an RP may only
see that RP's credentials.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from fido2 import cbor

from keyadmin.sim.clientpin import ClientPin
from keyadmin.sim.credkeys import cose_public, load
from keyadmin.sim.ctap import CtapFailure, Err, Perm
from keyadmin.sim.params import CborMap, CborOut, Params, Reply, optional_map, require, text_or_none
from keyadmin.sim.state import Credential, KeyState, b64d

#: The subcommands that carry pinUvAuthParam (all but the enumerations' 'next' steps).
_AUTHENTICATED = (0x01, 0x02, 0x04, 0x06, 0x07)


def _rp_hash(rp_id: str) -> bytes:
    return hashlib.sha256(rp_id.encode()).digest()


class CredentialManagement:
    def __init__(self, state: KeyState, pin: ClientPin, save: Callable[[], None]) -> None:
        self.state = state
        self.pin = pin
        self._save = save
        self.power_cycle()

    def power_cycle(self) -> None:
        self._enum_rps: list[str] = []
        self._enum_creds: list[Credential] = []

    def command(self, params: Params) -> Reply | None:
        sub = require(params, 0x01, int)
        sub_params = optional_map(params, 0x02)
        rp_hash = (sub_params or {}).get(0x01)
        if sub in _AUTHENTICATED:
            message = bytes([sub]) + (cbor.encode(sub_params) if sub_params is not None else b"")
            rp_bound = None
            if sub == 0x04 and isinstance(rp_hash, bytes):
                rp_bound = self._rp_for_hash(rp_hash)
            self.pin.check_token(params, 0x04, 0x03, message, Perm.CM)
            if rp_bound is not None and self.pin.token.rp_id not in (None, rp_bound):
                raise CtapFailure(Err.PIN_AUTH_INVALID, "token bound to another RP")
        if sub == 0x01:  # getCredsMetadata
            disc = self.state.discoverable()
            return {0x01: len(disc), 0x02: max(0, self.state.max_discoverable - len(disc))}
        if sub == 0x02:  # enumerateRPsBegin
            rp_ids = sorted({c.rp_id for c in self.state.discoverable()})
            if not rp_ids:
                raise CtapFailure(Err.NO_CREDENTIALS, "no discoverable credentials")
            self._enum_rps = rp_ids[1:]
            return {**self._rp_entry(rp_ids[0]), 0x05: len(rp_ids)}
        if sub == 0x03:  # enumerateRPsGetNextRP
            if not self._enum_rps:
                raise CtapFailure(Err.NOT_ALLOWED, "no RP enumeration in progress")
            return self._rp_entry(self._enum_rps.pop(0))
        if sub == 0x04:  # enumerateCredentialsBegin
            if not isinstance(rp_hash, bytes):
                raise CtapFailure(Err.MISSING_PARAMETER, "rpIDHash missing")
            creds = [
                c
                for c in self.state.discoverable()
                if hmac.compare_digest(_rp_hash(c.rp_id), rp_hash)
            ]
            if not creds:
                raise CtapFailure(Err.NO_CREDENTIALS, "no credentials for that RP")
            self._enum_creds = creds[1:]
            return {**self._cred_entry(creds[0]), 0x09: len(creds)}
        if sub == 0x05:  # enumerateCredentialsGetNextCredential
            if not self._enum_creds:
                raise CtapFailure(Err.NOT_ALLOWED, "no credential enumeration in progress")
            return self._cred_entry(self._enum_creds.pop(0))
        if sub == 0x06:  # deleteCredential
            self.state.credentials.remove(self._cred_by_descriptor(sub_params))
            self._save()
            return None
        if sub == 0x07:  # updateUserInformation
            self._update_user(sub_params)
            return None
        raise CtapFailure(Err.INVALID_SUBCOMMAND, f"credentialManagement subcommand {sub}")

    def _update_user(self, sub_params: CborMap | None) -> None:
        cred = self._cred_by_descriptor(sub_params)
        user = (sub_params or {}).get(0x03)
        if not isinstance(user, dict):
            raise CtapFailure(Err.MISSING_PARAMETER, "user entity missing")
        user_id = user.get("id")
        if not isinstance(user_id, bytes):
            raise CtapFailure(Err.MISSING_PARAMETER, "user entity missing")
        if not hmac.compare_digest(user_id, cred.user_id_bytes):
            raise CtapFailure(Err.INVALID_PARAMETER, "user.id does not match the credential")
        cred.user_name = text_or_none(user.get("name"))
        cred.user_display_name = text_or_none(user.get("displayName"))
        self._save()

    def _rp_for_hash(self, rp_hash: bytes) -> str | None:
        for cred in self.state.discoverable():
            if hmac.compare_digest(_rp_hash(cred.rp_id), rp_hash):
                return cred.rp_id
        return None

    def _rp_entry(self, rp_id: str) -> Reply:
        rp: dict[str, CborOut] = {"id": rp_id}
        name = next(
            (c.rp_name for c in self.state.discoverable() if c.rp_id == rp_id and c.rp_name),
            None,
        )
        if name:
            rp["name"] = name
        return {0x03: rp, 0x04: _rp_hash(rp_id)}

    def _cred_entry(self, cred: Credential) -> Reply:
        user: dict[str, CborOut] = {"id": cred.user_id_bytes}
        if cred.user_name is not None:
            user["name"] = cred.user_name
        if cred.user_display_name is not None:
            user["displayName"] = cred.user_display_name
        key = load(cred.private_key_pem)
        entry: Reply = {
            0x06: user,
            0x07: {"type": "public-key", "id": cred.id_bytes},
            0x08: cose_public(cred.algorithm, key),
            0x0A: cred.cred_protect,
        }
        if cred.large_blob_key:
            entry[0x0B] = b64d(cred.large_blob_key)
        return entry

    def _cred_by_descriptor(self, sub_params: CborMap | None) -> Credential:
        desc = (sub_params or {}).get(0x02)
        cred_id = desc.get("id") if isinstance(desc, dict) else None
        if not isinstance(cred_id, bytes):
            raise CtapFailure(Err.MISSING_PARAMETER, "credentialID missing")
        for cred in self.state.discoverable():
            if hmac.compare_digest(cred.id_bytes, cred_id):
                if self.pin.token.rp_id not in (None, cred.rp_id):
                    raise CtapFailure(Err.PIN_AUTH_INVALID, "token bound to another RP")
                return cred
        raise CtapFailure(Err.NO_CREDENTIALS, "no such credential")
