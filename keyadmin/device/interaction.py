"""What a ceremony may ask of the person at the key: a PIN, a touch, consent to UV.

``Interaction`` is the port the flows take and ``keyadmin.cli.interact.CliInteraction``
implements for the terminal (tests pass their own). It has python-fido2's
``UserInteraction`` methods plus ``known_pin``, so a clean-up after a failed ceremony can
reuse the PIN already typed without ever prompting again. ``for_fido2`` adapts any
implementation to python-fido2's client; only keyadmin.device calls it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from fido2.client import UserInteraction
    from fido2.ctap2 import ClientPin


@runtime_checkable
class Interaction(Protocol):
    """PIN entry and touch prompts for one command; a PIN is asked for once and reused."""

    def prompt_up(self) -> None:
        """The key waits for a touch (user presence): say so."""

    def request_pin(self, permissions: ClientPin.PERMISSION, rp_id: str | None) -> str | None:
        """The key's PIN (asked for at most once per command); None or "" cancels."""

    def request_uv(self, permissions: ClientPin.PERMISSION, rp_id: str | None) -> bool:
        """Whether built-in user verification (e.g. a fingerprint) may be asked for."""

    def known_pin(self) -> str | None:
        """The PIN already given in this command, if any; never prompts."""


def pin_for_cleanup(interaction: Interaction) -> str | None:
    """The PIN to clean up with after a failed ceremony (keyadmin.device.cleanup): only one
    already given."""
    pin = interaction.known_pin()
    return pin if isinstance(pin, str) and pin else None


def pin_or_ask(interaction: Interaction, rp_id: str) -> str | None:
    """The PIN already given, else asked for now (for credential management on ``rp_id``)."""
    from fido2.ctap2 import ClientPin

    pin = interaction.known_pin()
    if not pin:
        pin = interaction.request_pin(ClientPin.PERMISSION.CREDENTIAL_MGMT, rp_id)
    return pin if isinstance(pin, str) and pin else None


def for_fido2(interaction: Interaction) -> UserInteraction:
    """``interaction`` as python-fido2's client takes it (the same object when it already is
    one, as CliInteraction is)."""
    from fido2.client import UserInteraction

    if isinstance(interaction, UserInteraction):
        return interaction

    class _Adapter(UserInteraction):
        def prompt_up(self) -> None:
            interaction.prompt_up()

        def request_pin(self, permissions: ClientPin.PERMISSION, rp_id: str | None) -> str | None:
            return interaction.request_pin(permissions, rp_id)

        def request_uv(self, permissions: ClientPin.PERMISSION, rp_id: str | None) -> bool:
            return interaction.request_uv(permissions, rp_id)

    return _Adapter()
