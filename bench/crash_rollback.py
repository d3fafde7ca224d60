"""The emergency rollback right after `kill -9` of a release, beside kubectl's (issue 9 item 10).

Before issue 9, a release killed with `kill -9` left its lock and its Kubernetes Lease
behind, and `rollback` was refused with exit 3 for up to 30 s. Now a holder whose process
is gone on this host is taken over at once. This measures what "at once" costs, on the
practice cluster started with the shipped inventory (`sandbox up --port 0` in a temporary
state dir, so nothing here needs port 17443 or this checkout's .crystal):

- ours after kill -9: `run release` (a new image each round) killed with SIGKILL as soon as
  its PATCH reaches the API server, then `crystal-runbook rollback maia --yes`;
- ours, clean: the same release left to finish, then the same rollback (the baseline: what
  a rollback costs with no lock to take over);
- kubectl after kill -9: the same killed release, then `kubectl rollout undo` and
  `kubectl rollout status` (no lock at all: the floor).

Each is timed from the kill (or the rollback's start, when clean) to the rollback's own
PATCH of the Deployment (from the sandbox's request log) and to the command's end (ours:
verified, documented; kubectl: rollout complete). Kinds alternate in each round; figures
are medians. The load average is printed at the start and the end.

Run: .venv/bin/python bench/crash_rollback.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from _timing import emit

BIN = Path(sys.executable).parent
CLI = str(BIN / "crystal-runbook")
KINDS = ("ours after kill -9", "ours, clean", "kubectl after kill -9")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


class Bench:
    """One sandbox in a temporary state dir, driven from an empty working directory."""

    def __init__(self, root: Path) -> None:
        self.state = root / "state"
        self.cwd = root / "cwd"
        self.cwd.mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CRYSTAL_")}
        self.env.update(CRYSTAL_ACTOR="bench", KUBECACHEDIR=str(root / "kube-cache"))
        self.image = 0

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CLI, "--state-dir", str(self.state), *args],
            cwd=self.cwd, env=self.env, capture_output=True, text=True, check=False,
        )

    @property
    def log(self) -> Path:
        return self.state / "sandbox" / "requests.jsonl"

    def patches(self, offset: int) -> list[float]:
        """Epoch times of the Deployment PATCHes logged after byte ``offset``."""
        with self.log.open() as f:
            f.seek(offset)
            found = [json.loads(line) for line in f if '"PATCH"' in line]
        return [
            datetime.fromisoformat(r["time"].replace("Z", "+00:00")).timestamp()
            for r in found
            if r["path"].endswith("/deployments/maia")
        ]

    def release(self, *, kill: bool) -> float:
        """Ship a new image; with ``kill``, SIGKILL it once its PATCH landed. The time after."""
        self.image += 1
        offset = self.log.stat().st_size
        proc = subprocess.Popen(
            [CLI, "--state-dir", str(self.state), "run", "release", "-p", "service=maia",
             "-p", f"image=registry.local/maia:3.0.{self.image}"],
            cwd=self.cwd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        if not kill:
            if proc.wait() != 0:
                raise SystemExit("the release failed")
            return time.time()
        while not self.patches(offset):
            if proc.poll() is not None:
                raise SystemExit("the release ended before its PATCH")
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return time.time()

    def rollback(self, kind: str) -> tuple[float, float]:
        """(seconds to the rollback's PATCH, seconds to its end), from the kill or its start."""
        since = self.release(kill=kind != "ours, clean")
        offset = self.log.stat().st_size
        kubeconfig = str(self.state / "sandbox" / "kubeconfig")
        if kind == "kubectl after kill -9":
            commands = [
                [str(BIN / "kubectl"), "--kubeconfig", kubeconfig, "-n", "crystal", "rollout",
                 "undo", "deployment/maia"],
                [str(BIN / "kubectl"), "--kubeconfig", kubeconfig, "-n", "crystal", "rollout",
                 "status", "deployment/maia", "--timeout=120s"],
            ]
        else:
            commands = [[CLI, "--state-dir", str(self.state), "rollback", "maia", "--yes"]]
        for argv in commands:
            done = subprocess.run(argv, cwd=self.cwd, env=self.env, capture_output=True,
                                  text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"{kind}: {' '.join(argv[:4])} exit {done.returncode}: "
                                 f"{done.stderr[-500:]}")
        ended = time.time()
        patched = self.patches(offset)
        return patched[0] - since, ended - since


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="crash-rollback-"))
    bench = Bench(root)
    try:
        up = bench.cli("sandbox", "up", "--detach", "--port", "0")
        if up.returncode != 0:
            raise SystemExit(up.stderr)
        print(f"{len(KINDS)} kinds x {args.rounds} rounds, alternating ({load()} at start)")
        figures: dict[str, list[tuple[float, float]]] = {kind: [] for kind in KINDS}
        for i in range(args.rounds):
            order = KINDS[i % len(KINDS):] + KINDS[: i % len(KINDS)]
            for kind in order:
                figures[kind].append(bench.rollback(kind))
        print(f"  {'':<24} {'to its PATCH':>22} {'to its end':>22}")
        for kind in KINDS:
            patch = [p for p, _ in figures[kind]]
            end = [e for _, e in figures[kind]]
            print(f"  {kind:<24} median {statistics.median(patch):5.2f} s (max {max(patch):5.2f})"
                  f" median {statistics.median(end):5.2f} s (max {max(end):5.2f})")
        emit("emergency rollback right after kill -9 of a release (to its end)",
             ours=[e for _, e in figures["ours after kill -9"]],
             peer=[e for _, e in figures["kubectl after kill -9"]], unit="s",
             peer_name="kubectl rollout undo + status",
             note="ours ends verified, announced and documented")
        print("  (ours ends verified: rollout, legacy mode, health, error rate and p99, "
              "announced, documented; kubectl ends when the rollout completes)")
        print(f"  ({load()} at end)")
    finally:
        bench.cli("sandbox", "down")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
