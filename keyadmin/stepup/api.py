"""Step-up for the application server and the CLI: ``begin`` issues a challenge, ``finish``
verifies the key's assertion and commits it with the counter compare-and-set.

The code lives in three modules, one per responsibility; this module keeps the names they
had when it held all three (``from keyadmin.stepup.api import begin`` still works):

* ``keyadmin.stepup.challenge``: ``begin``, the challenge and its binding to the action,
  the input bounds, ``Limits`` (the policy's ``[step_up]``), purging expired challenges.
* ``keyadmin.stepup.admission``: ``policy_admits``, whether the policy still admits the
  model of the key being used (cached per policy, metadata snapshot and model).
* ``keyadmin.stepup.completion``: ``finish``, the checks in their fixed order, the commit,
  and the recording of every refusal (not ``finish.py``: ``keyadmin.stepup.finish`` is the
  function).

See docs/stepup.md.
"""

from keyadmin.stepup.admission import (
    ADMIT_CACHE_TTL_SECONDS,
    ZERO_AAGUID,
    Admitted,
    policy_admits,
)
from keyadmin.stepup.challenge import (
    DOMAIN,
    MAX_ACTION_CHARS,
    MAX_CHALLENGE_ID_CHARS,
    PURGE_BATCH,
    Limits,
    RequestOptionsJSON,
    StepUpChallenge,
    begin,
    binding,
)
from keyadmin.stepup.completion import StepUpResult, finish

__all__ = [
    "ADMIT_CACHE_TTL_SECONDS",
    "DOMAIN",
    "MAX_ACTION_CHARS",
    "MAX_CHALLENGE_ID_CHARS",
    "PURGE_BATCH",
    "ZERO_AAGUID",
    "Admitted",
    "Limits",
    "RequestOptionsJSON",
    "StepUpChallenge",
    "StepUpResult",
    "begin",
    "binding",
    "finish",
    "policy_admits",
]
