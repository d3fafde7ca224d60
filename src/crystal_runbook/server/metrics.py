"""`GET /metrics`: what this replica did and sees, in Prometheus' exposition format.

Why prometheus-client: it is the reference implementation of the format (text and
OpenMetrics, content negotiation, gzip); the scrape source of the triggers already parses
with it. One ``CollectorRegistry`` per `serve` (no process-wide default registry, no
module-level state). Imported only by `serve`.

Metrics (all prefixed ``crystal_runbook_``):

- ``runs_total{runbook,status}``: runs this replica finished (ok, failed, interrupted,
  refused), from each run's journal record when its final event arrives;
- ``step_duration_seconds{uses,status}``: steps of those runs that this replica ran;
- ``rollback_duration_seconds{env,status}``: rollback runs from start to end (the source
  checklist's target: under five minutes);
- ``trigger_rule_state{service,env,rule,trigger_rule_state}`` (an enum: 1 for the current
  state) and ``trigger_rule_value{service,env,rule}``: the last evaluation of each watched rule;
- ``outbox_depth``: notifications waiting in the outbox (read at scrape time);
- ``lease_holder{lease,duty,holder}`` (1 for the holder as last seen) and
  ``lease_leader{lease,duty}`` (1 when this replica leads): the elections;
- ``slack_ack_seconds``: from a Slack request's arrival at `/slack/events` to its
  acknowledgement (HTTP mode; Socket Mode acknowledges over its WebSocket, not measured).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from crystal_runbook import errors
from crystal_runbook.engine import journal as journal_mod
from crystal_runbook.engine.events import Event

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

    from crystal_runbook.service.leader import Leadership
    from crystal_runbook.triggers.evaluator import Report

log = logging.getLogger("crystal_runbook.serve")

FINAL = frozenset({"ok", "failed", "interrupted", "refused"})
STARTED = frozenset({"running", "resumed"})
RULE_STATES = ["inactive", "pending", "firing", "no_data", "error"]
STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
ROLLBACK_BUCKETS = (5.0, 10.0, 20.0, 30.0, 60.0, 90.0, 120.0, 180.0, 240.0, 300.0, 600.0, 1200.0)
ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)
"""Slack gives up on an acknowledgement after 3 s."""


class Metrics:
    """The registry of one `serve` and the observers that feed it."""

    def __init__(
        self,
        *,
        read_run: Callable[[str], journal_mod.RunRecord],
        outbox_depth: Callable[[], int],
        leaderships: Callable[[], Iterable[Leadership]],
    ) -> None:
        from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram

        self.read_run = read_run
        self.registry = CollectorRegistry(auto_describe=True)
        self.runs = Counter(
            "crystal_runbook_runs",
            "Runs this replica finished, by runbook and final status.",
            ["runbook", "status"],
            registry=self.registry,
        )
        self.step_seconds = Histogram(
            "crystal_runbook_step_duration_seconds",
            "Duration of the steps this replica ran (check, apply, verify), by action.",
            ["uses", "status"],
            buckets=STEP_BUCKETS,
            registry=self.registry,
        )
        self.rollback_seconds = Histogram(
            "crystal_runbook_rollback_duration_seconds",
            "Rollback runs from their start to their end, by environment and status.",
            ["env", "status"],
            buckets=ROLLBACK_BUCKETS,
            registry=self.registry,
        )
        self.rule_state = Enum(
            "crystal_runbook_trigger_rule_state",
            "State of each watched rollback trigger rule at its last evaluation.",
            ["service", "env", "rule"],
            states=RULE_STATES,
            registry=self.registry,
        )
        self.rule_value = Gauge(
            "crystal_runbook_trigger_rule_value",
            "Value of each watched rollback trigger rule at its last evaluation.",
            ["service", "env", "rule"],
            registry=self.registry,
        )
        self.ack_seconds = Histogram(
            "crystal_runbook_slack_ack_seconds",
            "From a Slack request's arrival to its acknowledgement (HTTP mode).",
            buckets=ACK_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_Live(outbox_depth, leaderships))
        self._started: dict[str, datetime] = {}
        self._lock = threading.Lock()

    # -- observers -----------------------------------------------------------------------------

    def sink(self, event: Event) -> None:
        """An event sink for every run's events (``Workspace.observers``)."""
        if event.kind != "run":
            return
        if event.status in STARTED:
            with self._lock:
                self._started[event.run_id] = journal_mod.parse_iso(event.at)
            return
        if event.status not in FINAL:
            return
        with self._lock:
            since = self._started.pop(event.run_id, None)
        try:
            run = self.read_run(event.run_id)
        except errors.CrystalError as exc:
            log.warning("metrics: cannot read run %s: %s", event.run_id, exc.message)
            return
        self.observe_run(run, since=since)

    def observe_run(self, run: journal_mod.RunRecord, *, since: datetime | None = None) -> None:
        """Count a finished run; its steps that ended after ``since`` (this replica's part)."""
        self.runs.labels(run.runbook, run.status).inc()
        for step in run.steps:
            if not (step.started_at and step.ended_at):
                continue
            start = journal_mod.parse_iso(step.started_at)
            end = journal_mod.parse_iso(step.ended_at)
            if since is not None and end < since:
                continue  # finished by the process this run was resumed from
            self.step_seconds.labels(step.uses, step.status).observe(
                max(0.0, (end - start).total_seconds())
            )
        if run.runbook == "rollback" and not run.drill and run.ended_at:
            seconds = (
                journal_mod.parse_iso(run.ended_at) - journal_mod.parse_iso(run.started_at)
            ).total_seconds()
            self.rollback_seconds.labels(run.env, run.status).observe(max(0.0, seconds))

    def observe_rules(self, report: Report) -> None:
        """The states and values of one evaluation of a watched service's rules."""
        for rule in report.rules:
            labels = (report.service, report.env, rule.name)
            self.rule_state.labels(*labels).state(rule.state)
            if rule.value is not None:
                self.rule_value.labels(*labels).set(rule.value)

    def observe_ack(self, seconds: float) -> None:
        self.ack_seconds.observe(seconds)

    # -- exposition ----------------------------------------------------------------------------

    def app(self) -> WSGIApplication:
        """``GET /metrics`` (text format, or OpenMetrics when asked; gzip when accepted)."""
        from prometheus_client import make_wsgi_app

        app: WSGIApplication = make_wsgi_app(registry=self.registry)
        return app


class _Live:
    """What is read at scrape time: the outbox's depth and the elections' holders."""

    def __init__(
        self, outbox_depth: Callable[[], int], leaderships: Callable[[], Iterable[Leadership]]
    ) -> None:
        self.outbox_depth = outbox_depth
        self.leaderships = leaderships

    def describe(self) -> list[Any]:
        return []  # collected afresh at every scrape

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        depth = GaugeMetricFamily(
            "crystal_runbook_outbox_depth",
            "Notifications waiting in the outbox (Slack has not taken them yet).",
        )
        depth.add_metric([], float(self.outbox_depth()))
        yield depth
        holders = GaugeMetricFamily(
            "crystal_runbook_lease_holder",
            "Holder of each Lease this replica campaigns for, as last seen (1).",
            labels=["lease", "duty", "holder"],
        )
        leading = GaugeMetricFamily(
            "crystal_runbook_lease_leader",
            "Whether this replica leads the duty of each Lease (1) or follows (0).",
            labels=["lease", "duty"],
        )
        for leadership in self.leaderships():
            lease = leadership.election.name
            if leadership.holder:
                holders.add_metric([lease, leadership.duty_name, leadership.holder], 1.0)
            leading.add_metric([lease, leadership.duty_name], 1.0 if leadership.leading else 0.0)
        yield holders
        yield leading
