"""Why a step-up or a receipt was refused. Each error carries the data a caller needs.

Exit codes (keyadmin.errors): a replayed, reused, expired or unknown challenge and a
signature counter that did not advance are 6 (counter or replay violation); a missing
user verification is 5; everything else the verifier refuses is 3 (refused).
"""

from __future__ import annotations

from keyadmin.errors import CounterViolation, ExitCode, PinError, PolicyRefused


class StepUpRefused(PolicyRefused):
    """The assertion, the credential or the policy did not allow this step-up."""


class AttemptsExceeded(StepUpRefused):
    """Too many failed step-ups for this credential or user within the policy's window."""


class TooManyChallenges(StepUpRefused):
    """The user already has the policy's maximum of live (unused, unexpired) challenges."""


class UserVerificationMissing(PinError):
    """The assertion does not show user verification (UV flag clear)."""


class ChallengeRefused(CounterViolation):
    """The challenge is unknown, already used (a replay), or expired."""


class AssertionReplayed(ChallengeRefused):
    """A validly signed assertion made for another challenge: a captured assertion replayed.

    Not counted as a failed attempt and the challenge it was sent for stays usable: anyone
    holding an old assertion could otherwise burn the user's live challenge and lock them out.
    """


class CounterRegression(CounterViolation):
    """The signature counter did not advance: a cloned key or a replayed assertion.

    The credential has been quarantined (``data['quarantined']``).
    """


class ReceiptInvalid(PolicyRefused):
    """A step-up receipt is malformed, tampered, expired, or for another action."""


class ReceiptReused(ReceiptInvalid):
    """A receipt presented again to a verifier that asked for single use (a replay)."""

    exit_code = ExitCode.COUNTER
