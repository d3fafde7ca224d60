"""Start-up: `crystal-runbook --help` beside `kubectl --help` (target: 120 ms here), and
`health maia --env sandbox` beside `kubectl get deploy` (target: 1.0 s).

`health` runs on a sandbox (the shipped `sandbox` environment of inventory/services.yaml):
the health URL, the Deployment's rollout and the five trigger rules, whose `rate()` needs two
scrapes a second apart.

Run: .venv/bin/python bench/cli_help.py [--repo DIR]   (another checkout with its own .venv)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from _timing import measure, row, run_command
from rollback import REPO, shipped_inventory

from crystal_runbook import sandbox


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", type=Path, default=REPO)
    args = parser.parse_args()
    repo = args.repo.resolve()
    bin_dir = repo / ".venv/bin" if args.repo != REPO else Path(sys.executable).parent
    ours = str(bin_dir / "crystal-runbook")
    kubectl = str(bin_dir / "kubectl") if (bin_dir / "kubectl").exists() else shutil.which(
        "kubectl")
    print(f"--help wall time (process start to exit), 20 runs each ({ours}); load average "
          f"{os.getloadavg()[0]:.2f}")
    row("crystal-runbook --help", measure(run_command([ours, "--help"]), repeat=20))
    row("crystal-runbook run --help", measure(run_command([ours, "run", "--help"]), repeat=20))
    row(
        "python -c pass (interpreter floor)",
        measure(run_command([sys.executable, "-c", "pass"]), repeat=20),
    )
    if kubectl:
        row("kubectl --help (peer)", measure(run_command([kubectl, "--help"]), repeat=20))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with sandbox.start(root / ".crystal", ready_delay=0.2) as sb:
            sb.settle(10)
            shipped_inventory(repo, root, sb)
            env = {**os.environ, "CRYSTAL_STATE_DIR": str(root / ".crystal"),
                   "KUBECONFIG": str(sb.kubeconfig_path), "KUBECACHEDIR": str(root / "cache")}
            print(f"health on the sandbox, 10 runs each; load average {os.getloadavg()[0]:.2f}")
            row("crystal-runbook health maia --env sandbox",
                measure(run_command([ours, "health", "maia", "--env", "sandbox"], env=env,
                                    cwd=root), repeat=10))
            if kubectl:
                row("kubectl get deploy maia (peer)",
                    measure(run_command([kubectl, "-n", "crystal", "get", "deploy", "maia"],
                                        env=env, cwd=root), repeat=10))


if __name__ == "__main__":
    main()
