"""`crystal-runbook watch --interval 1s` over minutes: CPU share and resident memory, as a curve.

A long-running watcher must not creep: it should cost about the same CPU at minute 10 as at
minute 1, and its memory should level off (the scrape ring and rule windows are bounded).
This starts a sandbox (the shipped `sandbox` environment of inventory/services.yaml), runs
`watch maia --interval 1s --notify-only` on it, and every
``--every`` seconds reads the watcher's CPU time and RSS from /proc. The peer figure is
`kubectl get deploy --watch` (a process that only waits on a watch) over the same minutes.

Run: .venv/bin/python bench/watch_footprint.py [--minutes 10] [--every 30] [--repo DIR]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rollback import REPO, shipped_inventory

from crystal_runbook import sandbox

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--every", type=float, default=30)
    parser.add_argument("--repo", type=Path, default=REPO)
    args = parser.parse_args()
    repo = args.repo.resolve()
    bin_dir = repo / ".venv/bin" if args.repo != REPO else Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with sandbox.start(root / ".crystal", ready_delay=0.5) as sb:
            sb.settle(10)
            shipped_inventory(repo, root, sb)
            env = {**os.environ, "CRYSTAL_STATE_DIR": str(root / ".crystal"),
                   "KUBECONFIG": str(sb.kubeconfig_path), "KUBECACHEDIR": str(root / "cache")}
            ours = subprocess.Popen(
                [str(bin_dir / "crystal-runbook"), "watch", "maia", "--interval", "1s",
                 "--notify-only"], env=env, cwd=root, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
            peer = subprocess.Popen(
                [str(bin_dir / "kubectl"), "-n", "crystal", "get", "deploy", "maia", "--watch"],
                env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            print(f"watch --interval 1s on the sandbox ({bin_dir / 'crystal-runbook'}), "
                  f"{args.minutes:g} min, load average at start {os.getloadavg()[0]:.2f}")
            print(f"  {'t (s)':>6} {'CPU % (interval)':>17} {'CPU % (since 0)':>16} "
                  f"{'RSS MB':>7} {'kubectl watch CPU %':>20} {'RSS MB':>7} {'load 1m':>8}")
            started = time.monotonic()
            last_t, last_cpu, last_peer = started, cpu_seconds(ours.pid), cpu_seconds(peer.pid)
            first_cpu = last_cpu
            try:
                while time.monotonic() - started < args.minutes * 60:
                    time.sleep(args.every)
                    now, cpu, peer_cpu = time.monotonic(), cpu_seconds(ours.pid), cpu_seconds(
                        peer.pid)
                    print(f"  {now - started:6.0f} {100 * (cpu - last_cpu) / (now - last_t):16.2f}% "
                          f"{100 * (cpu - first_cpu) / (now - started):15.2f}% "
                          f"{rss_mb(ours.pid):7.1f} "
                          f"{100 * (peer_cpu - last_peer) / (now - last_t):19.2f}% "
                          f"{rss_mb(peer.pid):7.1f} {os.getloadavg()[0]:8.2f}", flush=True)
                    last_t, last_cpu, last_peer = now, cpu, peer_cpu
            finally:
                for proc in (ours, peer):
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(10)


if __name__ == "__main__":
    main()
