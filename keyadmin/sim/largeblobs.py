"""authenticatorLargeBlobs (CTAP 2.1 §6.10) for the software key.

The serialized large-blob array lives in the state file (``KeyState.large_blob_array``);
a write arrives in fragments and replaces the array only when the last fragment is in and
the array's trailing LEFT(SHA-256(array), 16) checks out, so a broken or abandoned write
never leaves half an array. The fragments collected so far are volatile (a power cycle
drops them), as on a real key.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable

from keyadmin.sim.ctap import CtapFailure, Err, Perm
from keyadmin.sim.params import Params, Reply
from keyadmin.sim.state import KeyState, b64d, b64e

#: getInfo maxSerializedLargeBlobArray (0x0B); CTAP 2.1 asks for at least 1024.
MAX_SERIALIZED_LARGE_BLOB_ARRAY = 4096
_EMPTY = b"\x80"  # CBOR: the empty array
INITIAL_ARRAY = _EMPTY + hashlib.sha256(_EMPTY).digest()[:16]

#: check_token(params, param_key, proto_key, message, permission): raises unless the
#: pinUvAuthParam at ``param_key`` verifies over ``message`` with a token holding ``permission``.
TokenCheck = Callable[[Params, int, int, bytes, int], None]


def stored_array(state: KeyState) -> bytes:
    return b64d(state.large_blob_array) if state.large_blob_array else INITIAL_ARRAY


class LargeBlobs:
    """The command's state machine: reads, and fragmented writes with their expected offsets."""

    def __init__(self, max_fragment: int) -> None:
        self.max_fragment = max_fragment
        self.power_cycle()

    def power_cycle(self) -> None:
        self._buffer = bytearray()
        self._expected_length = 0

    def command(
        self,
        params: Params,
        state: KeyState,
        protected: bool,
        check_token: TokenCheck,
        save: Callable[[], None],
    ) -> Reply | None:
        get, data = params.get(0x01), params.get(0x02)
        offset = params.get(0x03)
        if not isinstance(offset, int) or offset < 0:
            raise CtapFailure(Err.INVALID_PARAMETER, "offset missing or negative")
        if (get is None) == (data is None):
            raise CtapFailure(Err.INVALID_PARAMETER, "exactly one of get and set")
        if get is not None:
            if not isinstance(get, int) or get < 0 or 0x04 in params:
                raise CtapFailure(Err.INVALID_PARAMETER, "bad get request")
            if get > self.max_fragment:
                raise CtapFailure(Err.INVALID_LENGTH, "get is longer than maxFragmentLength")
            current = stored_array(state)
            if offset > len(current):
                raise CtapFailure(Err.INVALID_PARAMETER, "offset beyond the array")
            return {0x01: current[offset : offset + get]}
        if not isinstance(data, bytes):
            raise CtapFailure(Err.CBOR_UNEXPECTED_TYPE, "set is not a byte string")
        if len(data) > self.max_fragment:
            raise CtapFailure(Err.INVALID_LENGTH, "set is longer than maxFragmentLength")
        length = params.get(0x04)
        if offset == 0:
            if not isinstance(length, int):
                raise CtapFailure(Err.INVALID_PARAMETER, "the first fragment carries length")
            if length > MAX_SERIALIZED_LARGE_BLOB_ARRAY:
                raise CtapFailure(Err.LARGE_BLOB_STORAGE_FULL, "array larger than the store")
            if length < 17:
                raise CtapFailure(Err.INVALID_PARAMETER, "an array is at least 17 bytes")
            self._buffer = bytearray()
            self._expected_length = length
        elif length is not None:
            raise CtapFailure(Err.INVALID_PARAMETER, "only the first fragment carries length")
        if offset != len(self._buffer) or (offset and not self._expected_length):
            raise CtapFailure(Err.INVALID_SEQ, "fragment out of sequence")
        if protected or 0x05 in params:
            if 0x05 not in params:
                raise CtapFailure(Err.PUAT_REQUIRED, "writing large blobs needs a token")
            message = b"\xff" * 32 + b"\x0c\x00" + struct.pack("<I", offset)
            message += hashlib.sha256(data).digest()
            check_token(params, 0x05, 0x06, message, Perm.LBW)
        if offset + len(data) > self._expected_length:
            raise CtapFailure(Err.INVALID_PARAMETER, "more data than the announced length")
        self._buffer += data
        if len(self._buffer) == self._expected_length:
            array, self._buffer, self._expected_length = bytes(self._buffer), bytearray(), 0
            body, check = array[:-16], array[-16:]
            if not hmac.compare_digest(hashlib.sha256(body).digest()[:16], check):
                raise CtapFailure(Err.INTEGRITY_FAILURE, "the array's checksum is wrong")
            state.large_blob_array = b64e(array)
            save()
        return None
