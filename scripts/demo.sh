#!/usr/bin/env bash
# The demo on the embedded defaults: no cluster, no Slack token, no Prometheus to set up.
# Builds .venv if missing, installs crystal-runbook, then runs `crystal-runbook demo`: a
# sandbox cluster, a bad release, the rollback trigger firing, the verified rollback and the
# incident document (its path is printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
# bytecode for the package: an editable install compiles nothing ahead, and with
# PYTHONDONTWRITEBYTECODE set Python never caches it: every start would compile it again
.venv/bin/python -m compileall -q src >/dev/null

exec .venv/bin/crystal-runbook demo "$@"
