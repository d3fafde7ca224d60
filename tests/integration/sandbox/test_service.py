"""The simulated service: per-pod ports, the health URL through the Service, metrics, logs."""

from __future__ import annotations

import http.client
import json
import time
from datetime import datetime

import pytest

from crystal_runbook import sandbox
from crystal_runbook.sandbox import kubelet

from .conftest import Kubectl, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def fetch(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def url_path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def metrics(sb: sandbox.Sandbox) -> dict[str, float]:
    status, body = fetch(sb.port, url_path(sb.metrics_url()))
    assert status == 200
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.split(" ")
            out[name] = float(value)
    return out


class TestPodPorts:
    """Every serving pod answers /health and /metrics on its own loopback port."""

    def test_pod_port_from_annotation(self, kubectl: Kubectl) -> None:
        """The port annotation leads to the pod's /health and Prometheus /metrics."""
        pod = kubectl.json("get", "pods")["items"][0]
        port = int(pod["metadata"]["annotations"][kubelet.PORT_ANNOTATION])
        status, body = fetch(port, "/health")
        health = json.loads(body)
        assert status == 200
        assert (health["status"], health["pod"], health["version"], health["mode"]) == (
            "ok",
            pod["metadata"]["name"],
            "1.5.0",
            "hybrid",
        )
        status, body = fetch(port, "/metrics")
        text = body.decode()
        assert status == 200
        for name in (
            "http_requests_total",
            "http_request_errors_total",
            'http_request_duration_seconds_bucket{le="+Inf"}',
            "coherence_ratio",
            "process_resident_memory_bytes",
            "db_connections_in_use",
            "db_connections_max",
        ):
            assert f"\n{name} " in text
        assert "\ndb_connections_in_use 20\n" in text
        assert "\ncoherence_ratio 0.800\n" in text

    def test_deleted_pod_stops_listening(self, kubectl: Kubectl) -> None:
        """When a pod is deleted its port refuses connections."""
        pod = kubectl.json("get", "pods")["items"][0]
        port = int(pod["metadata"]["annotations"][kubelet.PORT_ANNOTATION])
        kubectl.run("delete", "pod", pod["metadata"]["name"])
        with pytest.raises(ConnectionRefusedError):
            fetch(port, "/health")


class TestServiceEndpoints:
    """The stable URLs the inventory uses: service proxy health and aggregated metrics."""

    def test_health_through_the_service_proxy(self, sb: sandbox.Sandbox) -> None:
        """The health URL answers from a Ready pod of the Service, round robin."""
        pods = set()
        for _ in range(6):
            status, body = fetch(sb.port, url_path(sb.health_url()))
            assert status == 200
            pods.add(json.loads(body)["pod"])
        assert len(pods) == 3

    def test_no_ready_pods_is_503(self, sb: sandbox.Sandbox, kubectl: Kubectl) -> None:
        """Scaled to zero, the service proxy has no endpoints."""
        kubectl.run("scale", "deployment/maia", "--replicas=0")
        wait_for(lambda: kubectl.json("get", "pods")["items"] == [], what="pods gone")
        status, body = fetch(sb.port, url_path(sb.health_url()))
        assert status == 503
        assert json.loads(body)["message"] == 'no endpoints available for service "maia"'

    def test_aggregated_metrics_never_go_backwards_across_a_rollout(
        self, sb: sandbox.Sandbox, kubectl: Kubectl
    ) -> None:
        """Counters include pods already replaced, so a rollout does not reset them."""
        before = metrics(sb)
        assert before["sandbox_ready_pods"] == 3
        assert before["http_requests_total"] >= 3 * 40 * 59  # seeded pods have run for a minute
        kubectl.run("set", "image", "deployment/maia", "maia=registry.local/maia:1.6.0")
        kubectl.run("rollout", "status", "deployment/maia", "--timeout=20s")
        after = metrics(sb)
        assert after["http_requests_total"] > before["http_requests_total"]
        assert after["http_request_errors_total"] >= before["http_request_errors_total"]
        assert after["http_error_ratio"] == pytest.approx(0.005)
        text = fetch(sb.port, url_path(sb.metrics_url()))[1].decode()
        assert 'build_info{mode="hybrid",service="maia",version="1.6.0"} 1' in text

    def test_service_health_summary(self, sb: sandbox.Sandbox) -> None:
        """/_sandbox/services/<ns>/<name>/health reports every Ready pod."""
        status, body = fetch(sb.port, "/_sandbox/services/crystal/maia/health")
        doc = json.loads(body)
        assert status == 200
        assert doc["ready_pods"] == 3
        assert doc["status"] == "ok"


RAMP_SECONDS = 1.0
"""The burn's ramp in these tests (``burn_ramp_seconds`` in conftest's sandbox)."""
LOG_INTERVAL = 0.02
RAMPED_LINES = 100
"""Log lines written after the ramp that the error share is judged on (at 12 %: 12 expected,
so outside 3 % to 20 % about once in a thousand runs)."""


def logs_after_the_ramp(kubectl: Kubectl) -> list[dict[str, object]]:
    """One pod's log lines written once the burn had fully ramped, at least ``RAMPED_LINES``
    of them (waits for them: on a loaded machine the first second may hold few lines)."""

    def ramped() -> list[dict[str, object]]:
        out = kubectl.run("logs", "deployment/maia", "--tail=2000").stdout.splitlines()
        lines = [json.loads(x) for x in out]
        started = lines[0]["time"]
        assert "starting" in str(lines[0]["msg"]), lines[0]
        after = _seconds(str(started)) + RAMP_SECONDS + 0.1
        return [x for x in lines if _seconds(str(x["time"])) >= after]

    def enough() -> list[dict[str, object]] | None:
        lines = ramped()
        return lines if len(lines) >= RAMPED_LINES else None

    found: list[dict[str, object]] = wait_for(
        enough, timeout=30, what=f"{RAMPED_LINES} log lines after the ramp"
    )
    return found


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


class TestBurningRelease:
    """A -bad image: Ready, serving, and ramping to the failure the triggers look for."""

    def test_bad_release_ramps_to_the_rollback_triggers(
        self, sb: sandbox.Sandbox, kubectl: Kubectl
    ) -> None:
        """Within the ramp: 12 % errors, p99 3 s, coherence 0.3, growing memory, 98/100 DB."""
        sb.config.update({"log_interval": LOG_INTERVAL})
        kubectl.run("set", "image", "deployment/maia", "maia=registry.local/maia:1.6.0-bad")
        kubectl.run("rollout", "status", "deployment/maia", "--timeout=20s")
        time.sleep(1.2)
        first = metrics(sb)
        assert first["http_error_ratio"] == pytest.approx(0.12)
        assert first["http_latency_p99_seconds"] == pytest.approx(3.0)
        assert first["coherence_ratio"] == pytest.approx(0.3)
        assert (first["db_connections_in_use"], first["db_connections_max"]) == (98, 100)
        time.sleep(0.3)
        assert metrics(sb)["process_resident_memory_bytes"] > first["process_resident_memory_bytes"]
        lines = logs_after_the_ramp(kubectl)
        errors = [x for x in lines if x["level"] == "error"]
        assert 0.03 < len(errors) / len(lines) < 0.2
        assert all(x["status"] in (500, 503) and x["error"] for x in errors)
        status, body = fetch(sb.port, url_path(sb.health_url()))
        assert status == 503
        assert json.loads(body)["status"] == "degraded"
