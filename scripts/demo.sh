#!/usr/bin/env bash
# The demo on the embedded defaults: no token, no cluster, nothing to configure.
# Builds .venv if missing, installs crystal-runbook, then runs a shipped runbook end to end
# and shows what the journal recorded. (The full rollback story, `crystal-runbook demo`,
# replaces this body once the sandbox rollback lands.)
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .

export CRYSTAL_STATE_DIR=${CRYSTAL_STATE_DIR:-$(mktemp -d)/.crystal}
bin=.venv/bin/crystal-runbook
echo "state directory: $CRYSTAL_STATE_DIR"
echo
echo "\$ crystal-runbook plan practice"
"$bin" plan practice
echo
echo "\$ crystal-runbook run practice -p seconds=2s --yes"
"$bin" run practice -p seconds=2s --yes
echo
echo "\$ crystal-runbook runs"
"$bin" runs
echo
echo "\$ crystal-runbook runs show <last run>"
"$bin" runs show "$("$bin" runs --limit 1 -o json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')"
