"""The log rows of device actions: every change keyadmin makes to a key, in the registry's
tamper-evident log (keyadmin.store.audit), with the key's identity and what changed.

One helper for every device command, so one place decides who may act and how it is logged:

    log = DeviceLog.open(url, actor)   # before the key is touched: fail closed
    ...change the key...
    log.write("device.pin.set", identity, subject, details)

A change on a key cannot be rolled back like a database write. So the order is: the log is
opened first and a command whose row could not be written is never started (LogUnavailable);
a change that was made but whose row then could not be written is reported loudly with the
row's content (UnloggedChange, exit 1). Details never hold a PIN.

Actions: device.pin.set, device.pin.change, device.config.always-uv,
device.config.min-pin-length, device.config.enable-ep, device.credential.delete, device.reset,
device.prepare (docs/operator-guide.md lists what each row holds).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from keyadmin.errors import KeyadminError

if TYPE_CHECKING:
    from keyadmin.device.session import DeviceIdentity, StoredCredential


def credential_details(cred: StoredCredential) -> dict[str, object]:
    """What a row says about a credential deleted from a key (a StoredCredential)."""
    return {
        "credential_id": cred.credential_id,
        "rp_id": cred.rp_id,
        "user_name": cred.user_name,
        "user_id": cred.user_id,
    }


class LogUnavailable(KeyadminError):
    """The registry's log cannot be written; nothing was done to the key (exit 1)."""


class UnloggedChange(KeyadminError):
    """The key was changed but the log row could not be written (exit 1)."""


@dataclass(frozen=True)
class DeviceLog:
    url: str
    actor: str
    authority: dict[str, object] | None = None  # the operator's evidence, on every row

    @classmethod
    def open(cls, url: str, actor: str) -> DeviceLog:
        """The log for device actions, proven writable (its head row locked once) before the
        key is touched; raises LogUnavailable when it is not."""
        from keyadmin.store.audit import check_writable

        try:
            check_writable(url)
        except KeyadminError as e:
            raise LogUnavailable(
                f"the registry's log cannot be written, so nothing was done to the key: "
                f"{e.message}",
                hint="every change to a key is logged in the registry (--db or "
                "KEYADMIN_DATABASE_URL; keyadmin doctor checks it); fix it and retry",
            ) from e
        return cls(url, actor)

    def write(
        self,
        action: str,
        device: DeviceIdentity,
        subject: str | None,
        details: Mapping[str, object],
    ) -> None:
        """Append the action's row in its own transaction; UnloggedChange when it fails."""
        from keyadmin.store.audit import record

        row = {"device": asdict(device), **details}
        if self.authority is not None:
            row["authority"] = self.authority
        try:
            record(self.url, actor=self.actor, action=action, subject=subject, details=row)
        except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - the change stands
            why = e.message if isinstance(e, KeyadminError) else type(e).__name__
            text = json.dumps(
                {"actor": self.actor, "action": action, "subject": subject, "details": row},
                sort_keys=True,
            )
            raise UnloggedChange(
                f"the key WAS changed ({action} on {device.transport}:{device.path}) but the "
                f"change is NOT in the log: {why}. A change on a key cannot be undone; the "
                f"row that should have been written: {text}",
                hint="keep this message, tell whoever audits the log, and fix the registry "
                "(keyadmin doctor) before the next change",
            ) from e
