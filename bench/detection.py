"""Trigger detection latency: crystal-runbook's evaluator beside Prometheus + Alertmanager.

One simulated service (tests/unit/triggers/metrics_server.py) is scraped every second by a
real Prometheus (Debian package) on loopback. At t0 the service turns bad (coherence 0.3,
below the rule's 0.4). Both sides watch the same scrapes of the same transition, at once:

- ours: the coherence rule of a triggers file (``for: 0s``) evaluated by
  ``triggers.evaluator`` every ``--interval`` seconds (default 15 s, `crystal-runbook watch`'s
  default), a query to the same Prometheus per evaluation: t0 (a random moment between two
  evaluations, as the peer's is between two of its own) to the end of the first evaluation
  that reports the rule firing;
- peer: the same expression as a Prometheus alerting rule (``for: 0s``) with Prometheus'
  default ``evaluation_interval`` (1 m), sent to Alertmanager (Debian's
  `prometheus-alertmanager`) with its default ``group_wait`` (30 s), delivered to a webhook
  on loopback: t0 to the webhook's request.

Each round waits for both (the peer can take up to 1.5 min) before the service turns good
again. Without `prometheus-alertmanager` installed the peer is reported as missing.

Run: .venv/bin/python bench/detection.py [--rounds 1] [--interval 15]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import emit
from tests.unit.triggers.metrics_server import MetricsServer

from crystal_runbook.engine.inventory import MetricsTarget, Target
from crystal_runbook.triggers import evaluator, loader

EXPR = 'avg(coherence_ratio{job="maia"})'
THRESHOLD = 0.4
TRIGGERS = f"""apiVersion: crystal-runbook/v1
kind: Triggers
services:
  maia:
    rules:
      - {{name: coherence, query: '{EXPR}', op: '<', threshold: {THRESHOLD}, for: 0s}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {timeout:g} s")


class Hook:
    """A webhook receiver: the monotonic time of each request."""

    def __init__(self) -> None:
        received = self.received = []  # type: list[float]

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append(time.monotonic())
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=out)


def main() -> None:  # noqa: PLR0915 - one straight sequence: start, rounds, report
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--interval", type=float, default=15.0)
    args = parser.parse_args()
    prometheus = shutil.which("prometheus")
    alertmanager = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if prometheus is None:
        raise SystemExit("prometheus is not installed (scripts/test.sh installs it)")
    print(f"load average {os.getloadavg()[0]:.2f} at start; ours every {args.interval:g} s; "
          f"Alertmanager: {alertmanager or 'not installed'}")
    server = MetricsServer()
    hook = Hook()
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        am_port, prom_port = free_port(), free_port()
        alerting = ""
        if alertmanager:
            (root / "am.yml").write_text(
                "route: {receiver: hook}\n"  # group_wait: Alertmanager's default, 30 s
                f"receivers: [{{name: hook, webhook_configs: [{{url: 'http://127.0.0.1:{hook.port}/'}}]}}]\n"
            )
            procs.append(start([
                alertmanager, f"--config.file={root / 'am.yml'}", f"--storage.path={root / 'am'}",
                f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=",
            ], root / "am.log"))
            wait_port(am_port, 30)
            alerting = (f"alerting: {{alertmanagers: [{{static_configs: "
                        f"[{{targets: ['127.0.0.1:{am_port}']}}]}}]}}\n")
        (root / "rules.yml").write_text(
            "groups:\n  - name: maia\n    rules:\n      - alert: coherence\n"
            f"        expr: '{EXPR} < {THRESHOLD}'\n"
        )
        (root / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"  # evaluation_interval: 1m
            + alerting
            + f"rule_files: ['{root / 'rules.yml'}']\n"
            + "scrape_configs:\n  - job_name: maia\n"
            + f"    static_configs: [{{targets: ['127.0.0.1:{server.port}']}}]\n"
        )
        procs.append(start([
            prometheus, f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}", f"--web.listen-address=127.0.0.1:{prom_port}",
        ], root / "prometheus.log"))
        try:
            wait_port(prom_port, 30)
            time.sleep(3)  # a few scrapes of the good service
            path = root / "triggers.yaml"
            path.write_text(TRIGGERS)
            target = Target(metrics=MetricsTarget(
                source="prometheus", url=f"http://127.0.0.1:{prom_port}"))
            bound = loader.bind(loader.load(path), "maia", "bench", target)
            rng = random.Random()  # noqa: S311 - when the service turns bad, not security
            ours: list[float] = []
            peer: list[float] = []
            with evaluator.Evaluator(bound) as ev:
                for i in range(args.rounds):
                    server.service.good()
                    time.sleep(2)
                    before = len(hook.received)
                    ev.evaluate()  # of the good service; the watcher's next one is due later
                    offset = rng.uniform(0, args.interval)  # the bad moment, anywhere between
                    time.sleep(offset)
                    t0 = time.monotonic()
                    server.service.bad()
                    due = t0 + args.interval - offset
                    seen = None
                    while time.monotonic() < t0 + 150:
                        if seen is None and time.monotonic() >= due:
                            if "coherence" in {r.name for r in ev.evaluate().firing}:
                                seen = time.monotonic() - t0
                                ours.append(seen)
                            due += args.interval
                        if seen is not None and (not alertmanager or len(hook.received) > before):
                            break
                        time.sleep(0.1)
                    if alertmanager and len(hook.received) > before:
                        peer.append(hook.received[before] - t0)
                    print(f"  round {i + 1}: ours {seen if seen is None else round(seen, 1)} s, "
                          f"Prometheus + Alertmanager "
                          f"{round(peer[-1], 1) if len(peer) > i else 'nothing in 150 s'} s")
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(10)
            hook.server.shutdown()
            server.stop()
    if ours:
        emit(f"trigger detection latency (ours every {args.interval:g} s, watch's default)",
             ours=ours, peer=peer or None, unit="s",
             peer_name="Prometheus evaluation_interval 1m + Alertmanager group_wait 30s",
             note="" if peer else ("Alertmanager not installed" if not alertmanager
                                   else "Alertmanager sent nothing within 150 s"))
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
