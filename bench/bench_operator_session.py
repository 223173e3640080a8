"""What an operator session adds to one enrolment: ``keyadmin.flows.authority.authorize`` for
the ``enrol`` command through a live operator session (read the 0600 session file, check it
against the registry in constant time, the operator's role) next to the same call on a
registry in lab mode (no operator: nothing to check), in the same run, on SQLite.

The enrolment itself (the key's ceremony, attestation, policy, the registry write) is the same
either way, apart from the evidence dict written into its log row. Set-up (not timed): the
software key enrolled for olivia, olivia bootstrapped as operator with her key and PIN, one
``operator login``. Target: the difference under 20 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=300)
    args = ap.parse_args()

    from keyadmin.cli.interact import CliInteraction
    from keyadmin.flows.authority import authorize
    from keyadmin.flows.operators import bootstrap, login
    from tests.integration.test_stepup_support import PIN, make_lab, open_session

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "lab").mkdir()
        (work / "ops").mkdir()
        lab_url = f"sqlite:///{work / 'lab.db'}"
        make_lab(work / "lab", lab_url, users=("alice",))
        op_url = f"sqlite:///{work / 'ops.db'}"
        ops = make_lab(work / "ops", op_url, users=("olivia",))
        sessions = work / "sessions"
        with open_session(ops.keys["olivia"]) as device:
            bootstrap(op_url, "olivia", device, CliInteraction(PIN))
        with open_session(ops.keys["olivia"]) as device:
            login(op_url, "olivia", 60, device, CliInteraction(PIN), sessions=sessions)
        enrol_args = {"user": "alice", "policy_sha256": "0" * 64}

        def lab_mode() -> object:
            return authorize(
                lab_url, "enrol", enrol_args, operator="it-staff", open_device=None,
                interaction=None,
            )  # fmt: skip

        def session() -> object:
            return authorize(
                op_url, "enrol", enrol_args, operator=None, open_device=None, interaction=None,
                sessions=sessions,
            )  # fmt: skip

        assert getattr(session(), "session", None), "the session did not authorize"
        assert getattr(lab_mode(), "lab", False)
        times: dict[str, list[float]] = {"lab": [], "session": []}
        for _ in range(10):  # warm-up
            lab_mode()
            session()
        for _ in range(args.n):  # interleaved: the same machine state for both
            t = time.perf_counter()
            lab_mode()
            times["lab"].append(time.perf_counter() - t)
            t = time.perf_counter()
            session()
            times["session"].append(time.perf_counter() - t)
        lab_ms = statistics.median(times["lab"]) * 1e3
        ses_ms = statistics.median(times["session"]) * 1e3
        added = ses_ms - lab_ms
        print(f"authorize enrol, lab mode (no operator): {lab_ms:6.2f} ms (median of {args.n})")
        print(f"authorize enrol, operator session:       {ses_ms:6.2f} ms")
        print(f"added per enrolment: {added:.2f} ms; target < 20 ms -> "
              f"{'met' if added < 20 else 'NOT met'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
