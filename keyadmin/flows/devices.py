"""What is plugged in, what each key is (with its FIDO metadata model), and is it ready."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DeviceListing:
    device: str
    transport: str
    product: str | None
    aaguid: str | None
    model: str | None  # the metadata entry's description, once metadata is loaded


def model_name(db_url: str, aaguid: str | None) -> str | None:
    """The metadata's name for the model; None without metadata (a registry file that does
    not exist is not opened, so nothing is created)."""
    from keyadmin.store.db import sqlite_file

    path = sqlite_file(db_url)
    if not aaguid or (path is not None and not path.exists()):
        return None
    from keyadmin.store.mds_index import MdsIndex

    try:
        doc = MdsIndex(db_url).entry_doc(aaguid)
    except Exception:  # noqa: BLE001 - no metadata means no model name, not an error
        return None
    return str(doc.get("description")) if isinstance(doc, dict) and doc.get("description") else None


def list_with_models(db_url: str) -> list[DeviceListing]:
    from keyadmin.device.discovery import list_devices, with_aaguid

    out = []
    for ref in list_devices():
        ref = with_aaguid(ref)
        out.append(
            DeviceListing(
                ref.selector, ref.transport, ref.product, ref.aaguid, model_name(db_url, ref.aaguid)
            )
        )
    return out


@dataclass(frozen=True)
class DeviceReport:
    info: Any  # keyadmin.device.session.DeviceInfo
    model: str | None
    policy: str | None
    ready: bool | None
    reasons: list[dict[str, str]]


def device_report(session: Any, db_url: str, policy: Any | None) -> DeviceReport:
    info = session.info()
    if policy is None:
        return DeviceReport(info, model_name(db_url, info.aaguid), None, None, [])
    from keyadmin.flows.enrol import device_facts
    from keyadmin.policy.readiness import evaluate_device

    decision = evaluate_device(policy, device_facts(info))
    reasons = [{"rule": r.rule, "outcome": r.outcome, "detail": r.detail} for r in decision.reasons]
    return DeviceReport(
        info, model_name(db_url, info.aaguid), policy.name, decision.allowed, reasons
    )
