#!/usr/bin/env bash
# The demo on the embedded defaults: no cluster, no Slack token, no Prometheus to set up.
# Builds .venv if missing, installs crystal-runbook, then runs `crystal-runbook demo`: a
# sandbox cluster, a bad release, the rollback trigger firing, the verified rollback and the
# incident document (its path is printed at the end). Also installs Debian's openssh-server
# when missing, for the practice hosts of `crystal-runbook sandbox hosts up`.
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

# The practice hosts (`crystal-runbook sandbox hosts up`, README "Services on virtual
# machines") run Debian's OpenSSH server: installed when missing (no service started or
# enabled), if this user may do so without a password prompt (root, or passwordless sudo).
# The demo itself does not need it, so it goes on either way.
if command -v dpkg >/dev/null && { [ "$(id -u)" -eq 0 ] || sudo -n true 2>/dev/null; }; then
    scripts/install-debs.sh openssh-server ||
        echo "openssh-server could not be installed: \`sandbox hosts up\` will need it" >&2
fi

exec .venv/bin/crystal-runbook demo "$@"
