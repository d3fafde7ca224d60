"""The recent past of a service's trigger rules, for the incident document of a manual rollback.

A rollback started by hand carries no trigger evidence: without this, its document knew only
the verification's polls after the rollback and said "user impact: none" while `health` had
shown 12 % errors a minute before. ``recent`` reads what the metrics source remembers from a
moment (the release) to now, one series per rule, each point the rule's worst value:

- Prometheus: ``query_range`` over the whole span (a ratio rule divides its two ranges);
- the scrape source has no past of its own: it reads the samples `watch` and `health` kept
  for the service in ``<state dir>/triggers/<service>.<env>.json`` (``store``);
- SQL: nothing (no portable way to ask a query about the past);
- trend rules: nothing (their value is a slope judged over a whole window, not a level).

Nothing here raises for a source that cannot answer: that rule simply has no points, and the
document then says "no data".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crystal_runbook import errors
from crystal_runbook.engine.secrets import Redactor
from crystal_runbook.triggers import rules, store
from crystal_runbook.triggers.loader import Bound, BoundRule
from crystal_runbook.triggers.sources import open_source

MAX_POINTS = 240
"""Points per rule at most (a query_range step is chosen to stay under it)."""
MIN_STEP = 5.0
"""Seconds between points at least (Prometheus' own scrape interval is rarely shorter)."""


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def recent(
    bound: Bound, *, state_dir: Path, since: float, until: float, redactor: Redactor | None = None
) -> dict[str, dict[str, Any]]:
    """``{rule: {"op", "threshold", "kind", "source", "points": [[iso, value], ...]}}`` from
    ``since`` to ``until`` (seconds since the epoch), oldest point first."""
    redactor = redactor or Redactor()
    saved = store.load(store.path_for(state_dir, bound.service, bound.env)).get("rules")
    kept = saved if isinstance(saved, Mapping) else {}
    step = max(MIN_STEP, (until - since) / MAX_POINTS)
    out: dict[str, dict[str, Any]] = {}
    sources: dict[str, Any] = {}
    try:
        for rule in bound.rules:
            if rule.rule.kind == "trend":
                # a trend's value is a slope judged over a whole window: single values of it
                # (or of its raw query) would read as thresholds crossed when nothing was
                points: list[tuple[float, float]] = []
            elif rule.source == "prometheus":
                points = _from_prometheus(
                    rule, bound, sources, redactor=redactor, since=since, until=until, step=step
                )
            elif rule.source == "scrape":
                points = _from_store(kept.get(rule.name), rule, since, until)
            else:
                points = []
            out[rule.name] = {
                "op": rule.rule.op,
                "threshold": rule.rule.threshold,
                "kind": rule.rule.kind,
                "source": rule.source,
                "points": [[iso(t), v] for t, v in points],
            }
    finally:
        for source in sources.values():
            source.close()
    return out


def _from_prometheus(
    bound_rule: BoundRule,
    bound: Bound,
    sources: dict[str, Any],
    *,
    redactor: Redactor,
    since: float,
    until: float,
    step: float,
) -> list[tuple[float, float]]:
    rule = bound_rule.rule
    spec = bound.specs.get("prometheus")
    if spec is None:
        return []
    try:
        source = sources.get("prometheus") or open_source(spec, redactor=redactor)
        sources["prometheus"] = source
        ranged = source.query_range(rule.query, since, until, step)
        if rule.kind == "ratio" and rule.denominator is not None:
            below = dict(source.query_range(rule.denominator, since, until, step))
            ranged = [(t, rules.divide(s, below.get(t, []))) for t, s in ranged]
    except errors.CrystalError:
        return []
    points = []
    for t, series in ranged:
        top = rules.worst(rule.op, rule.threshold, series)
        if top is not None and math.isfinite(top.value):
            points.append((t, top.value))
    return points


def _from_store(
    saved: Any, bound_rule: BoundRule, since: float, until: float
) -> list[tuple[float, float]]:
    if not isinstance(saved, Mapping) or saved.get("digest") != bound_rule.digest():
        return []
    points = []
    for item in saved.get("history") or []:
        if not (isinstance(item, list | tuple) and len(item) == 2):
            continue
        t, v = item
        number = isinstance(v, int | float) and not isinstance(v, bool)
        if number and isinstance(t, int | float) and since <= t <= until and math.isfinite(v):
            points.append((float(t), float(v)))
    return sorted(points)
