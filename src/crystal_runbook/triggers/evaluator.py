"""One evaluation of a service's rules, and the report it produces.

``Evaluator`` owns the sources a bound rule set reads and each rule's ``RuleState``. An
evaluation refreshes the sources once (the scrape source scrapes here), asks every rule's
query (Prometheus queries in parallel on a few threads: 50 rules cost one round trip's time,
not fifty), steps each rule's state and returns a ``Report``: the value `watch --once`,
`health` and `metrics.check` all print or judge.

A rule whose source fails shows the failure and the others carry on: one bad PromQL
expression or one unreachable database never hides the other rules.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from crystal_runbook import errors
from crystal_runbook.engine.secrets import Redactor
from crystal_runbook.triggers import model, promql, rules, scrape
from crystal_runbook.triggers.loader import Bound, BoundRule
from crystal_runbook.triggers.promql import Series
from crystal_runbook.triggers.sources import (
    QueryRejected,
    Source,
    SourceKind,
    SourceUnavailable,
    open_source,
)

PARALLEL_QUERIES = 4
"""Threads asking Prometheus at once; enough to hide round trips, polite to the server."""
EVIDENCE_POINTS = 120
"""Values of a rule's history carried as evidence (the incident document's chart)."""
SEED_POINTS = 1000
"""At most this many steps in the start-up query_range of one rule."""


def iso(at: float | None) -> str | None:
    """Seconds since the epoch as ISO 8601 UTC (milliseconds), None stays None."""
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _finite(value: float | None) -> float | None:
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return value


@dataclass(frozen=True)
class RuleReport:
    """One rule after one evaluation."""

    name: str
    state: model.State
    value: float | None
    threshold: float
    since: float | None
    op: str
    kind: str
    source: str
    action: str
    severity: str
    for_seconds: float
    active_at: float | None
    message: str
    query: str
    where: str
    series: tuple[Series, ...] = ()
    history: tuple[tuple[float, float], ...] = ()
    description: str = ""

    @property
    def condition(self) -> str:
        what = "slope/s" if self.kind == "trend" else "value"
        return f"{what} {self.op} {self.threshold:g}" + (
            f" for {self.for_seconds:g}s" if self.for_seconds else ""
        )

    def as_json(self) -> dict[str, Any]:
        """The contract's fields first (design.md section 4), then detail."""
        return {
            "name": self.name,
            "state": self.state,
            "value": _finite(self.value),
            "threshold": self.threshold,
            "since": iso(self.since),
            "op": self.op,
            "for_seconds": self.for_seconds,
            "pending_since": iso(self.active_at),
            "kind": self.kind,
            "source": self.source,
            "action": self.action,
            "severity": self.severity,
            "message": self.message,
        }

    def evidence(self) -> dict[str, Any]:
        """What the journal and the incident document keep about this rule."""
        return {
            **self.as_json(),
            "description": self.description,
            "query": self.query,
            "defined_at": self.where,
            "series": [
                {"labels": dict(s.labels), "value": _finite(s.value)} for s in self.series[:20]
            ],
            "history": [[iso(t), _finite(v)] for t, v in list(self.history)[-EVIDENCE_POINTS:]],
        }


@dataclass(frozen=True)
class Report:
    """Every rule of a service after one evaluation."""

    service: str
    env: str
    at: float
    rules: tuple[RuleReport, ...]
    duration: float = 0.0

    @property
    def firing(self) -> list[RuleReport]:
        return [r for r in self.rules if r.state == "firing"]

    @property
    def missing(self) -> list[RuleReport]:
        return [r for r in self.rules if r.state in ("no_data", "error")]

    @property
    def healthy(self) -> bool:
        """Nothing firing, and every rule could be evaluated (missing data is not healthy)."""
        return not self.firing and not self.missing

    def rule(self, name: str) -> RuleReport:
        return next(r for r in self.rules if r.name == name)

    def summary(self) -> str:
        if self.healthy:
            pending = [r.name for r in self.rules if r.state == "pending"]
            tail = f" (pending: {', '.join(pending)})" if pending else ""
            return f"all clear: {len(self.rules)} rule(s){tail}"
        parts = []
        if self.firing:
            parts.append("firing: " + ", ".join(r.name for r in self.firing))
        if self.missing:
            parts.append(
                "no data or error: " + ", ".join(f"{r.name} ({r.state})" for r in self.missing)
            )
        return "; ".join(parts)

    def as_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "env": self.env,
            "healthy": self.healthy,
            "rules": [r.as_json() for r in self.rules],
            "evaluated_at": iso(self.at),
            "duration_ms": round(self.duration * 1000, 1),
            "firing": [r.name for r in self.firing],
            "summary": self.summary(),
        }


@dataclass
class Evaluator:
    """Evaluates one bound rule set again and again, keeping each rule's state."""

    bound: Bound
    redactor: Redactor = field(default_factory=Redactor)
    clock: Callable[[], float] = time.time
    sources: dict[SourceKind, Source] = field(default_factory=dict)
    states: dict[str, rules.RuleState] = field(default_factory=dict)
    _pool: ThreadPoolExecutor | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        for bound in self.bound.rules:
            self.states.setdefault(bound.name, rules.RuleState())

    # -- sources ------------------------------------------------------------------------------

    def source(self, kind: SourceKind) -> Source:
        """The open source of ``kind`` (opened on first use)."""
        with self._lock:
            found = self.sources.get(kind)
            if found is None:
                found = open_source(
                    self.bound.specs[kind],
                    redactor=self.redactor,
                    needs_history=self.needs_history(kind),
                )
                self.sources[kind] = found
            return found

    def needs_history(self, kind: SourceKind) -> bool:
        """Whether a query read from ``kind`` uses a range (``rate(x[1m])``)."""
        for bound in self.bound.rules:
            if bound.source != kind:
                continue
            for text in (bound.rule.query, bound.rule.denominator):
                if text is None:
                    continue
                try:
                    if promql.longest_range(promql.parse(text)) > 0:
                        return True
                except promql.PromQLError:
                    continue
        return False

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for source in self.sources.values():
            source.close()
        self.sources.clear()

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- history at start ---------------------------------------------------------------------

    def seed(self, now: float, step: float) -> list[str]:
        """Fill windows from sources that have a past (Prometheus' query_range).

        Returns the names of rules whose state was seeded. Failures are ignored here: the
        first evaluation reports them.
        """
        seeded = []
        for bound in self.bound.rules:
            rule = bound.rule
            span = (rule.window or 0.0) if rule.kind == "trend" else rule.for_
            if span <= 0 or bound.source != "prometheus":
                continue
            try:
                if self._seed_rule(bound, now, span, max(step, span / SEED_POINTS)):
                    seeded.append(bound.name)
            except errors.CrystalError:
                continue
        return seeded

    def _seed_rule(self, bound: BoundRule, now: float, span: float, step: float) -> bool:
        rule = bound.rule
        src = self.source(bound.source)
        points = src.query_range(rule.query, now - span, now, step)
        if rule.kind == "ratio" and rule.denominator is not None:
            below = dict(src.query_range(rule.denominator, now - span, now, step))
            points = [(t, rules.divide(s, below.get(t, []))) for t, s in points]
        state = self.states[bound.name]
        if rule.kind == "trend":
            for t, series in points:
                top = rules.worst(">", rule.threshold, series)
                if top is not None:
                    state.raw.append((t, top.value))
            return bool(points)
        run_start: float | None = None
        previous: float | None = None
        for t, series in reversed(points):
            top = rules.worst(rule.op, rule.threshold, series)
            if top is None or not rules.holds(rule.op, top.value, rule.threshold):
                break
            if previous is not None and previous - t > 1.5 * step:
                break  # a gap: the condition was not seen at every evaluation
            run_start, previous = t, t
            state.history.appendleft((t, top.value))
        if run_start is None or (points and now - points[-1][0] > 2 * step):
            return False
        state.active_at = run_start
        return True

    # -- one evaluation -----------------------------------------------------------------------

    def evaluate(self, at: float | None = None) -> Report:
        """Refresh the sources, evaluate every rule at ``at`` (default: now), step states."""
        started = time.monotonic()
        at = self.clock() if at is None else at
        kinds = {b.source for b in self.bound.rules}
        for kind in kinds:
            try:
                self.source(kind).refresh(at)
            except errors.CrystalError:
                continue  # each rule then reports its source's state
        query_at = max(at, self.clock())  # samples scraped just now must be visible
        observations = self._observe_all(query_at)
        reports = []
        for bound in self.bound.rules:
            state = self.states[bound.name]
            obs = observations[bound.name]
            if bound.rule.kind == "trend" and obs.kind == "value" and obs.series:
                obs = rules.observe_trend(bound.rule, state, at, obs.series)
            rules.step(bound.rule, state, obs, at)
            reports.append(self._report(bound, state, obs))
        return Report(
            self.bound.service,
            self.bound.env,
            at,
            tuple(reports),
            duration=time.monotonic() - started,
        )

    def _observe_all(self, at: float) -> dict[str, rules.Observation]:
        parallel = [b for b in self.bound.rules if b.source == "prometheus"]
        serial = [b for b in self.bound.rules if b.source != "prometheus"]
        out: dict[str, rules.Observation] = {}
        if len(parallel) > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=PARALLEL_QUERIES, thread_name_prefix="rules"
                )
            for bound, obs in zip(
                parallel, self._pool.map(lambda b: self.observe(b, at), parallel), strict=True
            ):
                out[bound.name] = obs
        else:
            serial = parallel + serial
        for bound in serial:
            out[bound.name] = self.observe(bound, at)
        return out

    def observe(self, bound: BoundRule, at: float) -> rules.Observation:
        """Ask the rule's source; turn the answer (or failure) into an observation."""
        rule = bound.rule
        params: Mapping[str, Any] | None = None
        if bound.source == "sql":
            params = {"service": self.bound.service, "env": self.bound.env, **rule.params}
        try:
            src = self.source(bound.source)
            series = src.query(rule.query, at, params)
            if rule.kind == "ratio" and rule.denominator is not None:
                below = src.query(rule.denominator, at, params)
                if not series or not below:
                    return rules.Observation(
                        "missing",
                        message="the "
                        + ("query" if not series else "denominator")
                        + " returned no data",
                    )
                series = rules.divide(series, below)
        except SourceUnavailable as exc:
            return rules.Observation("unavailable", message=f"no data: {exc.message}")
        except (QueryRejected, errors.CrystalError) as exc:
            return rules.Observation("rejected", message=exc.message)
        if rule.kind == "trend":
            if not series:
                return rules.Observation("missing", message="the query returned no data")
            return rules.Observation("value", series=tuple(series))
        top = rules.worst(rule.op, rule.threshold, series)
        if top is None:
            why = "returned only NaN (no requests?)" if series else "returned no data"
            return rules.Observation("missing", message=f"the query {why}")
        return rules.Observation(
            "value",
            top.value,
            tuple(series),
            condition=rules.holds(rule.op, top.value, rule.threshold),
        )

    def _report(
        self, bound: BoundRule, state: rules.RuleState, obs: rules.Observation
    ) -> RuleReport:
        rule = bound.rule
        return RuleReport(
            name=rule.name,
            state=state.state,
            value=state.value,
            threshold=rule.threshold,
            since=state.since,
            op=rule.op,
            kind=rule.kind,
            source=bound.source,
            action=rule.action,
            severity=rule.severity,
            for_seconds=rule.for_,
            active_at=state.active_at,
            message=self.redactor.text(state.message),
            query=rule.query,
            where=bound.where,
            series=obs.series,
            history=tuple(state.history),
            description=rule.description,
        )

    # -- recent samples, kept between processes -----------------------------------------------

    def _scrape_selectors(self) -> list[promql.Selector]:
        found: list[promql.Selector] = []
        for bound in self.bound.rules:
            if bound.source != "scrape":
                continue
            for text in (bound.rule.query, bound.rule.denominator):
                if text is None:
                    continue
                try:
                    found.extend(promql.selectors(promql.parse(text)))
                except promql.PromQLError:
                    continue
        return found

    def dump_samples(self) -> dict[str, Any]:
        """The scrape source's latest samples that the rules read (``store.save_samples``)."""
        source = self.sources.get("scrape")
        if not isinstance(source, scrape.ScrapeSource):
            return {}
        return scrape.dump_latest(source.ring, source.targets, self._scrape_selectors())

    def load_samples(self, saved: Mapping[str, Any], *, now: float) -> int:
        """Take back another process's recent samples (``dump_samples``), so that ``rate()``
        has its earlier sample without waiting for a second scrape. Only samples younger than
        the shortest ``[range]`` of the rules, less one gap, can serve: an older one would lie
        outside the range. Returns how many targets were taken back."""
        ranges = [s.range for s in self._scrape_selectors() if s.range]
        if not ranges or "scrape" not in self.bound.specs:
            return 0
        source = self.source("scrape")
        if not isinstance(source, scrape.ScrapeSource):
            return 0
        max_age = min(ranges) - scrape.MIN_GAP
        return scrape.load_latest(source.ring, source.targets, saved, now=now, max_age=max_age)

    # -- persisted state ----------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        """Rule states as JSON-able data (``store`` writes it)."""
        out: dict[str, Any] = {}
        for bound in self.bound.rules:
            s = self.states[bound.name]
            out[bound.name] = {
                "digest": bound.digest(),
                "state": s.state,
                "since": s.since,
                "active_at": s.active_at,
                "value": _finite(s.value),
                "last_eval": s.last_eval,
                "history": [list(p) for p in list(s.history)[-EVIDENCE_POINTS:]],
                "raw": [list(p) for p in s.raw],
            }
        return out

    def restore(self, data: Mapping[str, Any], *, now: float, max_age: float) -> list[str]:
        """Take back rule states evaluated within ``max_age`` seconds, for unchanged rules."""
        restored = []
        for bound in self.bound.rules:
            saved = data.get(bound.name)
            if not isinstance(saved, Mapping) or saved.get("digest") != bound.digest():
                continue
            last = saved.get("last_eval")
            if not isinstance(last, int | float) or now - last > max_age or last > now + 1:
                continue
            state = self.states[bound.name]
            state.state = saved.get("state", "inactive")
            state.since = saved.get("since")
            state.active_at = saved.get("active_at")
            state.value = saved.get("value")
            state.last_eval = last
            state.history = deque(_points(saved.get("history")), maxlen=rules.HISTORY_POINTS)
            state.raw = deque(_points(saved.get("raw")), maxlen=rules.HISTORY_POINTS)
            restored.append(bound.name)
        return restored


def _points(value: object) -> Iterable[tuple[float, float]]:
    if not isinstance(value, list):
        return []
    return [
        (float(p[0]), float(p[1]))
        for p in value
        if isinstance(p, list) and len(p) == 2 and all(isinstance(x, int | float) for x in p)
    ]
