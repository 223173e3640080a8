"""One test per class of failure the fuzz suite found, each seen failing before its fix.

Each runs the CLI as the fuzz suite does (forked, time- and memory-bounded, its own copy of
the lab) and asserts the declared exit code and message, not just "no traceback".
"""

from __future__ import annotations

import pytest

from tests.fuzz.conftest import STDIN, Lab
from tests.fuzz.runner import Outcome, run_cli


def cli(lab: Lab, *argv: str, env: dict[str, str] | None = None) -> Outcome:
    where, env = lab.example(**(env or {}))
    try:
        return run_cli(list(argv), env=env, cwd=str(where), stdin=STDIN)
    finally:
        lab.discard(where)


def declared(outcome: Outcome, code: int, *words: str) -> None:
    assert not outcome.problems(), outcome.describe()
    assert outcome.code == code, outcome.describe()
    for word in words:
        assert word in outcome.stderr, outcome.describe()


# -- files that are not regular files, or too large: refused before they are read ---------------
@pytest.mark.parametrize(
    "argv",
    [
        ["sim", "show", "--state", "h/fifo"],
        ["policy", "check", "h/fifo"],
        ["policy", "check", "h/to-fifo"],
        ["mds", "diff", "h/fifo", "blob2.jwt"],
        ["log", "verify", "--anchor", "h/fifo", "--log-public-key", "log-key.pub.pem"],
        ["device", "info", "--device", "sim:h/fifo"],
    ],
    ids=lambda a: " ".join(a),
)
def test_a_fifo_is_refused_not_waited_on(lab: Lab, argv: list[str]) -> None:
    declared(cli(lab, *argv), 4 if "sim:h/fifo" in argv else 1, "not a regular file")


@pytest.mark.parametrize(
    "argv",
    [
        ["policy", "check", "/dev/zero"],
        ["log", "verify", "--anchor", "/dev/zero", "--log-public-key", "log-key.pub.pem"],
        ["log", "verify", "--log-public-key", "/dev/zero", "--anchor", "h/empty"],
        ["receipt", "verify", "x.y.z", "--no-action-check", "--public-key", "/dev/zero"],
        ["attestation", "verify", "--attestation-object", "@/dev/zero", "--client-data", "@att.cd",
         "--policy", "lab/policy/lab-softkey.toml"],
    ],
    ids=lambda a: " ".join(a),
)  # fmt: skip
def test_a_device_file_is_refused_not_read_forever(lab: Lab, argv: list[str]) -> None:
    out = cli(lab, *argv)
    assert not out.problems(), out.describe()
    assert out.code in (1, 2) and "not a regular file" in out.stderr, out.describe()


def test_a_huge_file_is_refused_by_its_size(lab: Lab) -> None:
    declared(cli(lab, "mds", "import", "h/huge"), 1, "bytes; at most")
    declared(cli(lab, "sim", "show", "--state", "h/huge"), 1, "bytes; at most")


# -- arguments that are not text --------------------------------------------------------------
@pytest.mark.parametrize(
    "value", ["\x00", "a\x00b", "\udcff"], ids=["nul", "nul-inside", "bad-utf8"]
)
def test_an_argument_that_is_not_text_is_a_usage_error(lab: Lab, value: str) -> None:
    declared(cli(lab, "sim", "show", "--state", value), 2)
    declared(cli(lab, "users", "list", "--policy", value), 2)
    declared(cli(lab, "creds", "show", value), 2)


# -- database URLs ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    ["@h/deep.toml", "sqlite:///h/nul", "postgresql://127.0.0.1:1/x", "sqlite:///h/dir"],
)
def test_a_bad_database_url_is_a_declared_error(lab: Lab, url: str) -> None:
    declared(cli(lab, "mds", "status", "--db", url), 1, "database")
    declared(cli(lab, "creds", "list", "--db", url), 1)


# -- deep nesting ------------------------------------------------------------------------------
def test_a_deeply_nested_state_file_is_damaged_not_a_crash(lab: Lab) -> None:
    declared(cli(lab, "sim", "show", "--state", "h/deep-obj.json"), 1, "h/deep-obj.json")
    declared(cli(lab, "device", "info", "--device", "sim:h/deep.json"), 4)


@pytest.mark.parametrize("name", ["h/deep.toml", "h/deep-inline.toml"])
def test_a_deeply_nested_policy_is_a_config_error(lab: Lab, name: str) -> None:
    declared(cli(lab, "policy", "check", name), 1, name)
    declared(cli(lab, "device", "prepare", "--policy", name, "--device", "sim:alice.key"), 1)


# -- numbers: finite and within sane ranges ---------------------------------------------------
@pytest.mark.parametrize("days", ["nan", "inf", "1e308", "-1e308", "-1"])
def test_grace_days_must_be_a_finite_sane_number(lab: Lab, days: str) -> None:
    declared(cli(lab, "mds", "status", "--grace-days", days), 2, "--grace-days")
    declared(cli(lab, "mds", "status", env={"KEYADMIN_MDS_GRACE_DAYS": days}), 1, "GRACE_DAYS")


POLICY_NUMBERS = [
    ("metadata", "freshness_grace_days", "nan"),
    ("metadata", "freshness_grace_days", "inf"),
    ("metadata", "freshness_grace_days", "1e308"),
    ("step_up", "challenge_lifetime_seconds", str(10**20)),
    ("step_up", "receipt_lifetime_seconds", str(10**18)),
    ("step_up", "attempt_window_seconds", str(2**63)),
    ("step_up", "max_attempts", str(2**40)),
    ("step_up", "counter_jump_threshold", str(2**40)),
    ("keys_per_user", "maximum", str(10**9)),
    ("policy", "version", str(2**63)),
]


@pytest.mark.parametrize(("table", "key", "value"), POLICY_NUMBERS, ids=lambda v: str(v)[:12])
def test_policy_numbers_are_finite_and_in_range(lab: Lab, table: str, key: str, value: str) -> None:
    import re

    text = (lab.template / "lab" / "policy" / "lab-softkey.toml").read_text()
    line = re.compile(rf"^{key} = .*$", re.M)
    if line.search(text):
        text = line.sub(f"{key} = {value}", text, count=1)
    else:
        text = text.replace(f"[{table}]\n", f"[{table}]\n{key} = {value}\n", 1)
    (lab.template / "lab" / "policy" / f"{key}.toml").write_text(text)
    try:
        declared(cli(lab, "policy", "check", f"lab/policy/{key}.toml"), 1, key)
    finally:
        (lab.template / "lab" / "policy" / f"{key}.toml").unlink()


@pytest.mark.parametrize(
    "option", [("--fault-delay", "nan"), ("--fault-delay", "1e300"), ("--fault-delay", "-1"),
               ("--rollback-after", "-5"), ("--rollback-after", str(2**70))],
    ids=lambda o: " ".join(o),
)  # fmt: skip
def test_software_key_numbers_are_bounded(lab: Lab, option: tuple[str, str]) -> None:
    declared(cli(lab, "sim", "init", "--state", "new.key", *option), 2, option[0].lstrip("-")[:5])


def test_a_state_file_with_an_endless_delay_is_damaged(lab: Lab) -> None:
    import json

    state = json.loads((lab.template / "alice.key").read_text())
    state.update(faults=["slow"], fault_delay=1e300)
    (lab.template / "slow.key").write_text(json.dumps(state))
    try:
        declared(cli(lab, "sim", "show", "--state", "slow.key"), 1, "fault_delay")
    finally:
        (lab.template / "slow.key").unlink()


# -- step-up JSON --------------------------------------------------------------------------------
DEEP = 100_000
STEPUP_JSON = {
    "deep array": "[" * DEEP + "]" * DEEP,
    "deep object": '{"response":' * DEEP + "1" + "}" * DEEP,
    "deep inside": '{"type": "public-key", "response": ' + "[" * 3000 + "]" * 3000 + "}",
    "duplicate type": '{"type": "x", "type": "public-key", "id": "AQ", "response": {}}',
    "duplicate inner": '{"id": "AQ", "response": {"signature": "AA", "signature": "AQ"}}',
}


@pytest.mark.parametrize("text", STEPUP_JSON.values(), ids=STEPUP_JSON.keys())
def test_step_up_response_json_is_refused_not_a_crash(text: str) -> None:
    from keyadmin.stepup.errors import StepUpRefused
    from keyadmin.stepup.verify import parse_response

    with pytest.raises(StepUpRefused) as e:
        parse_response(text)
    if "duplicate" in text or text.count('"type"') == 2 or text.count('"signature"') == 2:
        assert "duplicate" in e.value.message


@pytest.mark.parametrize(
    "data",
    [b"[" * 5000 + b"]" * 5000, b'{"a":' * 5000 + b"1" + b"}" * 5000,
     b'{"challenge": "AA", "challenge": "AQ", "type": "webauthn.get"}'],
    ids=["deep array", "deep object", "duplicate challenge"],
)  # fmt: skip
def test_client_data_json_is_refused_not_a_crash(data: bytes) -> None:
    from keyadmin.stepup.errors import StepUpRefused
    from keyadmin.stepup.verify import check_client_data

    with pytest.raises(StepUpRefused):
        check_client_data(data, challenge=b"\x00", origins=("https://example.com",))


# -- receipts whose signed claims are out of range ------------------------------------------------
@pytest.mark.parametrize(
    "claims",
    [{"exp": 10**30}, {"iat": -(10**30)}, {"exp": 2**63, "iat": 2**62}, {"ctr": 2**80},
     {"log": {"seq": 2**80, "hash": "0" * 64}}],
    ids=["exp", "iat", "both", "ctr", "log-seq"],
)  # fmt: skip
def test_a_signed_receipt_with_huge_numbers_is_invalid_not_a_crash(
    tmp_path: object, claims: dict[str, object]
) -> None:
    import time
    from pathlib import Path

    from keyadmin.stepup.errors import ReceiptInvalid
    from keyadmin.stepup.receipts import (
        ISSUER,
        TYP,
        ReceiptSigner,
        action_hash,
        generate_key,
        load_public_key,
        public_path,
        sign_statement,
        verify_receipt,
    )

    key = Path(str(tmp_path)) / "k.pem"
    generate_key(key, None)
    signer = ReceiptSigner.load(key)
    now = int(time.time())
    base = {"iss": ISSUER, "sub": "alice", "aud": "example.com", "act": action_hash("x"),
            "cred": "AQ", "ctr": 1, "jti": "j", "iat": now, "exp": now + 60}  # fmt: skip
    token = sign_statement(signer, TYP, {**base, **claims})
    public = load_public_key(public_path(key))
    try:
        receipt = verify_receipt(token, public, action="x")
    except ReceiptInvalid:
        return
    assert receipt.counter < 2**64 and (receipt.log_seq or 0) < 2**64, receipt


@pytest.mark.parametrize("kind", ["user", "action", "origin"])
def test_begin_refuses_values_that_are_not_text(tmp_path: object, kind: str) -> None:
    from pathlib import Path

    from keyadmin.errors import UsageError
    from keyadmin.stepup import begin
    from tests.integration.test_stepup_support import ACTION, make_lab

    lab = make_lab(Path(str(tmp_path)), f"sqlite:///{tmp_path}/r.db")
    args: dict[str, object] = {"user": "alice", "action": ACTION, "origin": None}
    args[kind] = {"user": None, "action": ["x"], "origin": 5}[kind]
    with pytest.raises(UsageError):
        begin(lab.db_url, lab.policy, **args)  # type: ignore[arg-type]


# -- found by a longer run (1100 examples) -------------------------------------------------------
KEYGENS = [["receipt", "keygen", "--receipt-key", ""], ["log", "keygen", "--log-key", ""]]


@pytest.mark.parametrize("argv", KEYGENS, ids=["receipt", "log"])
def test_an_empty_key_path_is_refused(lab: Lab, argv: list[str]) -> None:
    out = cli(lab, *argv, "--no-passphrase")
    assert not out.problems() and out.code in (1, 2), out.describe()


def test_a_hid_path_that_is_a_fifo_is_not_a_device(lab: Lab) -> None:
    declared(cli(lab, "device", "info", "--device", "hid:h/fifo"), 4, "h/fifo")
    declared(cli(lab, "device", "info", "--device", "hid:h/dir"), 4, "h/dir")


def test_a_registry_url_naming_a_fifo_is_refused(lab: Lab) -> None:
    out = cli(lab, "policy", "models", "--db", "sqlite:///h/fifo", "lab/policy/lab-softkey.toml")
    declared(out, 1, "h/fifo")


def test_audit_with_an_empty_target_is_a_usage_error(lab: Lab) -> None:
    declared(cli(lab, "audit", "--policy", "lab/policy/lab-softkey.toml", "--target", ""), 2)
