"""The incident document of a rollback started by hand tells what users saw before it."""

from __future__ import annotations

import json
import sqlite3
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crystal_runbook.demo import DEMO_TRIGGERS
from crystal_runbook.triggers import history as history_module
from tests.integration.kube.conftest import Cluster
from tests.integration.triggers.servers import Prometheus, start_prometheus

pytestmark = pytest.mark.integration

BAD = "registry.local/maia:1.5.1-bad"
ERROR_RATE = (
    'sum(rate(http_request_errors_total{job="maia"}[10s])) '
    '/ sum(rate(http_requests_total{job="maia"}[10s]))'
)


def with_metrics(cluster: Cluster, metrics: str) -> None:
    """The test inventory with a metrics source, and the checklist's rules on 10 s windows."""
    path = cluster.root / "inventory" / "services.yaml"
    path.write_text(
        path.read_text().replace("        health_url:", f"        metrics: {metrics}\n        health_url:")
    )
    (cluster.root / "inventory" / "triggers.yaml").write_text(DEMO_TRIGGERS)


def burn(cluster: Cluster) -> None:
    """Ship the bad release and let it burn users for a few seconds."""
    cluster.kubectl("set", "image", "deployment/maia", f"maia={BAD}")
    cluster.wait_rolled_out()


def document_of(run: dict[str, Any]) -> tuple[dict[str, Any], str]:
    step = next(s for s in run["steps"] if s["id"] == "document")
    assert step["status"] == "ok", step["error"]
    return (
        json.loads(Path(step["outputs"]["json"]).read_text()),
        Path(step["outputs"]["markdown"]).read_text(),
    )


def history(cluster: Cluster, run_id: str) -> dict[str, Any]:
    """What the run's `incident.write` step read from the metrics source (journalled)."""
    with sqlite3.connect(cluster.state / "journal.db") as conn:
        (resolved,) = conn.execute(
            "SELECT resolved FROM steps WHERE run_id = ? AND id = 'document'", (run_id,)
        ).fetchone()
    return dict(json.loads(resolved)["history"])


@pytest.fixture
def prometheus(cluster: Cluster) -> Iterator[Prometheus]:
    """Prometheus scraping the sandbox's whole-service metrics every second as job maia."""
    prom = start_prometheus(
        static={"maia": [f"127.0.0.1:{cluster.sb.port}"]},
        metrics_path="/_sandbox/services/crystal/maia/metrics",
    )
    try:
        prom.wait_for_data('http_requests_total{job="maia"}', timeout=20)
        yield prom
    finally:
        prom.stop()


class TestManualRollbackDocument:
    def test_prometheus_history_from_the_release(
        self, cluster: Cluster, prometheus: Prometheus
    ) -> None:
        """query_range from the release: the errors users saw, a chart from the release on."""
        with_metrics(cluster, f"{{source: prometheus, url: '{prometheus.url}'}}")
        burn(cluster)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            found = prometheus.query(ERROR_RATE)
            if found and float(found[0]["value"][1]) > 0.08:  # type: ignore[index]
                break
            time.sleep(0.5)
        else:
            raise AssertionError("the bad release never showed errors in Prometheus")
        # the history's query_range has a point every MIN_STEP seconds from the release on:
        # let one grid point fall inside the burn before rolling back
        time.sleep(history_module.MIN_STEP + 1)
        done = cluster.cli("rollback", "maia", "--reason", "errors", "-o", "json", timeout=240)
        assert done.returncode == 0, done.stdout + done.stderr
        run = json.loads(done.stdout)
        doc, markdown = document_of(run)
        review = doc["review"]
        assert review["user_impact"] in ("minor", "major"), review["user_impact_basis"]
        assert "error-rate peaked at" in review["user_impact_basis"]
        assert doc["chart"]["rule"] == "error-rate"
        assert doc["chart"]["points"] > 5
        png = Path(str(doc["chart"]["path"])).read_bytes()
        assert struct.unpack(">II", png[16:24]) == (1000, 450)
        assert "User impact: [ ] None" in markdown
        past = history(cluster, run["id"])
        undo = next(s for s in run["steps"] if s["id"] == "undo")
        assert past["release_at"][:19] == undo["outputs"]["released_at"][:19]
        assert past["since"] == past["release_at"]  # the chart starts at the release
        points = past["rules"]["error-rate"]["points"]
        assert past["rules"]["error-rate"]["source"] == "prometheus"
        assert any(at < run["started_at"] and value > 0.05 for at, value in points)

    def test_scrape_history_is_what_health_saw(self, cluster: Cluster) -> None:
        """No Prometheus: the samples `health` kept are the history; impact is not "none"."""
        with_metrics(cluster, f"{{source: scrape, url: '{cluster.sb.metrics_url()}'}}")
        burn(cluster)
        time.sleep(3)
        seen = json.loads(cluster.cli("health", "maia", "-o", "json").stdout)
        errors = next(r for r in seen["rules"] if r["name"] == "error-rate")
        assert errors["value"] > 0.05
        done = cluster.cli("rollback", "maia", "-o", "json", timeout=240)
        assert done.returncode == 0, done.stdout + done.stderr
        doc, markdown = document_of(json.loads(done.stdout))
        assert doc["review"]["user_impact"] in ("minor", "major")
        assert f"error-rate peaked at {errors['value'] * 100:.1f} %" in (
            doc["review"]["user_impact_basis"]
        )
        assert doc["chart"]["rule"] == "error-rate"
        assert "User impact: [ ] None" in markdown

    def test_without_history_it_says_no_data_not_none(self, cluster: Cluster) -> None:
        """Nothing seen before the rollback: "no data", never "None" from the checks after."""
        with_metrics(cluster, f"{{source: scrape, url: '{cluster.sb.metrics_url()}'}}")
        burn(cluster)
        done = cluster.cli("rollback", "maia", "-o", "json", timeout=240)
        assert done.returncode == 0, done.stdout + done.stderr
        doc, markdown = document_of(json.loads(done.stdout))
        assert doc["review"]["user_impact"] == "unknown"
        assert doc["review"]["user_impact_basis"].startswith("no data: ")
        assert "[ ] None [ ] Minor [ ] Major (no data)" in markdown
        points = doc["chart"]["points"]  # only the verification's, often one
        assert f"({points} value{'' if points == 1 else 's'} from the journal)" in markdown
