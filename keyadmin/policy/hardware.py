"""The ``[hardware]`` policy section: is a metadata model a roaming hardware key, and why.

Each criterion reads the model's FIDO metadata statement (a ``keyadmin.mds.model.Entry``)
and returns a ``Check`` naming the fields that satisfied or failed it:

 1. key_protection   keyProtection has one of ``key_protection_any`` and none of
                     ``key_protection_forbidden``
 2. matcher          matcherProtection is declared and every value is in
                     ``matcher_protection_allowed``
 3. attachment       attachmentHint has every value of ``attachment_required`` and none of
                     ``attachment_forbidden``
 4. connection       attachmentHint has one of ``connection_hints``, or
                     authenticatorGetInfo.transports has one of ``connection_transports``
                     (and none of ``transports_forbidden``)
 5. description      no word of ``deny_description_words`` in the description or a friendly
                     name (a last guard against apps, SDKs and test builds whose metadata
                     claims hardware; the fields above are the main criteria)

Vocabularies are the FIDO Registry of Predefined Values plus the values real metadata uses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from keyadmin.policy.model import HardwareRules, Outcome, Policy

if TYPE_CHECKING:
    from keyadmin.mds.model import Entry

KEY_PROTECTION: frozenset[str] = frozenset(
    {"software", "hardware", "tee", "secure_element", "remote_handle"}
)
MATCHER_PROTECTION: frozenset[str] = frozenset({"software", "tee", "on_chip"})
ATTACHMENT_HINTS: frozenset[str] = frozenset(
    {
        "internal",
        "external",
        "wired",
        "wireless",
        "nfc",
        "bluetooth",
        "network",
        "ready",
        "wifi_direct",
        "smart-card",
    }
)
TRANSPORTS: frozenset[str] = frozenset(
    {"usb", "nfc", "ble", "smart-card", "hybrid", "internal", "lightning", "wireless"}
)
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class Check:
    """One criterion's result: ``criterion`` (e.g. ``hardware.key_protection``), ``ok``,
    and the metadata fields that decided it."""

    criterion: str
    ok: bool
    detail: str


def _values(values: Iterable[str]) -> list[str]:
    return [str(v).lower() for v in values]


def _show(values: list[str]) -> str:
    return ", ".join(values) or "(none declared)"


def check_key_protection(rules: HardwareRules, entry: Entry) -> Check:
    have = _values(entry.key_protection)
    bad = [v for v in have if v in rules.key_protection_forbidden]
    good = [v for v in have if v in rules.key_protection_any]
    name = "hardware.key_protection"
    if bad:
        return Check(name, False, f"keyProtection {_show(have)} includes {', '.join(bad)}")
    if not good:
        need = " or ".join(rules.key_protection_any)
        return Check(name, False, f"keyProtection {_show(have)} lacks {need}")
    return Check(name, True, f"keyProtection {_show(have)}")


def check_matcher(rules: HardwareRules, entry: Entry) -> Check:
    have = _values(entry.matcher_protection)
    bad = [v for v in have if v not in rules.matcher_protection_allowed]
    name = "hardware.matcher_protection"
    if not have:
        return Check(name, False, "matcherProtection is not declared")
    if bad:
        allowed = ", ".join(rules.matcher_protection_allowed)
        return Check(name, False, f"matcherProtection {_show(have)} (allowed: {allowed})")
    return Check(name, True, f"matcherProtection {_show(have)}")


def check_attachment(rules: HardwareRules, entry: Entry) -> Check:
    have = _values(entry.attachment_hint)
    missing = [v for v in rules.attachment_required if v not in have]
    bad = [v for v in have if v in rules.attachment_forbidden]
    name = "hardware.attachment"
    if bad:
        return Check(name, False, f"attachmentHint {_show(have)} includes {', '.join(bad)}")
    if missing:
        return Check(name, False, f"attachmentHint {_show(have)} lacks {', '.join(missing)}")
    return Check(name, True, f"attachmentHint {_show(have)}")


def check_connection(rules: HardwareRules, entry: Entry) -> Check:
    hints = _values(entry.attachment_hint)
    transports = _values(entry.transports)
    name = "hardware.connection"
    bad = [t for t in transports if t in rules.transports_forbidden]
    if bad:
        return Check(
            name,
            False,
            f"authenticatorGetInfo.transports {_show(transports)} includes {', '.join(bad)}",
        )
    by_hint = [h for h in hints if h in rules.connection_hints]
    by_transport = [t for t in transports if t in rules.connection_transports]
    if by_hint:
        return Check(name, True, f"attachmentHint {', '.join(by_hint)}")
    if by_transport:
        return Check(name, True, f"authenticatorGetInfo.transports {', '.join(by_transport)}")
    return Check(
        name,
        False,
        f"attachmentHint {_show(hints)} has none of {', '.join(rules.connection_hints) or '-'} "
        f"and authenticatorGetInfo.transports {_show(transports)} none of "
        f"{', '.join(rules.connection_transports) or '-'}",
    )


def check_description(rules: HardwareRules, entry: Entry) -> Check:
    names = [entry.description]
    names += [str(v) for v in entry.friendly_names.values()]
    name = "hardware.description"
    deny = set(rules.deny_description_words)
    for text in names:
        hits = sorted({w for w in _WORD.findall(text.lower()) if w in deny})
        if hits:
            return Check(name, False, f"{text!r} names {', '.join(hits)} (not a hardware key)")
    if not deny:
        return Check(name, True, "no description words denied")
    return Check(name, True, f"the description names no denied word ({len(deny)} checked)")


def hardware_checks(rules: HardwareRules, entry: Entry) -> tuple[Check, ...]:
    """Every criterion, in the documented order (all are run, so a review sees each one)."""
    return (
        check_key_protection(rules, entry),
        check_matcher(rules, entry),
        check_attachment(rules, entry),
        check_connection(rules, entry),
        check_description(rules, entry),
    )


def hardware_outcome(policy: Policy, entry: Entry | None) -> tuple[Outcome, str]:
    """The rule ``authenticator.hardware``: every ``[hardware]`` criterion holds."""
    rules = policy.hardware
    if rules is None:
        return "skip", "the policy has no [hardware] section"
    if entry is None:
        return "fail", "no metadata entry proves this is a roaming hardware key"
    checks = hardware_checks(rules, entry)
    failed = [c for c in checks if not c.ok]
    if failed:
        return "fail", "; ".join(f"{c.criterion}: {c.detail}" for c in failed)
    return "pass", "; ".join(c.detail for c in checks)
