"""The prometheus source against a real Prometheus 2.x scraping a service every second."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from crystal_runbook import service
from crystal_runbook.triggers import evaluator, watch
from tests.conftest import REPO
from tests.integration.triggers import helpers
from tests.integration.triggers.servers import Prometheus, free_port
from tests.unit.triggers.metrics_server import MetricsServer

pytestmark = pytest.mark.integration


def shipped_rules() -> str:
    return (REPO / "inventory" / "triggers.yaml").read_text()


def test_shipped_rules_on_prometheus(tmp_path: Path, prometheus: Prometheus) -> None:
    """The five shipped rules run as real PromQL: a good service is all clear, values sane."""
    ws = helpers.workspace(
        tmp_path,
        metrics=f"{{source: prometheus, url: '{prometheus.url}'}}",
        triggers=shipped_rules(),
    )
    prometheus.wait_for_data('rate(http_requests_total{job="maia"}[1m])')
    try:
        report = service.triggers.trigger_report(ws, "maia")
    finally:
        ws.close()
    assert report is not None
    states = {r.name: (r.state, r.value) for r in report.rules}
    assert states["coherence-low"] == ("inactive", 0.8)
    assert states["db-connections-exhausted"] == ("inactive", 0.2)
    error_rate = states["error-rate"][1]
    assert error_rate is not None
    assert error_rate == pytest.approx(0.005, rel=0.05)
    p99 = states["latency-p99"][1]
    assert p99 is not None
    assert 0.1 < p99 < 0.5
    assert report.rule("memory-unbounded").state == "inactive"  # a 10-minute window: collecting


def test_invalid_promql_shows_the_servers_error_and_others_keep_working(
    tmp_path: Path, prometheus: Prometheus
) -> None:
    """A broken rule is `error` with Prometheus' parse error; the good rule still evaluates."""
    triggers = """
        apiVersion: crystal-runbook/v1
        kind: Triggers
        services:
          maia:
            rules:
              - {name: broken, query: 'sum(rate(http_requests_total[1m]', threshold: 1}
              - {name: coherence-low, query: 'avg(coherence_ratio{job="maia"})', op: "<", threshold: 0.4}
    """
    ws = helpers.workspace(
        tmp_path, metrics=f"{{source: prometheus, url: '{prometheus.url}'}}", triggers=triggers
    )
    try:
        report = service.triggers.trigger_report(ws, "maia")
    finally:
        ws.close()
    assert report is not None
    broken = report.rule("broken")
    assert broken.state == "error"
    assert "prometheus rejected the query" in broken.message
    assert "parse error" in broken.message
    assert report.rule("coherence-low").state == "inactive"
    assert report.rule("coherence-low").value == 0.8
    assert not report.healthy


def test_unreachable_prometheus_is_no_data(tmp_path: Path) -> None:
    """Nothing listening on the port: every rule `no_data`, naming the URL; no crash."""
    url = f"http://127.0.0.1:{free_port()}"
    ws = helpers.workspace(
        tmp_path, metrics=f"{{source: prometheus, url: '{url}'}}", triggers=shipped_rules()
    )
    try:
        report = service.triggers.trigger_report(ws, "maia")
    finally:
        ws.close()
    assert report is not None
    assert {r.state for r in report.rules} == {"no_data"}
    assert f"prometheus at {url} is unreachable" in report.rules[0].message
    assert not report.healthy


def test_restart_keeps_the_evidence_prometheus_holds(
    tmp_path: Path, prometheus: Prometheus, service_metrics: MetricsServer
) -> None:
    """After the condition has held for `for`, a freshly started watch fires on its first look.

    The start-up query_range over the window is the evidence; the same rule on a scrape source
    (no past) would only be pending.
    """
    triggers = """
        apiVersion: crystal-runbook/v1
        kind: Triggers
        services:
          maia:
            rules:
              - {name: coherence-low, query: 'avg(coherence_ratio{job="maia"})', op: "<", threshold: 0.4, for: 4s, action: rollback}
    """
    service_metrics.service.set(coherence=0.3)
    try:
        prometheus.wait_for_data('coherence_ratio{job="maia"} < 0.4')
        time.sleep(5.5)  # the condition holds in Prometheus for longer than `for`
        ws = helpers.workspace(
            tmp_path, metrics=f"{{source: prometheus, url: '{prometheus.url}'}}", triggers=triggers
        )
        notices: list[watch.Notice] = []
        try:
            report = service.triggers.watch(ws,
                "maia",
                settings=watch.WatchSettings(interval=1.0),
                notify=notices.append,
                on_report=lambda _r: None,
                once=True,
            )
        finally:
            ws.close()
    finally:
        service_metrics.service.set(coherence=0.8)
    rule = report.rule("coherence-low")
    assert rule.state == "firing"
    assert rule.active_at is not None
    assert report.at - rule.active_at >= 4.0
    assert any("filled from Prometheus' history" in n.message for n in notices)
    assert evaluator.iso(rule.active_at) == rule.as_json()["pending_since"]
