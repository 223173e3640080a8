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
# Enterprise attestation is issue 20 item 3, implemented elsewhere (the inventory work): an
# enterprise attestation must carry its own certificate, and vendor-facilitated EA be limited
# to the key's configured RP IDs. Until then exactly these fail, both on "att_cert != cert"
# (the key signs with its batch certificate). Listed, printed and checked to still fail, so
# that the entries are removed the day they pass: not skipped, not hidden.
EXPECTED_PENDING: dict[str, str] = {
    "test_config.py::test_ep_platform": "issue 20 item 3: enterprise attestation certificate",
    "test_config.py::test_ep_vendor": "issue 20 item 3: enterprise attestation certificate",
}


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

    # vpcd's slot 1 (port + 1): the session's own card keeps slot 0
    port = pcscd_service.port + 1
    reader = pcscd_service.card_reader[:-2] + "01"
    state = tmp_path / "suite-key.json"
    extra_algs = [ES512, PS256, ES256K, *mldsa_if_available()]
    SoftKey.create(state, algorithms=[*DEFAULT_ALGORITHMS, *extra_algs])
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

    pending = sorted(t for t in result.failed if t in EXPECTED_PENDING)
    with capsys.disabled():
        for test in pending:
            print(f"  EXPECTED-PENDING (failed) {test}: {EXPECTED_PENDING[test]}")
    problems = [t for t in result.failed if t not in EXPECTED_PENDING] + result.errors
    assert not problems, f"{result.summary()}; failed/errors: {problems}\n{output[-6000:]}"
    now_passing = sorted(set(EXPECTED_PENDING) - set(pending))
    assert not now_passing, f"no longer failing, remove from EXPECTED_PENDING: {now_passing}"
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
