#!/usr/bin/env bash
# Set up everything the test-suite needs on a fresh Debian machine, then run it (the README's test command).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not browser"`.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: Chromium for the browser test, redis-server for the Celery comparison benchmark.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python environment: a venv that may reuse what the machine already has installed.
if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv --system-site-packages .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install --quiet -e ".[test,torch,bench]"

# The real 1.2.5 front end for the browser test (cached under ~/.cache; a failure makes that test skip loudly).
lama-cleaner install-frontend || echo "WARNING: lama-cleaner install-frontend failed; the browser test will be skipped" >&2

# Lint and formatting are part of the test run (the team's "ruff clean" rule, enforced).
ruff check .
ruff format --check .

exec python -m pytest -q "$@"
