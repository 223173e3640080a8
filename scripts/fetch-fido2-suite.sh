#!/usr/bin/env bash
# Fetch python-fido2's own device test suite (tests/device of the fido2 sdist whose version
# matches the fido2 installed in .venv) into .venv/fido2-device-suite/, once per version, so
# tests/integration/test_fido2_device_suite.py runs offline. Idempotent; run by bootstrap.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(.venv/bin/python -c 'from importlib.metadata import version; print(version("fido2"))')
cache=${KEYADMIN_FIDO2_SUITE_CACHE:-.venv/fido2-device-suite}
if [ -f "$cache/fido2-$version/tests/device/conftest.py" ]; then
  exit 0
fi
mkdir -p "$cache"
if [ ! -f "$cache/fido2-$version.tar.gz" ]; then
  echo "bootstrap: fetching the fido2 $version sdist (python-fido2's device tests)" >&2
  .venv/bin/python -m pip download -q --no-binary :all: --no-deps -d "$cache" "fido2==$version"
fi
.venv/bin/python -c 'import sys; from tests.support.fido2_suite import suite_root; suite_root(sys.argv[1], download=False)' "$version"
