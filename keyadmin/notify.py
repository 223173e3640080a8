"""Notifications: quarantine, counter anomalies and detected tampering, sent to syslog and,
when configured, to a webhook. They never decide anything and never hold a decision up.

* **syslog**: one datagram per event to the local socket (``notify.syslog`` in the
  configuration file or ``$KEYADMIN_SYSLOG_SOCKET``; default ``/dev/log``; ``off``/``false``
  sends nothing), facility authpriv, RFC 3164 framing. Non-blocking: a missing or full socket
  drops the message.
* **webhook** (``notify.webhook`` or ``$KEYADMIN_WEBHOOK_URL``): a JSON POST per event, in a
  background thread, each try bounded by ``notify.webhook_timeout`` seconds and retried
  ``notify.webhook_retries`` times with backoff (0.5 s, 1 s, 2 s, …); when every try fails,
  syslog says so. A command waits for pending deliveries only when it exits, after its
  result (the thread is not a daemon), at most the tries' bound.

Events raised inside a registry transaction are sent only after it commits
(``keyadmin.store.db.transaction``): a rolled-back decision is never announced.
Nothing sent holds a PIN, a secret or a key: the event, a summary, the user, the
credential id, the log row.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from datetime import UTC, datetime
from typing import Any

DEFAULT_SOCKET = "/dev/log"
LOG_AUTHPRIV = 10
SEVERITY = {"quarantine": 1, "tampering": 1, "counter-anomaly": 4, "notify": 4}  # alert, warning

#: log actions that are events: action -> event kind
EVENTS: dict[str, str] = {
    "credential.quarantine": "quarantine",
    "stepup.counter-violation": "counter-anomaly",
    "operator.counter-violation": "counter-anomaly",
    "sync.tamper": "tampering",
}


def event(kind: str, summary: str, **fields: Any) -> dict[str, Any]:
    return {
        "event": kind,
        "summary": summary,
        "at": datetime.now(UTC).isoformat(),
        "host": socket.gethostname(),
        **fields,
    }


def from_log_row(action: str, subject: str | None, details: dict[str, Any], seq: int) -> Any:
    """The event a log row stands for, or None. (A step-up accepted with a counter flag is
    announced by keyadmin.stepup.finish: its row is written by SQL of its own.)"""
    kind = EVENTS.get(action)
    if kind is None:
        return None
    reason = details.get("reason") or details.get("detail") or details.get("kind") or action
    fields: dict[str, Any] = {"action": action, "log_seq": seq, "user": subject}
    cred = details.get("credential_id") or details.get("credential")
    if cred:
        fields["credential_id"] = str(cred)
    return event(kind, f"{action} {subject or ''}: {reason}"[:500], **fields)


def send(events: list[dict[str, Any]]) -> None:
    """Send each event to syslog now and to the webhook in the background. Never raises."""
    try:
        settings = _settings()
    except Exception:  # noqa: BLE001 - a broken configuration must not stop a decision
        settings = {"syslog": DEFAULT_SOCKET, "webhook": None, "timeout": 3.0, "retries": 3}
    for e in events:
        _syslog(settings["syslog"], e)
    if settings["webhook"] and events:
        t = threading.Thread(
            target=_deliver,
            args=(settings, list(events)),
            name="keyadmin-webhook",
            daemon=False,
        )
        try:
            t.start()
        except RuntimeError:  # no thread can be started: syslog has the events
            _syslog(settings["syslog"], event("notify", "webhook not started: no thread"))


def _settings() -> dict[str, Any]:
    from keyadmin.settings import load

    s = load()
    configured: str | bool | None = os.environ.get("KEYADMIN_SYSLOG_SOCKET")
    if configured is None:
        configured = DEFAULT_SOCKET if s.syslog in (None, True) else s.syslog
    sock = None if configured in (False, "", "off", "false", "none") else str(configured)
    return {
        "syslog": sock,
        "webhook": os.environ.get("KEYADMIN_WEBHOOK_URL") or s.webhook,
        "timeout": float(s.webhook_timeout),
        "retries": int(s.webhook_retries),
    }


def _syslog(path: str | None, e: dict[str, Any]) -> None:
    if not path:
        return
    pri = LOG_AUTHPRIV * 8 + SEVERITY.get(e["event"], 4)
    stamp = datetime.now().strftime("%b %d %H:%M:%S")  # noqa: DTZ005 - syslog's local time
    extra = {k: v for k, v in e.items() if k not in ("event", "summary", "at", "host")}
    line = f"<{pri}>{stamp} keyadmin[{os.getpid()}]: {e['event']}: {e['summary']} "
    data = (line + json.dumps(extra, sort_keys=True, ensure_ascii=True)).encode()[:8192]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.setblocking(False)
            s.sendto(data, path)
    except OSError:
        pass  # no syslog here (a container), or its queue is full: never an error


def _deliver(settings: dict[str, Any], events: list[dict[str, Any]]) -> None:
    for e in events:
        problem = _post(settings["webhook"], e, settings["timeout"], settings["retries"])
        if problem:
            _syslog(
                settings["syslog"],
                event(
                    "notify",
                    f"webhook delivery failed for {e['event']}: {problem}",
                    log_seq=e.get("log_seq"),
                ),  # fmt: skip
            )


def _post(url: str, e: dict[str, Any], timeout: float, retries: int) -> str | None:
    """POST ``e`` as JSON; None when a 2xx came back, else the last problem."""
    import urllib.error
    import urllib.request

    body = json.dumps(e, sort_keys=True).encode()
    problem = "not tried"
    if not url.startswith(("http://", "https://")):
        return f"not an http(s) URL: {url[:40]!r}"
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(0.5 * 2 ** (attempt - 1), 8.0))
        request = urllib.request.Request(  # noqa: S310 - http(s) only, checked above
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                if 200 <= response.status < 300:
                    return None
                problem = f"HTTP {response.status}"
        except urllib.error.HTTPError as err:
            problem = f"HTTP {err.code}"
        except (OSError, ValueError) as err:
            problem = f"{type(err).__name__}: {err}"[:200]
    return problem
