#!/usr/bin/env bash
# Every benchmark under bench/ with quick round counts (each scenario well under 2 minutes on
# a quiet 2-core machine, the whole run under 15), then ONE Markdown table of the headline
# figures, ours beside the peer tool's (bench/report.py), also written to
# docs/performance.md with the machine and the load average.
# Each benchmark writes its figures as JSON lines (bench/_timing.emit, to $BENCH_RESULTS);
# its whole printout goes to a log file in the directory printed at the start.
# Usage: scripts/bench.sh [--no-write]     (--no-write: print the table, leave docs/ alone)
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
python=.venv/bin/python
write=(--write docs/performance.md)
[ "${1:-}" = "--no-write" ] && write=()

# the trigger-detection peer: Debian's Alertmanager (not started as a service); without it
# bench/detection.py reports the peer as missing
if ! command -v prometheus-alertmanager >/dev/null 2>&1; then
    sudo_cmd=()
    [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo -n)
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
        prometheus-alertmanager >/dev/null 2>&1 || echo "prometheus-alertmanager not installable" >&2
fi

logs=$(mktemp -d /tmp/crystal-bench-XXXXXX)
export BENCH_RESULTS="$logs/results.jsonl"
echo "{\"started\": \"$(date -u '+%Y-%m-%d %H:%M UTC')\"}" >"$BENCH_RESULTS"
echo "bench logs: $logs ($(cut -d' ' -f1-3 /proc/loadavg) load average at start)" >&2

run() {  # run NAME.py ARGS...: one benchmark, time-limited; its outcome recorded
    local name=$1
    shift
    local started=$SECONDS status=0
    echo "== bench/$name $*" >&2
    timeout 240 "$python" "bench/$name" "$@" >"$logs/${name%.py}.log" 2>&1 || status=$?
    local took=$((SECONDS - started))
    [ "$status" -eq 0 ] || echo "   exit $status: see $logs/${name%.py}.log" >&2
    printf '{"bench": "%s %s", "status": %d, "seconds": %d, "load": "%s"}\n' \
        "$name" "$*" "$status" "$took" "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$BENCH_RESULTS"
}
missing() {  # missing SCENARIO WHY: a scenario of issue 16 that no benchmark measures yet
    printf '{"missing": "%s", "why": "%s"}\n' "$1" "$2" >>"$BENCH_RESULTS"
}

run cli_help.py --rounds 10
run rollback.py --rounds 3 --ready-delay 0.5
run crash_rollback.py --rounds 1
run logs_follow.py --rounds 3 --seconds 6
run engine_overhead.py
run slack.py --rounds 3 --commands 200 --clients 200 --steps 6
run hosts.py --rounds 1 --hosts 20 --parts 1
run drill.py --rounds 1 --ready-delay 0.5
run triggers.py
run detection.py --rounds 1
run chart.py --rounds 3
run runs_list.py --runs 10000 --rounds 3 --backend sqlite
run sandbox.py --gets 200 --threads 10 --kubectl-gets 10 --kubectl-parallel 20
run serve.py --runs 20
run failover.py --rounds 1 --lease 4s --renew 1.3s  # renew at most a third of the Lease
run watch_footprint.py --minutes 1 --every 20

"$python" bench/report.py "$BENCH_RESULTS" "${write[@]}"
echo "($(cut -d' ' -f1-3 /proc/loadavg) load average at end; logs in $logs)" >&2
