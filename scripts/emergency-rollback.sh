#!/usr/bin/env bash
# The checklist's emergency rollback script: roll SERVICE back to its previous release in
# legacy mode, verified, announced and documented (`crystal-runbook rollback`).
#
#   scripts/emergency-rollback.sh [--yes] [OPTION...] SERVICE [ENV]
#   SERVICE=maia CRYSTAL_ENV=production CRYSTAL_CONFIRM=yes scripts/emergency-rollback.sh
#
# SERVICE and ENV come from the arguments (ENV also as --env ENV), else from $SERVICE and
# $CRYSTAL_ENV (else the inventory's default environment); an ENV argument and a different
# --env are bad input (exit 2), not a guess. Environments that need confirmation
# (production) get `--yes` only when --yes/-y is given or CRYSTAL_CONFIRM=yes; otherwise crystal-runbook asks
# on a terminal, or exits 4 without changing anything. Other options go to `crystal-runbook
# rollback` as they are: --reason TEXT, --to-revision N, --to-release R, --dry-run,
# --break-lock, --state-dir DIR, --inventory DIR, --runbooks DIR, -o json.
#
# It runs the installed `crystal-runbook` (on PATH), else the one in this repository's
# .venv, and exits with its exit code (0 done, 1 failed or refused, 2 bad input, 3 lock held,
# 4 confirmation needed, 130 interrupted). Exit 2 when it cannot find either or no service
# is named.
set -euo pipefail

usage() {
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
}

yes=
[ "${CRYSTAL_CONFIRM:-}" = "yes" ] && yes=1
options=()
positional=()
env_option=
while [ $# -gt 0 ]; do
    case "$1" in
    -y | --yes) yes=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    --env)
        [ $# -ge 2 ] || { echo "emergency-rollback: $1 needs a value" >&2; exit 2; }
        env_option=$2
        shift
        ;;
    --env=*) env_option=${1#--env=} ;;
    --reason | --to-revision | --to-release | --state-dir | --inventory | --runbooks | -o | --output)
        [ $# -ge 2 ] || { echo "emergency-rollback: $1 needs a value" >&2; exit 2; }
        options+=("$1" "$2")
        shift
        ;;
    --) shift; positional+=("$@"); break ;;
    -*) options+=("$1") ;;
    *) positional+=("$1") ;;
    esac
    shift
done

service=${positional[0]:-${SERVICE:-}}
env=${positional[1]:-${env_option:-${CRYSTAL_ENV:-}}}
if [ -z "$service" ] || [ ${#positional[@]} -gt 2 ]; then
    echo "emergency-rollback: name one service (argument or \$SERVICE), e.g. $0 maia production" >&2
    exit 2
fi
if [ -n "$env_option" ] && [ "$env_option" != "$env" ]; then
    echo "emergency-rollback: two environments named ($env and --env $env_option): name one" >&2
    exit 2
fi

if command -v crystal-runbook >/dev/null 2>&1; then
    crystal=$(command -v crystal-runbook)
elif [ -x "$(dirname "$0")/../.venv/bin/crystal-runbook" ]; then
    crystal="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/crystal-runbook"
else
    echo "emergency-rollback: cannot find crystal-runbook on PATH nor in $(dirname "$0")/../.venv" >&2
    echo "  install it (pip install -e .), or run scripts/demo.sh once to build .venv" >&2
    exit 2
fi

command=("$crystal" rollback "$service")
[ -n "$env" ] && command+=(--env "$env")
[ -n "$yes" ] && command+=(--yes)
command+=("${options[@]}")
echo "emergency-rollback: ${command[*]}" >&2
exec "${command[@]}"
