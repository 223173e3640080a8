"""keyadmin step-up and keyadmin receipt: prove key + PIN for one action, check receipts."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from keyadmin.cli.options import DbOpt, DeviceOpt, JsonOpt, operator_name
from keyadmin.cli.render import ask_hidden, emit_json, emit_kv, err, out, say

if TYPE_CHECKING:
    from keyadmin.stepup.receipts import ReceiptSigner

ENV_PASSPHRASE = "KEYADMIN_RECEIPT_PASSPHRASE"  # noqa: S105 - the variable's name
KEY_OPT = typer.Option(
    None,
    "--receipt-key",
    envvar="KEYADMIN_RECEIPT_KEY",
    help="The receipt signing key (default: receipt-key.pem in the data directory).",
)

receipt_app = typer.Typer(
    help="Step-up receipts: create the signing key, verify receipts.\n\n"
    'Example: keyadmin receipt verify "$TOKEN" --action "delete tenant 42" --public-key k.pub.pem'
)


def _key_path(path: Path | None) -> Path:
    from keyadmin.config import data_dir

    return path if path is not None else data_dir() / "receipt-key.pem"


def _read_secret(prompt: str) -> str:
    from keyadmin.cli.interact import protect_secrets

    protect_secrets()
    if sys.stdin is not None and sys.stdin.isatty():
        return ask_hidden(prompt)
    line = sys.stdin.readline() if sys.stdin is not None else ""
    return line.rstrip("\r\n")


def _signer(path: Path) -> ReceiptSigner:
    from keyadmin.stepup.receipts import ReceiptSigner, key_is_encrypted

    if not key_is_encrypted(path):
        return ReceiptSigner.load(path, None)
    from keyadmin.cli.interact import protect_secrets

    protect_secrets()
    text = os.environ.get(ENV_PASSPHRASE) or _read_secret("Receipt key passphrase: ")
    passphrase = bytearray(text, "utf-8")  # cleared below; the str copy cannot be
    try:
        return ReceiptSigner.load(path, passphrase or None)
    finally:
        passphrase[:] = bytes(len(passphrase))


def step_up(
    user: str = typer.Argument(..., help="The administrator who steps up."),
    action: str = typer.Option(..., "--action", help="What they are about to do (signed)."),
    policy: Path = typer.Option(..., "--policy", envvar="KEYADMIN_POLICY", help="Policy file."),
    device: DeviceOpt = None,
    receipt_key: Path = KEY_OPT,
    receipt_ttl: int = typer.Option(
        None, "--receipt-ttl", help="Receipt lifetime in seconds (default: the policy's)."
    ),
    db: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Prove, right now, that USER holds an enrolled key and its PIN, for one action.

    A fresh single-use challenge bound to the action is signed by the key with user
    verification; the assertion is checked against the registry (signature, flags, origin,
    policy, strictly increasing counter) and a signed receipt is printed: the receipt alone on
    stdout (TOKEN=$(keyadmin step-up …) works), the summary on stderr. An encrypted
    receipt key's passphrase comes from KEYADMIN_RECEIPT_PASSPHRASE, else a hidden prompt
    (or the first stdin line); then the PIN (prompt, or the next stdin line).
    Exit 6 on a replay or a counter that did not advance (the credential is quarantined),
    5 without user verification, 3 when refused.

    Example: keyadmin step-up alice --action "delete tenant 42" --policy policies/prod.toml
    """
    from keyadmin.cli.device import _session
    from keyadmin.cli.interact import CliInteraction
    from keyadmin.cli.registry import _db
    from keyadmin.flows.stepup import step_up as run_step_up
    from keyadmin.policy.loader import load_policy

    url = _db(db)
    loaded = load_policy(policy)
    signer = _signer(_key_path(receipt_key))
    metadata = None
    if loaded.metadata.required:
        from keyadmin.policy.metadata import IndexMetadata
        from keyadmin.store.mds_index import MdsIndex

        metadata = IndexMetadata(MdsIndex(url))
    with _session(device) as session:
        say(f"Step-up for {user}: {action}")
        result = run_step_up(
            user=user,
            action=action,
            policy=loaded,
            session=session,
            interaction=CliInteraction(),
            db_url=url,
            metadata=metadata,
            signer=signer,
            receipt_lifetime_seconds=receipt_ttl or loaded.step_up.receipt_lifetime_seconds,
            actor=operator_name(None, fallback=user),
        )
    for flag in result.flags:
        err(f"warning: {flag} (logged)\n")
    if json_out:
        emit_json(result)
        return
    emit_kv(
        f"Step-up accepted: {user}",
        [
            ("action", result.action),
            ("action sha256", result.action_hash),
            ("credential", f"#{result.registry_id} {result.credential_id[:16]}…"),
            ("counter", f"{result.previous_counter} -> {result.counter}"),
            ("log seq", result.audit_seq),
            ("receipt expires", result.receipt_expires_at),
        ],
        stderr=True,  # stdout is the receipt alone: TOKEN=$(keyadmin step-up …)
    )
    out(f"{result.receipt}\n")


@receipt_app.command("verify")
def verify(
    token: str = typer.Argument(..., help="The receipt (compact JWS); '-' reads stdin."),
    action: str = typer.Option(None, "--action", help="Refuse unless it is for this action."),
    no_action_check: bool = typer.Option(
        False, "--no-action-check", help="Check everything but the action (said in the output)."
    ),
    public_key: Path = typer.Option(
        None, "--public-key", help="The receipt public key (default: beside the signing key)."
    ),
    receipt_key: Path = KEY_OPT,
    json_out: JsonOpt = False,
) -> None:
    """Check a step-up receipt offline: signature, key, expiry, and the action.

    --action is required; --no-action-check instead checks everything else and says
    "action NOT checked". Each call is stateless: the CLI cannot tell a receipt used before
    (verifiers that need single use call keyadmin.stepup.verify_receipt with used=).
    Exit 0 when valid, 3 when tampered, expired, or for another action, 2 without --action.
    Example: keyadmin receipt verify "$TOKEN" --action "delete tenant 42" --public-key k.pub.pem
    """
    from keyadmin.errors import UsageError
    from keyadmin.stepup.receipts import load_public_key, public_path, verify_receipt

    if action is not None and no_action_check:
        raise UsageError("--action and --no-action-check exclude each other")
    if action is None and not no_action_check:
        raise UsageError(
            "give --action: the action the receipt must be for",
            hint='e.g. keyadmin receipt verify "$TOKEN" --action "delete tenant 42" '
            "(or --no-action-check to check everything else)",
        )

    if token == "-":  # noqa: S105 - "-" means stdin
        token = sys.stdin.read().strip()
    key = load_public_key(public_key or public_path(_key_path(receipt_key)))
    receipt = verify_receipt(token, key, action=action)
    if action is None:
        say("warning: the action was not checked (--no-action-check)")
    if json_out:
        emit_json({"valid": True, **receipt.__dict__})
        return
    emit_kv(
        "Receipt valid" + ("" if action is not None else " (action NOT checked)"),
        list(receipt.__dict__.items()),
    )


@receipt_app.command("keygen")
def keygen(
    receipt_key: Path = KEY_OPT,
    no_passphrase: bool = typer.Option(
        False, "--no-passphrase", help="Store unencrypted (mode 0600 is then enforced)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing key."),
    json_out: JsonOpt = False,
) -> None:
    """Create the receipt signing key (P-256): PKCS#8 encrypted with a passphrase, mode 0600,
    and its public key beside it (*.pub.pem) for verifiers. Never stored in the registry.

    The passphrase comes from KEYADMIN_RECEIPT_PASSPHRASE, else a hidden prompt typed
    twice (or one stdin line).
    Example: keyadmin receipt keygen --receipt-key /etc/keyadmin/receipt-key.pem
    """
    from keyadmin.errors import UsageError
    from keyadmin.stepup.receipts import generate_key

    passphrase: bytes | None = None
    if not no_passphrase:
        from keyadmin.cli.interact import protect_secrets

        protect_secrets()
        text = os.environ.get(ENV_PASSPHRASE)
        if not text:
            text = _read_secret("New receipt key passphrase: ")
            if sys.stdin is not None and sys.stdin.isatty():
                if _read_secret("Again: ") != text:
                    raise UsageError("the two passphrases differ; nothing was written")
        if len(text) < 8:
            raise UsageError(
                "the passphrase must have at least 8 characters",
                hint="or pass --no-passphrase for a 0600 file",
            )
        passphrase = text.encode()
    files = generate_key(_key_path(receipt_key), passphrase, force=force)
    if json_out:
        emit_json(files)
    else:
        emit_kv("Receipt key created", list(files.__dict__.items()))
