"""device_errors blames the key only for what python-fido2 failed to parse, not our bugs."""

from __future__ import annotations

import pytest
from fido2 import cbor
from fido2.webauthn import AuthenticatorData

from keyadmin.device.errors import device_errors
from keyadmin.errors import DeviceProtocolError


@pytest.mark.parametrize(
    "reply",
    [
        lambda: cbor.decode(b"\xa1\x01"),  # a map cut short
        lambda: AuthenticatorData(b"\x00" * 20),  # authenticator data shorter than 37 bytes
    ],
)
def test_a_malformed_reply_parsed_by_fido2_is_the_keys_fault(reply) -> None:
    with pytest.raises(DeviceProtocolError, match="malformed reply"):
        with device_errors():
            reply()


def _keyadmin_bug() -> None:
    {}["missing"]  # noqa: B018  (a KeyError in keyadmin's own code)


def test_a_bug_in_keyadmin_is_not_blamed_on_the_key() -> None:
    with pytest.raises(KeyError):
        with device_errors():
            _keyadmin_bug()
    with pytest.raises(TypeError):
        with device_errors():
            len(5)  # type: ignore[arg-type]
