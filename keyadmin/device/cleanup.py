"""Clean-up after a ceremony that did not end in an approved enrolment: delete from the key
the credential it just made (or, after an interruption, every credential of the user that the
registry does not know). Best effort: a failed clean-up is reported (False, 0), never raised,
so it cannot hide the error that caused it. Only a PIN already given is used: a clean-up
never prompts, so it never spends a PIN attempt the operator did not mean to make."""

from __future__ import annotations

from typing import TYPE_CHECKING

from keyadmin.device.interaction import pin_for_cleanup

if TYPE_CHECKING:
    from keyadmin.device.interaction import Interaction
    from keyadmin.device.port import Device


def discard(device: Device, interaction: Interaction, credential_id: bytes) -> bool:
    """Delete a just-made credential from the key. True when it is gone."""
    try:
        pin = pin_for_cleanup(interaction)
        if not pin:
            return False
        device.delete_credential(pin, credential_id)
        return True
    except BaseException:  # noqa: BLE001 - a failed clean-up is reported, never raised
        return False


def discard_unknown(
    device: Device, interaction: Interaction, rp_id: str, user_handle: bytes, known: set[str]
) -> int:
    """Delete the credentials for ``rp_id`` of ``user_handle`` whose ids (hex) are not in
    ``known``; returns how many."""
    try:
        pin = pin_for_cleanup(interaction)
        if not pin:
            return 0
        stray = [
            c
            for c in device.list_credentials(pin, rp_id)
            if c.user_id == user_handle.hex() and c.credential_id not in known
        ]
        for cred in stray:
            device.delete_credential(pin, bytes.fromhex(cred.credential_id))
        return len(stray)
    except BaseException:  # noqa: BLE001 - a failed clean-up must not hide the first error
        return 0
