"""Real servers for the trigger integration tests: Prometheus and PostgreSQL on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.triggers.servers import (
    Postgres,
    Prometheus,
    start_postgres,
    start_prometheus,
)
from tests.unit.triggers.metrics_server import MetricsServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def service_metrics() -> Iterator[MetricsServer]:
    """The simulated service Prometheus scrapes (a test flips it good/bad)."""
    server = MetricsServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def prometheus(service_metrics: MetricsServer) -> Iterator[Prometheus]:
    """Prometheus scraping ``service_metrics`` every second as job `maia`."""
    prom = start_prometheus(static={"maia": [f"127.0.0.1:{service_metrics.port}"]})
    try:
        prom.wait_for_data('coherence_ratio{job="maia"}')
        yield prom
    finally:
        prom.stop()


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """PostgreSQL with the source document's tables, a `crystal` role with a password."""
    pg = start_postgres()
    try:
        yield pg
    finally:
        pg.stop()
