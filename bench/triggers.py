"""Trigger evaluation cost: 50 rules per evaluation against a real Prometheus, and detection.

Prometheus 2.x (Debian package) scrapes a simulated service every second and evaluates the
same 50 rules itself as an alerting-rule group (its own `prometheus_rule_group_last_duration_
seconds` is printed beside ours). Ours: one `Evaluator` over the 50 rules, an HTTP instant
query each, in parallel on 4 threads (the default) and serially; wall time and this process's
CPU time per evaluation. Then the detection path on a 1 s interval: from bad data to firing.

Run: .venv/bin/python bench/triggers.py   (needs `prometheus` on PATH: scripts/test.sh)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.triggers.servers import start_prometheus
from tests.unit.triggers.metrics_server import MetricsServer

from crystal_runbook.engine.inventory import MetricsTarget, Target
from crystal_runbook.triggers import evaluator, loader

RULES = 50
EVALUATIONS = 40
QUERIES = (
    ('avg(coherence_ratio{job="maia"})', "<", 0.4),
    (
        'sum(rate(http_request_errors_total{job="maia"}[1m])) / sum(rate(http_requests_total{job="maia"}[1m]))',
        ">",
        0.05,
    ),
    (
        'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{job="maia"}[1m])))',
        ">",
        2.0,
    ),
    ('max(db_connections_in_use{job="maia"}) / max(db_connections_max{job="maia"})', ">=", 0.95),
    ('max(process_resident_memory_bytes{job="maia"})', ">", 4e9),
)


def rules() -> list[tuple[str, str, str, float]]:
    out = []
    for i in range(RULES):
        query, op, threshold = QUERIES[i % len(QUERIES)]
        out.append((f"rule-{i:02d}", query, op, threshold * (1 + i / 1000)))
    return out


def triggers_yaml() -> str:
    lines = [
        "apiVersion: crystal-runbook/v1",
        "kind: Triggers",
        "services:",
        "  maia:",
        "    rules:",
    ]
    for name, query, op, threshold in rules():
        lines.append(
            f"      - {{name: {name}, query: '{query}', op: '{op}', threshold: {threshold}, for: 5m}}"
        )
    return "\n".join(lines) + "\n"


def prometheus_rules() -> str:
    lines = ["groups:", "  - name: maia", "    interval: 1s", "    rules:"]
    for name, query, op, threshold in rules():
        lines.append(f"      - alert: {name.replace('-', '_')}")
        lines.append(f"        expr: '({query}) {op} {threshold}'")
        lines.append("        for: 5m")
    return "\n".join(lines) + "\n"


def stats(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[round(0.9 * (len(ordered) - 1))]
    return f"median {statistics.median(values) * 1000:6.1f} ms  p90 {p90 * 1000:6.1f} ms"


def measure(bound: loader.Bound, workers: int) -> tuple[list[float], list[float]]:
    evaluator.PARALLEL_QUERIES = workers  # the bench compares pool sizes; the product uses 4
    walls, cpus = [], []
    with evaluator.Evaluator(bound) as ev:
        for i in range(EVALUATIONS + 3):
            wall, cpu = time.perf_counter(), time.process_time()
            report = ev.evaluate()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            assert len(report.rules) == RULES
            assert not report.missing, report.summary()
            if i >= 3:  # warm-up: connections, first parse
                walls.append(wall)
                cpus.append(cpu)
    return walls, cpus


def main() -> None:
    server = MetricsServer()
    prom = start_prometheus(static={"maia": [f"127.0.0.1:{server.port}"]}, rules=prometheus_rules())
    try:
        prom.wait_for_data('rate(http_requests_total{job="maia"}[1m])', timeout=20)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "triggers.yaml"
            path.write_text(triggers_yaml())
            target = Target(metrics=MetricsTarget(source="prometheus", url=prom.url))
            bound = loader.bind(loader.load(path), "maia", "bench", target)
            print(
                f"{RULES} rules per evaluation, {EVALUATIONS} evaluations, Prometheus at {prom.url}"
            )
            for workers in (4, 1):
                walls, cpus = measure(bound, workers)
                label = f"crystal-runbook, {workers} thread(s)"
                print(f"  {label:<34} wall {stats(walls)}   CPU {stats(cpus)}")
        time.sleep(3)  # let Prometheus evaluate its group a few times
        own = httpx.get(f"{prom.url}/metrics", timeout=5).text
        for line in own.splitlines():
            if line.startswith("prometheus_rule_group_last_duration_seconds{") and "maia" in line:
                seconds = float(line.rsplit(" ", 1)[1])
                label = "Prometheus' own group (same 50)"
                print(
                    f"  {label:<34} last evaluation {seconds * 1000:6.1f} ms (in-process, no HTTP)"
                )
        # detection on a 1 s interval: bad data at t0, for: 0 -> first evaluation that sees it
        fast = loader.bind(
            loader.parse(
                loader.yamlsource.parse_text(
                    triggers_yaml().replace("for: 5m", "for: 0s"), path="<bench>"
                )
            ),
            "maia",
            "bench",
            Target(metrics=MetricsTarget(source="prometheus", url=prom.url)),
        )
        with evaluator.Evaluator(fast) as ev:
            server.service.bad()
            t0 = time.monotonic()
            while "rule-00" not in {r.name for r in ev.evaluate().firing}:
                time.sleep(1.0)
            seen = time.monotonic() - t0
        print(
            f"  bad data -> coherence rule firing through Prometheus (scrape 1s, for 0): {seen:.1f} s"
            " (the scrape plus at most one 1 s evaluation interval)"
        )
    finally:
        prom.stop()
        server.stop()


if __name__ == "__main__":
    main()
