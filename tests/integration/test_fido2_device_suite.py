"""python-fido2's own device test suite, unmodified, against the software key over PC/SC.

`tests/device` of the fido2 sdist matching the installed fido2 runs in a child pytest with
`--reader` (NFC mode) against `keyadmin sim serve --transport pcsc` on the real private
pcscd + vpcd, with a fresh state file. Its one "take the key off the reader and put it
back" is driven through `--controller` (tests/support/fido2_suite.py stops and restarts
`sim serve`). Must show: 0 failed, 0 errors, and every skip (with the suite's own message)
listed in docs/software-key.md with the reason it stays skipped.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import missing_component
from tests.support.fido2_suite import (
    DOC,
    SKIP_TABLE_HEADING,
    PowerController,
    SimServe,
    SuiteUnavailable,
    compare_skips,
    documented_skips,
    run_suite,
    skip_table,
    suite_root,
)

pytestmark = pytest.mark.pcsc

# The RP ID the suite's vendor-facilitated enterprise attestation test uses (--ep-rp-id).
EP_RP_ID = "ep.example.com"


def mldsa_if_available() -> list[int]:
    """ML-DSA-44/65/87 too, where this cryptography can make them (the key offers exactly
    what it is made with: `keyadmin sim init --alg`)."""
    from keyadmin.sim.credkeys import MLDSA, check_available

    try:
        for alg in MLDSA:
            check_available(alg)
    except ValueError:
        return []
    return list(MLDSA)


@pytest.fixture(scope="module")
def fido2_suite() -> Path:
    try:
        return suite_root()
    except SuiteUnavailable as e:
        missing_component(f"python-fido2's device suite is not available: {e}")


@pytest.mark.timeout(1500)  # the whole suite in one test (~1 min; more on a loaded machine)
def test_python_fido2_device_suite_passes_over_pcsc(
    pcscd_service, fido2_suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from keyadmin.sim.authenticator import SoftKey
    from keyadmin.sim.credkeys import DEFAULT_ALGORITHMS, ES256K, ES512, PS256
    from keyadmin.sim.enterprise import configure

    # vpcd's slot 1 (port + 1): the session's own card keeps slot 0
    port = pcscd_service.port + 1
    reader = pcscd_service.card_reader[:-2] + "01"
    state = tmp_path / "suite-key.json"
    extra_algs = [ES512, PS256, ES256K, *mldsa_if_available()]
    key = SoftKey.create(state, algorithms=[*DEFAULT_ALGORITHMS, *extra_algs])
    configure(key, rp_ids=[EP_RP_ID], serial=None)  # as `keyadmin sim init --ep-rp-id`
    serve = SimServe(state, port, reader, tmp_path / "sim-serve.log")
    serve.start()
    try:
        with PowerController(serve) as controller:
            extra = ("--ep-rp-id", EP_RP_ID)
            result, output = run_suite(fido2_suite, reader, controller.url, tmp_path, extra)
    finally:
        serve.stop()

    with capsys.disabled():
        print(f"\npython-fido2 {fido2_suite.name} tests/device over PC/SC: {result.summary()}")
        for test, reason in sorted(result.skipped.items()):
            print(f"  SKIPPED {test}: {reason}")
        for test, reason in sorted(result.xfailed.items()):
            print(f"  XFAIL   {test}: {reason}")

    problems = result.failed + result.errors
    assert not problems, f"{result.summary()}; failed/errors: {problems}\n{output[-6000:]}"
    assert result.passed, f"nothing passed: {result.summary()}\n{output[-4000:]}"
    # NFC mode: the suite took the card off the reader and put it back through the controller
    assert serve.stops >= 2 and serve.starts >= 2, controller.calls

    documented = documented_skips(DOC)
    problems = compare_skips(result.skipped, documented)
    assert not problems, (
        f"the skips differ from the table under {SKIP_TABLE_HEADING!r} in {DOC.name}:\n"
        + "\n".join(problems)
        + f"\nthe run's skips, one row each:\n{skip_table(result.skipped, documented)}"
    )
