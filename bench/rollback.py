"""A verified rollback on the sandbox: crystal-runbook beside `kubectl rollout undo` + `status`.

Each round starts a fresh sandbox (maia at revision 2 of 2, 3 replicas, pods Ready
``--ready-delay`` seconds after they start) and runs one of, alternating round by round so
that the load of a shared machine falls on both sides alike:

- ours:    `crystal-runbook rollback maia --yes` on the shipped `sandbox` environment of
           inventory/services.yaml (it finds this sandbox through the state dir) with the shipped
           runbooks and triggers: announce, one patch (undo + legacy mode), rollout complete,
           health, errors ceased and performance restored (metrics on), users notified,
           incident document with its chart;
- kubectl: `kubectl rollout undo` + `kubectl rollout status` (no legacy mode, no
           verification beyond the rollout, nothing announced or written);
- with ``--set-env`` also `kubectl rollout undo` + `kubectl set env CRYSTAL_MODE=legacy` +
  `rollout status`, the emergency script's legacy mode by hand (a second rollout).

Per kind it prints medians of: wall time from spawn to exit, spawn to the PATCH of the
Deployment (the sandbox's request log), Kubernetes API requests (all, and before the PATCH),
health/metrics probes, peak RSS of the process (``wait4``; kubectl's is the largest of its
invocations) and its CPU time (user + system; on a shared machine it moves less with the
load than wall time). Then the ratio ours/kubectl and, for ours, where the time went (the
journal's step times).

Run: .venv/bin/python bench/rollback.py [--rounds 5] [--ready-delay 0.5 1] [--set-env]
     [--repo DIR]       (another checkout with its own .venv: its code, runbooks and inventory)
     [--baseline DIR]   (a second checkout timed in the same alternation: before and after)
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
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml
from _timing import emit

from crystal_runbook import sandbox
from crystal_runbook.sandbox import daemon

REPO = Path(__file__).resolve().parents[1]
DEPLOYMENT_PATH = "/apis/apps/v1/namespaces/crystal/deployments/maia"


@dataclass
class Sample:
    """One process tree's figures for one round."""

    wall: float
    to_patch: float | None
    api: int
    api_before_patch: int
    probes: int
    rss_mb: float
    cpu: float
    phases: dict[str, float] = field(default_factory=dict)


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def spawn(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, float, float]:
    """Run ``argv``; (wall seconds, spawn time since the epoch, peak RSS in MB, CPU seconds)."""
    spawned = time.time()
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[-3:])} exited {proc.returncode}:\n{stderr[-3000:]}")
    return took, spawned, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def shipped_inventory(repo: Path, root: Path, sb: Any) -> None:
    """The repo's inventory as shipped, for a sandbox served here with state dir root/.crystal.

    The shipped `sandbox` environment finds the sandbox through {sandbox_url} (the state
    dir's sandbox/endpoint.json, written here); an older checkout's inventory names port
    17443, which is moved to this sandbox's port.
    """
    (root / "inventory").mkdir()
    shutil.copy(repo / "inventory/triggers.yaml", root / "inventory/triggers.yaml")
    text = (repo / "inventory/services.yaml").read_text()
    if "{sandbox_url}" in text:
        daemon.write_files(root / ".crystal", sb)
        (root / "inventory/services.yaml").write_text(text)
        return
    data = yaml.safe_load(text)
    env = data["services"]["maia"]["environments"]["sandbox"]
    here = urlsplit(sb.url)

    def moved(url: str) -> str:
        return urlunsplit(urlsplit(url)._replace(scheme=here.scheme, netloc=here.netloc))

    env["health_url"] = moved(env["health_url"])
    env["metrics"]["url"] = moved(env["metrics"]["url"])
    env["kubernetes"]["kubeconfig"] = str(sb.kubeconfig_path)
    (root / "inventory/services.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def count(requests: list[dict[str, Any]], spawned: float) -> tuple[float | None, int, int, int]:
    """(spawn to PATCH, API requests, API requests before the PATCH, health/metrics probes)."""
    api = [r for r in requests if not r["path"].startswith("/_sandbox")
           and "/proxy/" not in r["path"]]
    probes = len(requests) - len(api)
    patch = next((r for r in api if r["method"] == "PATCH" and r["path"] == DEPLOYMENT_PATH),
                 None)
    if patch is None:
        return None, len(api), len(api), probes
    at = epoch(patch["time"])
    return at - spawned, len(api), sum(1 for r in api if epoch(r["time"]) < at), probes


def phases(bin_dir: Path, env: dict[str, str], cwd: Path, spawned: float, wall: float
           ) -> dict[str, float]:
    """Where our time went: start-up, each step, and the exit, from the journal."""
    out = subprocess.run([str(bin_dir / "crystal-runbook"), "--output", "json", "runs",
                          "--limit", "1"], env=env, cwd=cwd, check=True, capture_output=True)
    run_id = json.loads(out.stdout)[0]["id"]
    out = subprocess.run([str(bin_dir / "crystal-runbook"), "--output", "json", "runs", "show",
                          run_id], env=env, cwd=cwd, check=True, capture_output=True)
    run = json.loads(out.stdout)
    found = {"start-up (spawn to run started)": epoch(run["started_at"]) - spawned}
    for step in run["steps"]:
        if step.get("started_at") and step.get("ended_at"):
            found[step["id"]] = epoch(step["ended_at"]) - epoch(step["started_at"])
    found["exit (run ended to process gone)"] = spawned + wall - epoch(run["ended_at"])
    return found


@dataclass(frozen=True)
class Checkout:
    """A crystal-runbook to measure: its runbooks and inventory, and its .venv's bin."""

    repo: Path
    bin_dir: Path

    @classmethod
    def of(cls, repo: Path) -> Checkout:
        repo = repo.resolve()
        here = repo == REPO
        return cls(repo, Path(sys.executable).parent if here else repo / ".venv/bin")


def round_(kind: str, ready_delay: float, checkouts: dict[str, Checkout]) -> Sample:
    ours = kind in ("ours", "before")
    checkout = checkouts["before" if kind == "before" else "ours"]
    repo, bin_dir = checkout.repo, checkout.bin_dir
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with sandbox.start(root / ".crystal", ready_delay=ready_delay) as sb:
            sb.settle(10)
            shipped_inventory(repo, root, sb)
            env = {**os.environ, "CRYSTAL_STATE_DIR": str(root / ".crystal"),
                   "KUBECONFIG": str(sb.kubeconfig_path), "KUBECACHEDIR": str(root / "cache"),
                   "CRYSTAL_ACTOR": "bench"}
            env.pop("SLACK_BOT_TOKEN", None)
            kubectl = [str(bin_dir / "kubectl"), "-n", "crystal"]
            subprocess.run([*kubectl, "get", "deploy", "maia"], env=env, check=True,
                           stdout=subprocess.DEVNULL)  # warm kubectl's discovery cache
            before = len(sb.requests())
            found: dict[str, float] = {}
            if ours:
                wall, spawned, rss, cpu = spawn(
                    [str(bin_dir / "crystal-runbook"), "--runbooks", str(repo / "runbooks"),
                     "rollback", "maia", "--yes"], env, root)
                charts = list((root / ".crystal/incidents").glob("*.png"))
                assert charts, "the rollback wrote no chart: is the metrics source on?"
            else:
                argvs = [[*kubectl, "rollout", "undo", "deployment/maia"]]
                if kind == "kubectl-set-env":
                    argvs.append([*kubectl, "set", "env", "deployment/maia",
                                  "CRYSTAL_MODE=legacy"])
                argvs.append([*kubectl, "rollout", "status", "deployment/maia",
                              "--timeout=120s"])
                spawned, wall, rss, cpu = time.time(), 0.0, 0.0, 0.0
                for argv in argvs:
                    took, _, peak, used = spawn(argv, env, root)
                    wall, rss, cpu = wall + took, max(rss, peak), cpu + used
            to_patch, api, api_before, probes = count(sb.requests()[before:], spawned)
            if ours:
                found = phases(bin_dir, env, root, spawned, wall)
            return Sample(wall, to_patch, api, api_before, probes, rss, cpu, found)


def med(values: list[float | None]) -> float:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else float("nan")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def bench(ready_delay: float, rounds: int, kinds: list[str], checkouts: dict[str, Checkout]
          ) -> None:
    labels = {"ours": "crystal-runbook rollback (verified)",
              "before": "  the same, --baseline checkout",
              "kubectl": "kubectl rollout undo + rollout status",
              "kubectl-set-env": "kubectl undo + set env + rollout status"}
    print(f"\nready delay {ready_delay:g} s, 3 replicas, {rounds} rounds per kind, alternating "
          f"({load()} at start)")
    results: dict[str, list[Sample]] = {k: [] for k in kinds}
    for i in range(rounds):
        order = kinds if i % 2 == 0 else kinds[::-1]
        for kind in order:
            results[kind].append(round_(kind, ready_delay, checkouts))
    print(f"  {'':<40} {'median':>8} {'min':>6} {'max':>6} {'to PATCH':>9} {'API req':>8} "
          f"{'before':>7} {'probes':>7} {'peak RSS':>9} {'CPU':>6}")
    for kind in kinds:
        samples = results[kind]
        walls = [s.wall for s in samples]
        print(f"  {labels[kind]:<40} {med(walls):7.2f}s {min(walls):5.2f}s {max(walls):5.2f}s "
              f"{med([s.to_patch for s in samples]):8.3f}s {med([s.api for s in samples]):8.0f} "
              f"{med([s.api_before_patch for s in samples]):7.0f} "
              f"{med([s.probes for s in samples]):7.0f} "
              f"{med([s.rss_mb for s in samples]):7.1f}MB {med([s.cpu for s in samples]):5.2f}s")
    if "kubectl" in kinds:
        peer = results["kubectl"]
        emit(f"verified rollback on the sandbox (pods ready {ready_delay:g} s)",
             ours=[s.wall for s in results["ours"]], peer=[s.wall for s in peer], unit="s",
             peer_name="kubectl rollout undo + rollout status")
        emit(f"API requests per rollback (pods ready {ready_delay:g} s)",
             ours=[s.api for s in results["ours"]], peer=[s.api for s in peer], unit="requests",
             peer_name="kubectl rollout undo + rollout status",
             note="ours also verifies legacy mode and health, and announces")
    for mine in [k for k in ("ours", "before") if k in kinds]:
        wall = med([s.wall for s in results[mine]])
        for kind in [k for k in kinds if k.startswith("kubectl")]:
            print(f"  ratio {mine} / {kind}: {wall / med([s.wall for s in results[kind]]):.2f}")
    for mine in [k for k in ("ours", "before") if k in kinds]:
        print(f"  where the time went, {mine} (medians):")
        for name in results[mine][0].phases:
            print(f"    {name:<38} {med([s.phases.get(name) for s in results[mine]]):6.3f}s")
    print(f"  ({load()} at end)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ready-delay", type=float, nargs="+", default=[0.5, 1.0])
    parser.add_argument("--set-env", action="store_true",
                        help="also time kubectl undo + set env + rollout status")
    parser.add_argument("--repo", type=Path, default=REPO,
                        help="checkout to measure (its .venv, runbooks and inventory)")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another checkout timed in the same alternation (before/after)")
    args = parser.parse_args()
    checkouts = {"ours": Checkout.of(args.repo)}
    kinds = ["ours"]
    if args.baseline is not None:
        checkouts["before"] = Checkout.of(args.baseline)
        kinds.append("before")
    kinds += ["kubectl"] + (["kubectl-set-env"] if args.set_env else [])
    for name, checkout in checkouts.items():
        print(f"{name}: {checkout.repo} ({checkout.bin_dir / 'crystal-runbook'})")
    for delay in args.ready_delay:
        bench(delay, args.rounds, kinds, checkouts)


if __name__ == "__main__":
    main()
