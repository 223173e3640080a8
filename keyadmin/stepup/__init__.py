"""Step-up: an administrator proves, right now, that they hold their enrolled key and its PIN.

For an application server (no CLI involved)::

    from keyadmin.stepup import begin, finish

    ch = begin(db_url, policy, user="alice", action="delete tenant 42")
    # send ch.options to the browser: navigator.credentials.get({publicKey: ...})
    result = finish(db_url, policy, challenge_id=ch.challenge_id,
                    action="delete tenant 42", response=credential_json,
                    metadata=metadata)  # IndexMetadata(MdsIndex(db_url)) when the
                                        # policy requires metadata, else None
    token = signer.issue(...)           # optional: a receipt (keyadmin.stepup.receipts)

See docs/stepup.md for the checks, the counter compare-and-set and the receipt format.
"""

from keyadmin.stepup.admission import policy_admits
from keyadmin.stepup.challenge import Limits, StepUpChallenge, begin, binding
from keyadmin.stepup.completion import StepUpResult, finish
from keyadmin.stepup.errors import (
    AssertionReplayed,
    AttemptsExceeded,
    ChallengeRefused,
    CounterRegression,
    ReceiptInvalid,
    ReceiptReused,
    StepUpRefused,
    TooManyChallenges,
    UserVerificationMissing,
)
from keyadmin.stepup.receipts import (
    Receipt,
    ReceiptSigner,
    UsedReceipts,
    action_hash,
    generate_key,
    load_public_key,
    verify_receipt,
)
from keyadmin.stepup.verify import Assertion, parse_response

__all__ = [
    "Assertion",
    "AssertionReplayed",
    "AttemptsExceeded",
    "ChallengeRefused",
    "CounterRegression",
    "Limits",
    "Receipt",
    "ReceiptInvalid",
    "ReceiptReused",
    "ReceiptSigner",
    "StepUpChallenge",
    "StepUpRefused",
    "StepUpResult",
    "TooManyChallenges",
    "UsedReceipts",
    "UserVerificationMissing",
    "action_hash",
    "begin",
    "binding",
    "finish",
    "generate_key",
    "load_public_key",
    "parse_response",
    "policy_admits",
    "verify_receipt",
]
