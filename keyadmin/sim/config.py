"""authenticatorConfig (CTAP 2.1 §6.11): enterprise attestation, alwaysUv, setMinPINLength."""

from __future__ import annotations

from collections.abc import Callable

from fido2 import cbor

from keyadmin.sim.clientpin import ClientPin
from keyadmin.sim.ctap import Cmd, CtapFailure, Err, Perm
from keyadmin.sim.params import CborMap, Params, optional_map, require
from keyadmin.sim.state import KeyState

MAX_RPIDS_FOR_MIN_PIN = 4


def command(params: Params, state: KeyState, pin: ClientPin, save: Callable[[], None]) -> None:
    s = state
    sub = require(params, 0x01, int)
    sub_params = optional_map(params, 0x02)
    if s.pin_hash is not None or s.always_uv or 0x04 in params:
        if s.pin_hash is None and 0x04 not in params:
            raise CtapFailure(Err.PUAT_REQUIRED, "alwaysUv is on: authenticate first")
        message = b"\xff" * 32 + bytes([Cmd.CONFIG, sub])
        if sub_params is not None:
            message += cbor.encode(sub_params)
        pin.check_token(params, 0x04, 0x03, message, Perm.ACFG)
    if sub == 0x01:  # enableEnterpriseAttestation
        s.ep_enabled = True
    elif sub == 0x02:  # toggleAlwaysUv
        s.always_uv = not s.always_uv
    elif sub == 0x03:
        _set_min_pin_length(s, sub_params or {})
    else:
        raise CtapFailure(Err.INVALID_SUBCOMMAND, f"authenticatorConfig subcommand {sub}")
    save()


def _set_min_pin_length(s: KeyState, sub_params: CborMap) -> None:
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
