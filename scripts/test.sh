#!/usr/bin/env bash
# The one test command (README, CI): builds .venv if missing, installs the package with its
# dev extras and the Debian packages the tests need, then lint, types, layer contracts and
# the whole pytest suite (unit, integration on real loopback servers, end-to-end).
# Arguments are passed to pytest, e.g. `scripts/test.sh tests/unit -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
# bytecode for the package: an editable install compiles nothing ahead, and with
# PYTHONDONTWRITEBYTECODE set Python never caches it: every start would compile it again
.venv/bin/python -m compileall -q src >/dev/null

# Debian packages the integration tests use (servers they start on loopback themselves; curl
# and openssl for docs/slack.md's signed check). The missing ones are
# installed by scripts/install-debs.sh without starting or enabling them as system services
# (policy-rc.d denies starts during the install and is kept as found; their units are then
# disabled and masked). Add a package here; nothing else needs to change.
debs=(prometheus postgresql openssh-server curl openssl)
scripts/install-debs.sh "${debs[@]}"

export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff" >&2
ruff check src tests bench
echo "== mypy" >&2
mypy
echo "== import contracts" >&2
lint-imports --no-cache >/dev/null
scripts/security.sh   # bandit, the repository's secret scan, pip-audit when reachable
echo "== pytest" >&2
# two workers (pytest-xdist), a test file to each in turn: half the suite's time is spent
# waiting on servers and rollouts, so two workers on two cores take about half as long.
# CRYSTAL_TEST_WORKERS=0 runs it in this process (e.g. to use a debugger).
# exit code 5 (no tests collected) fails the script like any other failure
exec pytest -n "${CRYSTAL_TEST_WORKERS:-2}" --dist loadfile "$@"
