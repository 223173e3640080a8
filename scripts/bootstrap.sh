#!/usr/bin/env bash
# Set up everything keyadmin needs on a fresh Debian 12 machine, idempotently.
#  - as root: installs the missing apt packages (pcscd, vpcd, PostgreSQL, build deps);
#    otherwise prints the exact apt-get line and carries on with what can run;
#  - creates .venv and installs keyadmin with its extras when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(make gcc pkg-config procps swig libpcsclite-dev pcscd vsmartcard-vpcd postgresql postgresql-contrib)
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  APT_PACKAGES+=(python3-venv)
fi
# pyscard has no Linux wheel: it compiles against Python.h
if ! "$PYTHON" -c 'import os, sysconfig; raise SystemExit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' >/dev/null 2>&1; then
  APT_PACKAGES+=(python3-dev)
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "bootstrap: installing apt packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "bootstrap: missing system packages; run as root:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
  fi
fi

# The hardware lab (tests/lab/): QEMU, Debian's kernel unpacked into a cache, the guest initramfs.
if [ "$(id -u)" = 0 ]; then
  bash scripts/lab/setup.sh >/dev/null || echo "bootstrap: the hardware lab could not be set up (tests/lab/ will say why)" >&2
else
  echo "bootstrap: the hardware lab needs root once: sudo bash scripts/lab/setup.sh" >&2
fi

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv" >&2
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.keyadmin-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: installing keyadmin and its dependencies into .venv" >&2
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  extras="dev,postgres"
  if [ -f /usr/include/PCSC/winscard.h ] && command -v swig >/dev/null; then
    extras="$extras,pcsc"
  else
    echo "bootstrap: skipping the pcsc extra (needs swig and libpcsclite-dev)" >&2
  fi
  .venv/bin/python -m pip install -q -e ".[${extras}]"
  echo "$want" > "$stamp"
fi
# python-fido2's device tests, for the software key's conformance test (which fails in CI without them)
bash scripts/fetch-fido2-suite.sh || echo "bootstrap: could not fetch python-fido2's device tests" >&2

# test-only: real applications and a browser for tests/apps (never keyadmin's dependencies)
bash scripts/setup-apps.sh || echo "bootstrap: the applications or the browser for tests/apps could not be set up (the tests will say why)" >&2
