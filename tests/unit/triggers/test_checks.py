"""`metrics.check` and `sql.check` in runbooks: verification that waits for recovery."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest

from crystal_runbook import errors, service
from crystal_runbook.actions import sql as sql_action
from crystal_runbook.engine import journal
from crystal_runbook.triggers import scrape, sqlsource
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


ERRORS_THEN_LATENCY = """
apiVersion: crystal-runbook/v1
kind: Runbook
name: verify
params:
  service: {type: string, required: true}
steps:
  - id: rollout
    uses: fake.set
    with: {key: release, value: good}
  - id: errors-ceased
    uses: metrics.check
    with:
      query: 'sum(rate(http_request_errors_total[1m])) / sum(rate(http_requests_total[1m]))'
      op: ">"
      threshold: 0.05
    timeout: 10s
  - id: performance-restored
    uses: metrics.check
    with:
      query: 'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[1m])))'
      op: ">"
      threshold: 2
    timeout: 10s
"""


def gaps(times: list[float]) -> list[float]:
    """Seconds between successive scrapes."""
    return [b - a for a, b in itertools.pairwise(times)]


def took(step: journal.StepRecord) -> float:
    assert step.started_at is not None
    assert step.ended_at is not None
    return (journal.parse_iso(step.ended_at) - journal.parse_iso(step.started_at)).total_seconds()


def workspace_with(root: Path, url: str, runbook: str) -> service.Workspace:
    ws = make_workspace(root, url)
    (root / "runbooks" / "verify.yaml").write_text(runbook.lstrip())
    return ws


class TestMetricsCheck:
    """Holds when the rule is clear; waits while it is not; never passes without data."""

    def test_waits_for_recovery(self, tmp_path: Path, metrics: MetricsServer) -> None:
        """Coherence is low when the step starts; it passes once the service recovers."""
        metrics.service.set(coherence=0.3)
        seen: list[bool] = []

        def recover_once_seen() -> None:
            # Recover only after the check's first scrape was served (it rendered 0.3), however
            # slow a loaded machine is: a condition, not a timer. The bound is only a safety net.
            seen.append(metrics.service.wait_for_hits(1, timeout=120))
            metrics.service.set(coherence=0.8)

        timer = threading.Thread(target=recover_once_seen)
        timer.start()
        # Generous step timeouts: the steps pass as soon as the service has recovered, so these
        # only bound a loaded machine, never slow a quiet one.
        ws = workspace_with(tmp_path, metrics.url, VERIFY.replace("timeout: 10s", "timeout: 120s"))
        try:
            result = service.runs.run(ws, "verify", {"service": "maia"})
        finally:
            timer.join()
            ws.close()
        assert seen == [True], "the check never scraped /metrics"
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


class TestSharedSamples:
    """The metrics checks of one run share their samples: one `rate()` gap per change, not one
    per check, and never a sample from before the run's latest change."""

    def test_two_checks_make_one_sample_gap(self, tmp_path: Path, metrics: MetricsServer) -> None:
        """Errors ceased waits for the two samples rate() needs; performance restored reuses
        them and takes no gap of its own."""
        ws = workspace_with(tmp_path, metrics.url, ERRORS_THEN_LATENCY)
        try:
            result = service.runs.run(ws, "verify", {"service": "maia"})
        finally:
            ws.close()
        assert result.run.status == "ok", result.run.error
        _, errors_ceased, performance = result.run.steps
        assert errors_ceased.outputs["state"] == "inactive"
        assert performance.outputs["state"] == "inactive"
        long_gaps = [g for g in gaps(metrics.service.hit_times) if g >= 0.9 * scrape.MIN_GAP]
        assert len(long_gaps) == 1, gaps(metrics.service.hit_times)
        assert took(errors_ceased) >= scrape.MIN_GAP
        assert took(performance) < 0.9 * scrape.MIN_GAP

    def test_a_change_between_checks_needs_a_new_gap(
        self, tmp_path: Path, metrics: MetricsServer
    ) -> None:
        """Samples taken before a step that may change the world are dropped: the check after
        it waits for two samples of its own."""
        runbook = ERRORS_THEN_LATENCY.replace(
            "  - id: performance-restored\n",
            "  - id: second-change\n    uses: fake.set\n    with: {key: mode, value: legacy}\n"
            "  - id: performance-restored\n",
        )
        ws = workspace_with(tmp_path, metrics.url, runbook)
        try:
            result = service.runs.run(ws, "verify", {"service": "maia"})
        finally:
            ws.close()
        assert result.run.status == "ok", result.run.error
        second_change = result.run.steps[2]
        performance = result.run.steps[3]
        assert second_change.ended_at is not None
        changed_at = journal.parse_iso(second_change.ended_at).timestamp()
        after = [t for t in metrics.service.hit_times if t >= changed_at]
        assert len(after) >= 2
        assert after[-1] - after[0] >= scrape.MIN_GAP
        assert took(performance) >= scrape.MIN_GAP

    def test_ring_forgets_samples_before_a_time(self) -> None:
        """`forget_before` drops older scrapes; `span_ok` measures what is left."""
        ring = scrape.Ring()
        for at in (10.0, 11.0, 12.5):
            ring.add("t", scrape.Scrape(at=at, samples={(("__name__", "x"),): 1.0}))
        ring.add("t", scrape.Scrape(at=13.0, error="down"))
        assert ring.span_ok("t") == 2.5
        ring.forget_before(11.0)
        assert ring.count_ok("t") == 2
        assert ring.span_ok("t") == 1.5
        ring.forget_before(12.6)
        assert ring.span_ok("t") == 0.0


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
