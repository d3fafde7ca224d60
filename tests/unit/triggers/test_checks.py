"""`metrics.check` and `sql.check` in runbooks: verification that waits for recovery."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from crystal_runbook import errors, service
from crystal_runbook.actions import sql as sql_action
from crystal_runbook.triggers import sqlsource
from tests.unit.triggers.metrics_server import MetricsServer
from tests.unit.triggers.test_watch import make_workspace

VERIFY = """
apiVersion: crystal-runbook/v1
kind: Runbook
name: verify
params:
  service: {type: string, required: true}
steps:
  - id: coherence-restored
    uses: metrics.check
    with: {rule: coherence-low, expect: clear}
    retry: {attempts: 100, delay: 0.1s}
    timeout: 10s
  - id: errors-ceased
    uses: metrics.check
    with:
      query: 'sum(rate(http_request_errors_total[5s])) / sum(rate(http_requests_total[5s]))'
      op: ">"
      threshold: 0.05
      expect: clear
      for: 0.3s
    retry: {attempts: 100, delay: 0.1s}
    timeout: 10s
"""


def workspace_with(root: Path, url: str, runbook: str) -> service.Workspace:
    ws = make_workspace(root, url)
    (root / "runbooks" / "verify.yaml").write_text(runbook.lstrip())
    return ws


class TestMetricsCheck:
    """Holds when the rule is clear; waits while it is not; never passes without data."""

    def test_waits_for_recovery(self, tmp_path: Path, metrics: MetricsServer) -> None:
        """Coherence is low when the step starts; it passes once the service recovers."""
        metrics.service.set(coherence=0.3)
        timer = threading.Timer(0.5, lambda: metrics.service.set(coherence=0.8))
        timer.start()
        ws = workspace_with(tmp_path, metrics.url, VERIFY)
        try:
            result = service.runs.run(ws, "verify", {"service": "maia"})
        finally:
            timer.join()
            ws.close()
        assert result.run.status == "ok", result.run.error
        first, second = result.run.steps
        assert first.attempts > 1
        assert first.outputs["state"] == "inactive"
        assert first.outputs["value"] == 0.8
        assert second.outputs["rule"] == "inline-query"
        assert second.evidence["metrics"]["query"].startswith("sum(rate(")

    def test_missing_data_never_passes(self, tmp_path: Path, metrics: MetricsServer) -> None:
        """With /metrics down the check fails at its timeout, saying "no data"."""
        ws = workspace_with(tmp_path, metrics.url, VERIFY.replace("timeout: 10s", "timeout: 1s"))
        metrics.stop()
        try:
            result = service.runs.run(ws, "verify", {"service": "maia"})
        finally:
            ws.close()
        assert result.run.status == "failed"
        assert result.exit_code == 1
        assert "no_data" in str(result.run.error)

    def test_unknown_rule_names_the_rules(self, tmp_path: Path, metrics: MetricsServer) -> None:
        """A misspelt rule name is a clear error listing the rules that exist."""
        ws = workspace_with(
            tmp_path, metrics.url, VERIFY.replace("rule: coherence-low", "rule: coherence")
        )
        try:
            result = service.runs.run(ws, "verify", {"service": "maia"})
        finally:
            ws.close()
        assert result.run.status == "failed"
        assert "did you mean 'coherence-low'" in str(result.run.error)

    def test_inline_query_needs_a_threshold(self, tmp_path: Path, metrics: MetricsServer) -> None:
        """`validate`/`plan` refuse an inline query without a threshold, with file:line."""
        bad = VERIFY.replace("      threshold: 0.05\n", "")
        ws = workspace_with(tmp_path, metrics.url, bad)
        try:
            with pytest.raises(
                errors.RunbookInvalid, match=r"verify.yaml:\d+:\d+: .*needs a `threshold`"
            ):
                service.runs.run(ws, "verify", {"service": "maia"})
        finally:
            ws.close()


class TestSqlReadOnly:
    """SQL rules and checks refuse anything but one read-only statement, before sending it."""

    @pytest.mark.parametrize(
        "query",
        [
            "SELECT * FROM current_health",
            "select avg(coherence_ratio) as value from system_health where timestamp > now() - interval '1 hour'",
            "WITH h AS (SELECT 1 AS x) SELECT x FROM h;",
            "SELECT 'drop table x; delete' AS note, 1",
            "SELECT updated_at, 1 FROM t -- delete",
        ],
    )
    def test_reads_pass(self, query: str) -> None:
        """Keywords inside strings, comments or longer names do not count."""
        assert sqlsource.check_read_only(query) is None

    @pytest.mark.parametrize(
        ("query", "why"),
        [
            ("DELETE FROM system_health", "not DELETE"),
            ("SELECT 1; DROP TABLE system_health", "one statement"),
            ("WITH gone AS (DELETE FROM t RETURNING *) SELECT count(*) FROM gone", "DELETE"),
            ("SELECT * INTO backup FROM system_health", "INTO"),
            ("UPDATE current_health SET coherence_ratio = 1", "not UPDATE"),
            ("   ", "empty"),
        ],
    )
    def test_writes_are_refused(self, query: str, why: str) -> None:
        """Writes, several statements and SELECT INTO are refused with the reason."""
        refused = sqlsource.check_read_only(query)
        assert refused is not None
        assert why in refused

    def test_sql_check_refuses_a_write_at_validation(self) -> None:
        """`sql.check` with a write is an argument error (validate reports it with a line)."""
        with pytest.raises(ValueError, match="refused"):
            sql_action.SqlCheckArgs.model_validate({"query": "DELETE FROM t", "expect": "rows"})

    def test_rows_to_series(self) -> None:
        """The `value` column is the value; text columns become labels; NULLs are skipped."""
        series = sqlsource.rows_to_series(
            ["region", "value", "n"], [("eu", 0.8, 3), ("us", None, 1), ("ap", 0.2, 5)]
        )
        assert [(dict(s.labels), s.value) for s in series] == [
            ({"region": "eu"}, 0.8),
            ({"region": "ap"}, 0.2),
        ]
