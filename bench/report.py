"""One Markdown table from the benchmarks' results (scripts/bench.sh), and docs/performance.md.

Each benchmark run by scripts/bench.sh appends its headline figures as JSON lines to the
file named by ``BENCH_RESULTS`` (``_timing.emit``: per-round values for ours and the peer,
the unit, the load average when it was written); scripts/bench.sh also appends one line per
benchmark it ran (``{"bench": ..., "status": ..., "seconds": ...}``) and per scenario the
issue asks for that no benchmark measures yet (``{"missing": ..., "why": ...}``). This turns
them into the table: scenario, ours, peer, ratio (ours / peer, below 1 is faster), unit,
rounds, min-max, and with ``--write`` into docs/performance.md with the machine, the load
average and how to reproduce it.

Run: python bench/report.py RESULTS [--write docs/performance.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def fmt(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def spread(values: list[float]) -> str:
    return f"{fmt(min(values))}-{fmt(max(values))}"


def table(records: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario | ours | peer | ratio | unit | rounds | min-max (ours; peer) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in (r for r in records if "scenario" in r):
        ours = [float(v) for v in r["ours"]]
        peer = [float(v) for v in r["peer"]] if r.get("peer") else []
        o = statistics.median(ours)
        peer_cell = "n/a"
        ratio = "n/a"
        ranges = spread(ours)
        if peer:
            p = statistics.median(peer)
            peer_cell = f"{fmt(p)} ({r.get('peer_name') or 'peer'})"
            ratio = f"{o / p:.2f}" if p else "n/a"
            ranges += f"; {spread(peer)}"
        scenario = r["scenario"] + (f" ({r['note']})" if r.get("note") else "")
        rounds = f"{len(ours)}" + (f"/{len(peer)}" if peer else "")
        lines.append(
            f"| {scenario} | {fmt(o)} | {peer_cell} | {ratio} | {r['unit']} | {rounds} | {ranges} |"
        )
    for r in (r for r in records if "missing" in r):
        lines.append(f"| {r['missing']} | not measured | | | | | {r['why']} |")
    return "\n".join(lines)


def runs(records: list[dict[str, Any]]) -> str:
    lines = ["| benchmark | exit | seconds | load average after |", "|---|---|---|---|"]
    for r in (r for r in records if "bench" in r):
        lines.append(f"| `{r['bench']}` | {r['status']} | {r['seconds']} | {r.get('load', '')} |")
    return "\n".join(lines)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    beside = Path(sys.executable).parent / "kubectl"  # the venv's, which the benchmarks use
    kubectl = subprocess.run(
        [str(beside) if beside.exists() else "kubectl", "version", "--client", "-o", "json"],
        capture_output=True, text=True, check=False,
    )
    try:
        kubectl_version = json.loads(kubectl.stdout)["clientVersion"]["gitVersion"]
    except (ValueError, KeyError):
        kubectl_version = "not found"
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, kubectl {kubectl_version}"
    )


def document(records: list[dict[str, Any]], commit: str, note: str = "") -> str:
    loads = [r["load"] for r in records if "load" in r and isinstance(r["load"], list)]
    load_range = (
        f"{min(x[0] for x in loads):.2f} to {max(x[0] for x in loads):.2f} (1-minute load average "
        "when each figure was written)"
        if loads
        else "not recorded"
    )
    started = next((r["started"] for r in records if "started" in r), "")
    return f"""# Performance

Figures from one run of `scripts/bench.sh` (every benchmark under `bench/`, quick round
counts), each beside its peer tool on the same machine in the same run: rounds alternate
between ours and the peer (so the load of a shared machine falls on both), figures are
medians, ratio = ours / peer (below 1: we are faster). Lower is better in every row.

- run: {started}, commit `{commit}`
- machine: {machine()}
- load average during the run: {load_range}. On a machine shared with other work the load
  adds wall time to both sides of every row; CPU-time figures are in each benchmark's own
  log.{note and chr(10) + "- " + note}

{table(records)}

Benchmarks run (each in its own process; its full printout is in the log directory
`scripts/bench.sh` names):

{runs(records)}

## How to reproduce

```
scripts/test.sh tests/unit -q     # once: builds .venv with the dev extras (kubectl, ansible, ...)
scripts/bench.sh                  # every benchmark, quick rounds: prints the table, rewrites this file
```

`scripts/bench.sh` needs the Debian packages `scripts/test.sh` installs (prometheus,
postgresql, openssh-server) and installs `prometheus-alertmanager` (the detection peer) when
it can. Each benchmark can also be run alone with more rounds, e.g.
`.venv/bin/python bench/rollback.py --rounds 9`; its docstring says what it measures and how.
On a quiet machine the figures are lower and tighter; compare ratios, not absolute seconds,
between machines.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--write", type=Path, default=None)
    parser.add_argument("--note", default="", help="a line about this run for the document")
    args = parser.parse_args()
    records = [json.loads(line) for line in args.results.read_text().splitlines() if line]
    print(table(records))
    if args.write is not None:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
            text=True, check=False,
        ).stdout.strip()
        args.write.write_text(document(records, commit, args.note))
        print(f"\nwritten: {args.write} ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)")


if __name__ == "__main__":
    main()
