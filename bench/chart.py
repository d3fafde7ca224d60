"""The incident chart: Pillow (what `incident.write` draws) beside matplotlib (what it drew).

Each round is a fresh process, as in a rollback: the library's import plus the first draw
("cold"), then a second draw ("warm", what is left when the import was done in the
background during the rollout). matplotlib draws the same chart with the code the product
used before (Agg backend, object API); it is skipped when matplotlib is not installed.

Run: .venv/bin/python bench/chart.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r'''
import json, sys, time
from datetime import UTC, datetime, timedelta
started = time.perf_counter()
from crystal_runbook.incident import chart
t0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
iso = lambda d: d.isoformat(timespec="milliseconds").replace("+00:00", "Z")
points = [(iso(t0 + timedelta(seconds=i)), 0.004 if i < 5 else 0.12 + 0.01 * (i % 3)) for i in range(20)]
points += [(iso(t0 + timedelta(seconds=30 + 2 * i)), 0.03 / (i + 1)) for i in range(5)]
spec = chart.Spec(rule="error-rate", op=">", threshold=0.05, points=points,
    marks=[chart.Mark(iso(t0 + timedelta(seconds=5)), "condition first held", "pending"),
           chart.Mark(iso(t0 + timedelta(seconds=17)), "error-rate firing", "firing")],
    rollback_start=iso(t0 + timedelta(seconds=20)), rollback_end=iso(t0 + timedelta(seconds=40)),
    title="maia in sandbox: error-rate (rule > 0.05)")
draw = chart.render
if sys.argv[1] == "matplotlib":
    def draw(spec):
        import io
        import matplotlib
        matplotlib.use("Agg")
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from crystal_runbook.engine import journal
        when = lambda at: journal.parse_iso(at).timestamp()
        fig = Figure(figsize=(10, 4.5), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        start, end = when(spec.rollback_start), when(spec.rollback_end)
        times = [when(at) for at, _ in spec.points]
        values = [v for _, v in spec.points]
        ax.plot([t for t in times if t < start], [v for t, v in zip(times, values) if t < start], marker="o", markersize=3, color="#1f4e79", label="trigger window")
        ax.plot([t for t in times if t >= start], [v for t, v in zip(times, values) if t >= start], marker="o", markersize=3, color="#2e7d32", label="verification")
        ax.axhline(spec.threshold, color="#c00000", linestyle="--", linewidth=1, label="threshold")
        ax.axvline(start, color="#2e7d32", label="rollback start")
        ax.axvspan(start, end, color="#2e7d32", alpha=0.12)
        ax.axvline(end, color="#2e7d32", linestyle=":", label="rollback end")
        for mark in spec.marks:
            ax.axvline(when(mark.at), linestyle="-.", linewidth=1, label=mark.label)
        ax.set_title(spec.title)
        ax.grid(visible=True, alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        fig.subplots_adjust(left=0.08, right=0.75, top=0.9, bottom=0.13)
        out = io.BytesIO()
        fig.savefig(out, format="png", dpi=100)
        return out.getvalue()
ready = time.perf_counter()
draw(spec)
cold = time.perf_counter()
draw(spec)
warm = time.perf_counter()
print(json.dumps({"cold": cold - ready, "warm": warm - cold}))
'''


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    kinds = ["pillow"]
    try:
        import matplotlib  # noqa: F401 - only to know whether the peer can run

        kinds.append("matplotlib")
    except ImportError:
        print("matplotlib is not installed: only Pillow is measured")
    results: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    for i in range(args.rounds):
        for kind in kinds if i % 2 == 0 else kinds[::-1]:
            out = subprocess.run([sys.executable, "-c", CHILD, kind], check=True,
                                 capture_output=True, text=True)
            results[kind].append(json.loads(out.stdout))
    print(f"incident chart, 1000 x 450 px, {args.rounds} fresh processes each, alternating "
          f"(load average {os.getloadavg()[0]:.2f})")
    for kind in kinds:
        cold = statistics.median(r["cold"] for r in results[kind])
        warm = statistics.median(r["warm"] for r in results[kind])
        print(f"  {kind:<12} import + first draw {cold * 1000:7.1f} ms   draw again "
              f"{warm * 1000:6.1f} ms")


if __name__ == "__main__":
    main()
