"""Policy: the TOML policy files in policies/, their loader, and evaluation -> Decision.

Typical use::

    policy = load_policy("policies/fido-certified-hardware.toml")      # PolicyLoadError
    decision = evaluate_registration(policy, att_obj, client_data, at=now,
                                     metadata=IndexMetadata(MdsIndex(url)))
    decision.allowed, decision.reasons      # reasons: Reason(rule, outcome, detail)

    evaluate_device(policy, DeviceFacts(aaguid=..., firmware="5.7.0", pin_set=True, ...))

See docs/policy.md for the file format, every rule and the order they run in.
"""

from keyadmin.policy.catalog import ModelList, admitted_models, diff_models, explain_model
from keyadmin.policy.evaluate import MUST_PASS, RULE_IDS, evaluate_registration
from keyadmin.policy.loader import PolicyLoadError, load_policy, parse_policy
from keyadmin.policy.metadata import IndexMetadata, MetadataSource
from keyadmin.policy.model import Decision, Policy, Reason, Version
from keyadmin.policy.readiness import DeviceFacts, evaluate_device

__all__ = [
    "MUST_PASS",
    "RULE_IDS",
    "Decision",
    "DeviceFacts",
    "IndexMetadata",
    "MetadataSource",
    "ModelList",
    "Policy",
    "PolicyLoadError",
    "Reason",
    "Version",
    "admitted_models",
    "diff_models",
    "evaluate_device",
    "evaluate_registration",
    "explain_model",
    "load_policy",
    "parse_policy",
]
