"""Ask a key for enterprise attestation through python-fido2's client, and see its epAtt.

python-fido2's Fido2Client sends enterpriseAttestation (CTAP 2.1 §6.1) when the options say
``attestation="enterprise"`` and the key's getInfo has ``ep`` on: 2 (platform-facilitated)
when the RP ID is in the client's list of enterprise RP IDs, 1 (vendor-facilitated) when it
has no list. The list and the authenticator's response are not public in python-fido2 2.x,
so this module is the one place that reaches them; if a python-fido2 release moves them,
enrolment under an enterprise-attestation policy fails closed (DeviceError), never silently
without it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from keyadmin.errors import DeviceError

if TYPE_CHECKING:
    from fido2.client import Fido2Client

P = ParamSpec("P")
R = TypeVar("R")


def request_enterprise(
    client: Fido2Client, platform_rp_ids: Sequence[str] | None
) -> Callable[[], bool]:
    """Make ``client`` ask for enterprise attestation: platform-facilitated for
    ``platform_rp_ids`` (a list), vendor-facilitated when None. Returns a function that
    tells, after make_credential, whether the key answered epAtt = true."""
    backend = getattr(client, "_backend", None)
    ctap2 = getattr(backend, "ctap2", None)
    if not hasattr(client, "_enterprise_rpid_list") or ctap2 is None:
        raise DeviceError(
            "this python-fido2 cannot request enterprise attestation (its client changed)",
            hint="install the python-fido2 version keyadmin pins (pyproject.toml)",
        )
    client._enterprise_rpid_list = list(platform_rp_ids) if platform_rp_ids is not None else None
    seen: dict[str, bool] = {"ep_att": False}
    ctap2.make_credential = _watching(ctap2.make_credential, seen)
    return lambda: seen["ep_att"]


def _watching(make_credential: Callable[P, R], seen: dict[str, bool]) -> Callable[P, R]:
    """``make_credential`` that notes in ``seen`` whether the key's response has epAtt true."""

    def capture(*args: P.args, **kwargs: P.kwargs) -> R:
        response = make_credential(*args, **kwargs)
        seen["ep_att"] = getattr(response, "ep_att", None) is True
        return response

    return capture
