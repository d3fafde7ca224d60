"""triggers.yaml is checked like a runbook: every problem with file:line:column, exit 2."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from crystal_runbook import errors
from crystal_runbook.engine.inventory import MetricsTarget, Target
from crystal_runbook.triggers import loader
from tests.conftest import REPO

HEAD = "apiVersion: crystal-runbook/v1\nkind: Triggers\nservices:\n  maia:\n    rules:\n"

Write = Callable[[str, str], Path]


def problems(path: Path) -> list[str]:
    with pytest.raises(errors.RunbookInvalid) as caught:
        loader.load(path)
    assert caught.value.exit_code == 2
    return [str(p) for p in caught.value.problems]


class TestFileErrors:
    """Wrong types, unknown sources, bad durations: each located in the file."""

    def test_wrong_type(self, write: Write) -> None:
        """A threshold that is not a number is reported at its line and column."""
        path = write("t.yaml", HEAD + "      - {name: a, query: x, threshold: high}\n")
        (found,) = problems(path)
        assert found.startswith(f"{path}:6:29:")
        assert "threshold" in found

    def test_unknown_source(self, write: Write) -> None:
        """`source: graphite` names the sources that exist."""
        path = write(
            "t.yaml",
            HEAD
            + "      - name: a\n        source: graphite\n        query: x\n        threshold: 1\n",
        )
        (found,) = problems(path)
        assert found.startswith(f"{path}:7:9:")
        assert "'prometheus', 'sql' or 'scrape'" in found

    def test_bad_duration(self, write: Write) -> None:
        """`for: 5 minutes` says which forms a duration takes."""
        path = write(
            "t.yaml",
            HEAD
            + "      - name: a\n        query: x\n        threshold: 1\n        for: 5 minutes\n",
        )
        (found,) = problems(path)
        assert found.startswith(f"{path}:9:9:")
        assert "30s, 5m" in found

    def test_write_query_refused_at_load(self, write: Write) -> None:
        """A SQL rule that would write never gets as far as the database."""
        rule = "      - name: a\n        source: sql\n        query: DELETE FROM system_health\n"
        path = write("t.yaml", HEAD + rule + "        threshold: 1\n")
        (found,) = problems(path)
        assert found.startswith(f"{path}:8:9:")
        assert "refused" in found

    def test_scrape_rule_outside_the_subset(self, write: Write) -> None:
        """PromQL the scrape source cannot run is refused with its character position."""
        path = write(
            "t.yaml",
            HEAD
            + "      - name: a\n        source: scrape\n        query: rate(x[5m] offset 1h)\n        threshold: 1\n",
        )
        (found,) = problems(path)
        assert "'offset' is not supported" in found
        assert "character 12" in found

    def test_semantic_checks(self, write: Write) -> None:
        """Ratio without denominator, trend without window, duplicate names: all at once."""
        path = write(
            "t.yaml",
            HEAD
            + "      - {name: a, kind: ratio, query: x, threshold: 1}\n"
            + "      - {name: a, kind: trend, query: x, threshold: 1}\n",
        )
        found = problems(path)
        assert len(found) == 3
        assert any("denominator" in p for p in found)
        assert any("window" in p for p in found)
        assert any("duplicate rule name 'a'" in p for p in found)


class TestBinding:
    """Each rule's source: its own, else the environment's inventory block."""

    def test_shipped_file_binds_for_the_sandbox(self) -> None:
        """The shipped five rules run on a scrape source (the PromQL subset)."""
        loaded = loader.load(REPO / "inventory" / "triggers.yaml")
        target = Target(metrics=MetricsTarget(source="scrape", url="http://127.0.0.1:1/metrics"))
        bound = loader.bind(loaded, "maia", "sandbox", target)
        assert [b.name for b in bound.rules] == [
            "coherence-low",
            "error-rate",
            "latency-p99",
            "memory-unbounded",
            "db-connections-exhausted",
        ]
        assert {b.source for b in bound.rules} == {"scrape"}
        windows = {b.name: b.rule.for_ for b in bound.rules}
        assert windows["coherence-low"] == 300
        assert windows["error-rate"] == 120
        assert windows["latency-p99"] == 300

    def test_no_source_anywhere_is_located(self, write: Write) -> None:
        """A rule with nowhere to read from is exit 2 at the rule's line."""
        path = write("t.yaml", HEAD + "      - {name: a, query: x, threshold: 1}\n")
        with pytest.raises(errors.RunbookInvalid) as caught:
            loader.bind(loader.load(path), "maia", "sandbox", Target())
        assert "has no source in sandbox" in str(caught.value)

    def test_secret_url_only_from_the_environment(self, write: Write) -> None:
        """`url_env` reads the DSN from the environment; unset, it is a clear exit 2."""
        path = write(
            "t.yaml",
            "apiVersion: crystal-runbook/v1\nkind: Triggers\nservices:\n  maia:\n"
            "    sources:\n      sql: {url_env: MAIA_DATABASE_URL}\n"
            "    rules:\n      - {name: a, source: sql, query: SELECT 1, threshold: 0}\n",
        )
        loaded = loader.load(path)
        with pytest.raises(errors.ConfigurationError, match=r"\$MAIA_DATABASE_URL is not set"):
            loader.bind(loaded, "maia", "prod", None, environ={})
        bound = loader.bind(
            loaded, "maia", "prod", None, environ={"MAIA_DATABASE_URL": "postgresql://u:pw@h/db"}
        )
        assert bound.specs["sql"].url == "postgresql://u:pw@h/db"
        assert "pw" not in repr(bound.specs["sql"])

    def test_scrape_environment_checks_unpinned_queries(self, write: Write) -> None:
        """A rule without `source:` bound to a scrape environment must be in the subset."""
        path = write("t.yaml", HEAD + "      - {name: a, query: 'x offset 5m', threshold: 1}\n")
        loaded = loader.load(path)  # fine for Prometheus
        target = Target(metrics=MetricsTarget(source="scrape", url="http://h/metrics"))
        with pytest.raises(errors.RunbookInvalid, match="offset"):
            loader.bind(loaded, "maia", "sandbox", target)
        prom = Target(metrics=MetricsTarget(source="prometheus", url="http://h:9090"))
        assert loader.bind(loaded, "maia", "production", prom).rules[0].source == "prometheus"
