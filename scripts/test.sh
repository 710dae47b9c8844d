#!/usr/bin/env bash
# Set up everything the test-suite needs on a fresh Debian machine, then run it (the README's test command).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not browser"`.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: Chromium for the browser tests, redis-server for the Celery comparison benchmark, and a
# real Prometheus server (with promtool) and Alertmanager for the monitor plugin's tests.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -x /usr/bin/prometheus ] || missing+=(prometheus)
[ -x /usr/bin/prometheus-alertmanager ] || missing+=(prometheus-alertmanager)
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python environment: .venv holding exactly requirements/test.lock and nothing of the machine's own packages.
# A venv that sees the system site-packages (older versions of this script made one) is made anew; a reused
# one whose packages drifted from the lock (an upgrade, a package installed by hand) is brought back to it.
if [ -f .venv/pyvenv.cfg ] && grep -qiE '^include-system-site-packages *= *true' .venv/pyvenv.cfg; then
  echo "scripts/test.sh: .venv sees the system's site-packages; making it anew" >&2
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
python scripts/sync_test_env.py

# The real 1.2.5 front end for the browser test (cached under ~/.cache; a failure makes that test skip loudly).
lama-cleaner install-frontend || echo "WARNING: lama-cleaner install-frontend failed; the browser test will be skipped" >&2

# Lint and formatting are part of the test run (the team's "ruff clean" rule, enforced).
ruff check .
ruff format --check .

exec python -m pytest -q "$@"
