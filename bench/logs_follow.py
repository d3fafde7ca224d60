"""Logs follow throughput: `crystal-runbook logs maia -f` beside `kubectl logs -f -l app=maia`.

One sandbox, run as its own process (as `sandbox up` runs it), with the Deployment's pods
writing a log line every ``--interval`` seconds each (the sandbox's ``log_interval``
setting, set through ``PATCH /_sandbox/config`` and a rollout restart so every pod writes at
that rate; the shipped 0.3 s is far too slow to measure a follower). Rounds alternate:

- ours:    `crystal-runbook logs maia -f --tail 1` on the shipped `sandbox` environment
           (every pod of the service, each line prefixed with its pod name);
- kubectl: `kubectl logs -f -l app=maia --tail=1 --prefix` (one stream per pod, as ours).

Two phases, each with its own rate: throughput (``--interval``, default 0.5 ms: 6,000
lines per second from 3 pods, more than a follower may keep up with) and lag
(``--lag-interval``, default 10 ms: 300 lines per second, a rate both keep up with, so the
lag is the delivery path's and not a growing backlog's). Each round reads the follower's
stdout for ``--seconds`` after its first line (the first ``--warmup`` seconds of that are not counted: streams opening) and reports the lines per
second it delivered (printed on stdout and read here) and the lag of each line: the time it
was read here minus the time the sandbox wrote it (the ``time`` field of its JSON). The
pods' production rate is printed beside: a follower that keeps up delivers it; one that
falls behind delivers less and its lag grows.

For the table (lower is better there) it emits milliseconds per 1,000 lines delivered and
the median lag; the lines-per-second figures are in its printout.

Run: .venv/bin/python bench/logs_follow.py [--rounds 3] [--seconds 8] [--interval 0.0005]
     [--lag-interval 0.01]
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
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from _timing import emit

from crystal_runbook.sandbox import daemon

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@dataclass
class Sample:
    """One follower's round: lines per second delivered, and each counted line's lag."""

    rate: float
    lags: list[float]
    lines: int


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def written_at(line: str) -> float | None:
    """The sandbox's write time of a log line (its JSON ``time``), after any pod prefix."""
    start = line.find("{")
    if start < 0:
        return None
    try:
        stamp = json.loads(line[start:])["time"]
    except (ValueError, KeyError, TypeError):
        return None
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()


def follow(argv: list[str], env: dict[str, str], cwd: Path, seconds: float, warmup: float
           ) -> Sample:
    """Run a follower; count what it prints from ``warmup`` to ``seconds`` after line one."""
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1)
    arrivals: list[tuple[float, str]] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            arrivals.append((time.time(), line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while not arrivals and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    if not arrivals:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise SystemExit(f"{' '.join(argv[:3])}... printed nothing within 60 s:\n{err[-2000:]}")
    first = arrivals[0][0]
    time.sleep(max(0.0, first + seconds - time.time()))
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    reader.join(10)
    start, end = first + warmup, first + seconds
    counted = [(at, line) for at, line in list(arrivals) if start <= at < end]
    lags = [at - w for at, line in counted if (w := written_at(line)) is not None]
    return Sample(len(counted) / (end - start), lags, len(counted))


def patch_config(url: str, values: dict[str, float]) -> None:
    request = urllib.request.Request(  # noqa: S310 - our own sandbox on loopback
        f"{url}/_sandbox/config", data=json.dumps(values).encode(), method="PATCH",
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310  # nosec B310
        answer.read()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def restart_pods(kubectl: list[str], env: dict[str, str], url: str, interval: float
                 ) -> int:
    """Every pod of maia writing a line every ``interval`` seconds; returns the pod count."""
    patch_config(url, {"log_interval": interval})
    for step in (["rollout", "restart", "deployment/maia"],
                 ["rollout", "status", "deployment/maia", "--timeout=60s"]):
        subprocess.run([*kubectl, *step], env=env, check=True, stdout=subprocess.DEVNULL)
    time.sleep(1.0)  # the old pods' Terminating ends; only the new ones are followed
    return len(subprocess.run(
        [*kubectl, "get", "pods", "-l", "app=maia", "-o", "name"], env=env, check=True,
        capture_output=True, text=True).stdout.split())


def phase(title: str, interval: float, args: argparse.Namespace, *, kubectl: list[str],
          env: dict[str, str], root: Path, url: str) -> tuple[dict[str, list[Sample]], float]:
    """Alternating rounds of both followers at one production rate."""
    pods = restart_pods(kubectl, env, url, interval)
    produced = pods / interval
    argvs = {
        "ours": [str(BIN / "crystal-runbook"), "--runbooks", str(REPO / "runbooks"),
                 "logs", "maia", "-f", "--tail", "1"],
        "kubectl": [*kubectl, "logs", "-f", "-l", "app=maia", "--tail=1", "--prefix",
                    f"--max-log-requests={max(5, pods)}"],
    }
    print(f"\n{title}: {pods} pods, a line every {interval:g} s each: {produced:.0f} lines/s "
          f"produced; {args.rounds} rounds of {args.seconds:g} s per tool, alternating "
          f"({load()} at start)")
    results: dict[str, list[Sample]] = {"ours": [], "kubectl": []}
    for i in range(args.rounds):
        for kind in (("ours", "kubectl") if i % 2 == 0 else ("kubectl", "ours")):
            results[kind].append(follow(argvs[kind], env, root, args.seconds, args.warmup))
    labels = {"ours": "crystal-runbook logs maia -f", "kubectl": "kubectl logs -f -l app=maia"}
    print(f"  {'':<32} {'lines/s':>8} {'min':>7} {'max':>7} {'lag p50':>9} {'lag p99':>9}")
    for kind, samples in results.items():
        rates = [s.rate for s in samples]
        lags = [lag for s in samples for lag in s.lags]
        print(f"  {labels[kind]:<32} {statistics.median(rates):8.0f} {min(rates):7.0f} "
              f"{max(rates):7.0f} {pct(lags, 0.5) * 1000:7.1f}ms {pct(lags, 0.99) * 1000:7.1f}ms")
    ratio = (statistics.median(s.rate for s in results["ours"])
             / statistics.median(s.rate for s in results["kubectl"]))
    print(f"  lines/s ratio ours / kubectl: {ratio:.2f} ({load()} at end)")
    return results, produced


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="follow this long per round")
    parser.add_argument("--warmup", type=float, default=2.0, help="not counted: streams opening")
    parser.add_argument("--interval", type=float, default=0.0005,
                        help="throughput: seconds between a pod's lines (the sandbox's "
                             "log_interval), fast enough that a follower may fall behind")
    parser.add_argument("--lag-interval", type=float, default=0.01,
                        help="lag: seconds between a pod's lines, a rate both keep up with")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        state = root / ".crystal"
        endpoint = daemon.spawn(state, port=0, ready_delay=0.2)
        try:
            (root / "inventory").mkdir()
            for name in ("services.yaml", "triggers.yaml"):
                shutil.copy(REPO / "inventory" / name, root / "inventory" / name)
            env = {**os.environ, "CRYSTAL_STATE_DIR": str(state),
                   "KUBECONFIG": str(endpoint["kubeconfig"]),
                   "KUBECACHEDIR": str(root / "cache"), "CRYSTAL_ACTOR": "bench"}
            env.pop("SLACK_BOT_TOKEN", None)
            kubectl = [str(BIN / "kubectl"), "-n", "crystal"]
            url = str(endpoint["url"])
            fast, produced = phase("throughput", args.interval, args, kubectl=kubectl,
                                    env=env, root=root, url=url)
            slow, slow_produced = phase("lag", args.lag_interval, args, kubectl=kubectl,
                                        env=env, root=root, url=url)
        finally:
            daemon.stop(state)

    rate = {kind: statistics.median(s.rate for s in fast[kind]) for kind in fast}
    emit("logs follow: time per 1,000 lines delivered", ours=[1e6 / s.rate for s in fast["ours"]],
         peer=[1e6 / s.rate for s in fast["kubectl"]], unit="ms", peer_name="kubectl logs -f -l",
         note=f"pods write {produced:.0f} lines/s; delivered: ours {rate['ours']:.0f} lines/s, "
              f"kubectl {rate['kubectl']:.0f} lines/s")
    emit("logs follow: lag from a line's write to its print (median)",
         ours=[statistics.median(s.lags) * 1000 for s in slow["ours"]],
         peer=[statistics.median(s.lags) * 1000 for s in slow["kubectl"]], unit="ms",
         peer_name="kubectl logs -f -l", note=f"pods write {slow_produced:.0f} lines/s")


if __name__ == "__main__":
    main()
