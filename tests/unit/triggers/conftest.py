"""Fixtures for trigger tests: a controllable metrics server and a workspace pointed at it."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.unit.triggers.metrics_server import MetricsServer


@pytest.fixture
def metrics() -> Iterator[MetricsServer]:
    """A good service's /metrics on a free loopback port."""
    server = MetricsServer()
    yield server
    server.stop()


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a file under the test's directory from an indented literal."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write
