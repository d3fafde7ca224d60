"""A rollback on the sandbox: crystal-runbook beside the kubectl commands it replaces.

Each round starts a fresh sandbox (maia at revision 2 of 2, 3 replicas, pods Ready after
--ready-delay) and times, from process start to "rolled out":

- ours:   `crystal-runbook rollback maia` (undo + legacy mode in one patch, verified by watch,
          health checked, journalled, locked by a Lease);
- kubectl: `kubectl rollout undo` + `kubectl set env CRYSTAL_MODE=legacy` (a second rollout)
          + `kubectl rollout status` (what the checklist's emergency script does by hand);
- kubectl, undo only: `kubectl rollout undo` + `kubectl rollout status` (no legacy mode).

It prints wall time and the number of API requests each made (from the sandbox's request log).

Run: .venv/bin/python bench/rollback.py [--rounds 5] [--ready-delay 0.5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crystal_runbook import sandbox

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def round_(kind: str, ready_delay: float) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with sandbox.start(root / ".crystal", ready_delay=ready_delay) as sb:
            sb.settle(10)
            (root / "inventory").mkdir()
            (root / "inventory/services.yaml").write_text(
                "default_environment: sandbox\nservices:\n  maia:\n    environments:\n"
                "      sandbox:\n        kubernetes: {context: crystal-sandbox, namespace: crystal,"
                f" deployment: maia, kubeconfig: {sb.kubeconfig_path}}}\n"
                f"        health_url: {sb.health_url()}\n")
            env = {**os.environ, "CRYSTAL_STATE_DIR": str(root / ".crystal"),
                   "KUBECONFIG": str(sb.kubeconfig_path), "KUBECACHEDIR": str(root / "cache")}
            kubectl = [str(BIN / "kubectl"), "-n", "crystal"]
            subprocess.run([*kubectl, "get", "deploy", "maia"], env=env, check=True,
                           stdout=subprocess.DEVNULL)  # warm kubectl's discovery cache
            before = len(sb.requests())
            if kind == "ours":
                took = timed([str(BIN / "crystal-runbook"), "--runbooks", str(REPO / "runbooks"),
                              "rollback", "maia"], env, root)
            else:
                started = time.perf_counter()
                subprocess.run([*kubectl, "rollout", "undo", "deployment/maia"], env=env,
                               check=True, stdout=subprocess.DEVNULL)
                if kind == "kubectl":
                    subprocess.run([*kubectl, "set", "env", "deployment/maia",
                                    "CRYSTAL_MODE=legacy"], env=env, check=True,
                                   stdout=subprocess.DEVNULL)
                subprocess.run([*kubectl, "rollout", "status", "deployment/maia",
                                "--timeout=120s"], env=env, check=True, stdout=subprocess.DEVNULL)
                took = time.perf_counter() - started
            return took, len(sb.requests()) - before


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ready-delay", type=float, default=0.5)
    args = parser.parse_args()
    print(f"rollback of maia (3 replicas, pods Ready {args.ready_delay}s after start), "
          f"{args.rounds} rounds each")
    labels = {"ours": "crystal-runbook rollback (verified, legacy mode)",
              "kubectl": "kubectl undo + set env + rollout status",
              "kubectl-undo": "kubectl undo + rollout status (no legacy)"}
    for kind, label in labels.items():
        results = [round_(kind, args.ready_delay) for _ in range(args.rounds)]
        times = [r[0] for r in results]
        requests = [r[1] for r in results]
        print(f"  {label:<50} median {statistics.median(times):6.2f} s "
              f"(min {min(times):.2f}, max {max(times):.2f})  API requests "
              f"median {statistics.median(requests):.0f}")


if __name__ == "__main__":
    main()
