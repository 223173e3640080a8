#!/usr/bin/env bash
# The main job on the embedded default: a SOFTWARE key (no hardware needed), registered and
# authenticated through python-fido2's unmodified client over CTAPHID.
set -euo pipefail
cd "$(dirname "$0")/.."
KA=.venv/bin/keyadmin
DEMO=${KEYADMIN_DEMO_DIR:-.demo}
mkdir -p "$DEMO"
chmod 700 "$DEMO"
echo "== 1. A SOFTWARE security key for the demo (no hardware key needed)"
$KA sim init --state "$DEMO/softkey.json" --force
echo
echo "== 2. Register (direct attestation, PIN) and authenticate with it"
# The PIN is random, lives in a shell variable and reaches keyadmin on stdin, never in argv.
pin=$(.venv/bin/python -c 'import secrets; print(secrets.token_hex(4))')
printf '%s\n' "$pin" | $KA sim selftest --state "$DEMO/softkey.json"
echo
echo "== 3. The key afterwards"
$KA sim show --state "$DEMO/softkey.json"
