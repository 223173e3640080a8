#!/usr/bin/env bash
# Test-only set-up for tests/apps: real applications and a real browser, never keyadmin
# runtime dependencies. Idempotent; called by scripts/bootstrap.sh.
#  - as root: installs Debian's chromium (headless, driven over the DevTools protocol);
#    otherwise prints the apt-get line;
#  - one virtual environment per application under .venv-apps/, each with its pinned
#    packages (reinstalled when the pins below change).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup-apps: installing chromium (apt)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
  else
    echo "setup-apps: chromium is missing; run as root:" >&2
    echo "  sudo apt-get install -y chromium" >&2
  fi
fi

# name|requirements (pinned): the application's own packages, nothing of keyadmin's
APPS=(
  "flask|Flask-Security-Too[fsqla,mfa,common]==5.9.2"
  "django|Django==5.2.8 django-otp-webauthn==0.10.3 psycopg[binary]==3.2.12"
)
for entry in "${APPS[@]}"; do
  name=${entry%%|*}
  reqs=${entry#*|}
  venv=.venv-apps/$name
  stamp=$venv/.installed
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$reqs" ]; then
    continue
  fi
  echo "setup-apps: installing $reqs into $venv" >&2
  [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
  # shellcheck disable=SC2086 # the pins are separate words
  "$venv/bin/python" -m pip install -q $reqs
  echo "$reqs" > "$stamp"
done
