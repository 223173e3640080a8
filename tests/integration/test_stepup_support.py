"""Shared set-up for the step-up tests: software keys enrolled for real through the
enrolment flow (PIN set, direct attestation verified under the lab policy), and
assertions made by the key over python-fido2's HID code. No tests here."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PIN = "4821-lab"
ACTION = "delete tenant 42"


@dataclass
class Lab:
    db_url: str
    policy: Any
    policy_path: Path
    keys: dict[str, Path]  # user -> state file


def write_policy(directory: Path, roots: list[str], **step_up: int) -> Path:
    """The lab-softkey policy, trusting the given root PEMs, with step-up overrides."""
    directory.mkdir(parents=True, exist_ok=True)
    text = (REPO / "policies" / "lab-softkey.toml").read_text()
    names = []
    for i, pem in enumerate(roots):
        name = f"lab-root-{i}.pem"
        (directory / name).write_text(pem)
        names.append(f'"{name}"')
    text = text.replace('extra_roots = ["lab-root.pem"]', f"extra_roots = [{', '.join(names)}]")
    for key, value in step_up.items():
        text = text.replace(
            next(line for line in text.splitlines() if line.startswith(f"{key} =")),
            f"{key} = {value}",
        )
    path = directory / "lab-softkey.toml"
    path.write_text(text)
    return path


def open_session(state: Path) -> Any:
    from keyadmin.device.discovery import open_device
    from keyadmin.device.session import DeviceSession

    ref, dev = open_device(f"sim:{state}")
    return DeviceSession(ref, dev)


def enrol_key(state: Path, user: str, policy: Any, db_url: str) -> None:
    from keyadmin.cli.interact import CliInteraction
    from keyadmin.flows.enrol import enrol

    with open_session(state) as s:
        if not s.info().pin_set:
            s.set_pin(PIN)
        enrol(
            user=user,
            display_name=None,
            policy=policy,
            session=s,
            interaction=CliInteraction(PIN),
            db_url=db_url,
            metadata=None,
            operator="it-staff",
        )


def make_lab(tmp: Path, db_url: str, users: tuple[str, ...] = ("alice",), **step_up: int) -> Lab:
    from keyadmin.policy.loader import load_policy
    from keyadmin.sim.authenticator import SoftKey

    keys = {u: tmp / f"{u}.key" for u in users}
    roots = [SoftKey.create(path).root_certificate_pem() for path in keys.values()]
    policy_path = write_policy(tmp / "policy", roots, **step_up)
    policy = load_policy(policy_path)
    for user, path in keys.items():
        enrol_key(path, user, policy, db_url)
    return Lab(db_url, policy, policy_path, keys)


def assertion_for(state: Path, challenge: Any, pin: str = PIN) -> Any:
    """The key's UV assertion for a ``begin`` challenge (a fresh session: one power cycle)."""
    from keyadmin.cli.interact import CliInteraction
    from keyadmin.flows.stepup import get_assertion

    with open_session(state) as s:
        return get_assertion(s, CliInteraction(pin), challenge)


def clone(state: Path, to: Path) -> Path:
    shutil.copy2(state, to)
    return to


def stored(db_url: str, user: str = "alice") -> Any:
    from keyadmin.store import registry
    from keyadmin.store.db import transaction

    with transaction(db_url) as s:
        return registry.list_credentials(s, user=user)[0]
