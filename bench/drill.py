"""A rollback drill on the sandbox: its rollback and restore times beside kubectl's rollouts.

Each round starts a fresh sandbox (maia at revision 2 of 2, 3 replicas, pods Ready after
--ready-delay, the shipped runbooks, the scrape metrics source and the shipped triggers, so
the drill's rollback phase verifies error rate and p99 as rollback.yaml does) and measures:

- ours: `crystal-runbook drill maia`; from its drill report (the journal): the rollback time
  (the rollback phase, announcement to verified: undo in legacy mode, its rollout, legacy
  mode, health, error rate and p99 clear), the restore time (roll forward to the baseline,
  its rollout, health), the rollouts inside them (the undo and restore steps alone), and the
  Kubernetes API requests of each phase;
- kubectl: the bare rollouts a person would type, `kubectl rollout undo` + `kubectl rollout
  status` (to the previous release), then the same again (back to the release it had), each
  timed from the first process's start to `rollout status` returning.

The issue's target: each of our times <= the kubectl rollout time + 1.5 s. Rounds alternate
which kind goes first; figures are medians.

With --no-metrics the inventory has no metrics source, so the drill (like a rollback) skips
the error-rate and p99 checks: the figure then shows the engine and the rollouts alone.

Run: .venv/bin/python bench/drill.py [--rounds 5] [--ready-delay 1.0] [--no-metrics]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _timing import emit

from crystal_runbook import sandbox

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
TARGET_SLACK = 1.5


@dataclass
class Sample:
    rollback: float
    restore: float
    extra: dict[str, float] = field(default_factory=dict)


def inventory(root: Path, sb: sandbox.Sandbox, *, metrics: bool) -> None:
    directory = root / "inventory"
    directory.mkdir()
    (directory / "services.yaml").write_text(
        "default_environment: sandbox\nservices:\n  maia:\n    environments:\n      sandbox:\n"
        "        kubernetes: {context: crystal-sandbox, namespace: crystal, deployment: maia, "
        f"kubeconfig: '{sb.kubeconfig_path}'}}\n"
        f"        health_url: '{sb.health_url()}'\n"
        + (f"        metrics: {{source: scrape, url: '{sb.metrics_url()}'}}\n" if metrics else "")
    )
    shutil.copy(REPO / "inventory/triggers.yaml", directory / "triggers.yaml")


def timed(argvs: list[list[str]], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    for argv in argvs:
        subprocess.run(argv, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def seconds(step: dict[str, object]) -> float:
    from crystal_runbook.engine import journal

    return (journal.parse_iso(str(step["ended_at"]))
            - journal.parse_iso(str(step["started_at"]))).total_seconds()


def round_(kind: str, ready_delay: float, *, metrics: bool) -> Sample:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with sandbox.start(root / ".crystal", ready_delay=ready_delay) as sb:
            sb.settle(10)
            inventory(root, sb, metrics=metrics)
            env = {**os.environ, "CRYSTAL_STATE_DIR": str(root / ".crystal"),
                   "KUBECONFIG": str(sb.kubeconfig_path), "KUBECACHEDIR": str(root / "cache"),
                   "CRYSTAL_ACTOR": "bench"}
            env.pop("SLACK_BOT_TOKEN", None)
            kubectl = [str(BIN / "kubectl"), "-n", "crystal"]
            subprocess.run([*kubectl, "get", "deploy", "maia"], env=env, check=True,
                           stdout=subprocess.DEVNULL)  # warm kubectl's discovery cache
            if kind == "kubectl":
                undo = [[*kubectl, "rollout", "undo", "deployment/maia"],
                        [*kubectl, "rollout", "status", "deployment/maia", "--timeout=120s"]]
                return Sample(timed(undo, env, root), timed(undo, env, root))
            started = time.perf_counter()
            out = subprocess.run(
                [str(BIN / "crystal-runbook"), "--runbooks", str(REPO / "runbooks"), "drill",
                 "maia", "-o", "json"],
                env=env, cwd=root, check=False, capture_output=True, text=True,
            )
            wall = time.perf_counter() - started
            if out.returncode != 0:
                raise SystemExit(f"drill exited {out.returncode}:\n{out.stderr[-3000:]}")
            run = json.loads(out.stdout)
            report = run["drill"]
            assert report["verdict"] == "pass", report
            steps = {s["id"]: s for s in run["steps"]}
            return Sample(
                report["rollback_seconds"],
                report["restore_seconds"],
                {
                    "undo step (patch + rollout, verified)": seconds(steps["undo"]),
                    "restore step (patch + rollout, verified)": seconds(steps["restore"]),
                    "announce + legacy-mode + healthy": seconds(steps["announce"])
                    + seconds(steps["legacy-mode"])
                    + seconds(steps["healthy"]),
                    "metrics checks (errors-ceased + p99)": (
                        seconds(steps["errors-ceased"]) + seconds(steps["performance-restored"])
                        if steps["errors-ceased"]["status"] == "ok"
                        else 0.0
                    ),
                    "restored-healthy": seconds(steps["restored-healthy"]),
                    "drill total (process start to exit)": wall,
                    "API requests, rollback": float(report["rollback_requests"]),
                    "API requests, restore": float(report["restore_requests"]),
                },
            )


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ready-delay", type=float, default=1.0)
    parser.add_argument("--no-metrics", action="store_true",
                        help="no metrics source: the drill skips the error-rate and p99 checks")
    args = parser.parse_args()
    kinds = ["ours", "kubectl"]
    print(f"rollback drill of maia on the sandbox: ready delay {args.ready_delay:g} s, 3 replicas,"
          f" {args.rounds} rounds per kind, alternating, metrics source "
          f"{'off' if args.no_metrics else 'on'} ({load()} at start)")
    results: dict[str, list[Sample]] = {k: [] for k in kinds}
    for i in range(args.rounds):
        for kind in kinds if i % 2 == 0 else kinds[::-1]:
            results[kind].append(round_(kind, args.ready_delay, metrics=not args.no_metrics))
    med = statistics.median
    ours, peer = results["ours"], results["kubectl"]
    print(f"  {'':<48} {'median':>8} {'min':>7} {'max':>7}")
    for label, values in (
        ("drill rollback time (report)", [s.rollback for s in ours]),
        ("kubectl rollout undo + status (to previous)", [s.rollback for s in peer]),
        ("drill restore time (report)", [s.restore for s in ours]),
        ("kubectl rollout undo + status (back again)", [s.restore for s in peer]),
    ):
        print(f"  {label:<48} {med(values):7.2f}s {min(values):6.2f}s {max(values):6.2f}s")
    for name in ours[0].extra:
        values = [s.extra[name] for s in ours]
        unit = "" if name.startswith("API") else "s"
        print(f"    {name:<46} {med(values):7.2f}{unit}")
    for what, a, b in (
        ("rollback", med([s.rollback for s in ours]), med([s.rollback for s in peer])),
        ("restore", med([s.restore for s in ours]), med([s.restore for s in peer])),
    ):
        verdict = "meets" if a <= b + TARGET_SLACK else "MISSES"
        print(f"  {what}: {a:.2f}s vs kubectl {b:.2f}s + {TARGET_SLACK}s = {b + TARGET_SLACK:.2f}s:"
              f" {verdict} the target")
    print(f"  ({load()} at end)")
    emit("drill restore time", ours=[s.restore for s in ours], peer=[s.restore for s in peer],
         unit="s", peer_name="kubectl rollout undo + status (back again)",
         note="ours verifies health after the restore")


if __name__ == "__main__":
    main()
