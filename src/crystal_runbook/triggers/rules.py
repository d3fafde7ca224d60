"""Rule state: Prometheus' alerting-rule state machine, plus "no data" and "error".

Each evaluation turns a rule's query result into an ``Observation`` and steps its state:

- the condition holds: inactive → pending (``active_at`` = now); pending → firing once
  ``now - active_at >= for`` (``for: 0`` fires at once); firing stays firing;
- the condition does not hold: → inactive (as Prometheus resolves an alert);
- no series came back (or NaN): → ``no_data``, and the pending window starts over, as
  Prometheus drops an alert whose series vanished; with ``on_missing: fire`` a missing value
  counts as the condition holding instead. Missing data is never reported as healthy;
- the source failed or refused the query: → ``error`` (refused) or ``no_data``
  (unreachable), with the reason; ``active_at`` is kept, as Prometheus keeps an alert's state
  when a rule evaluation fails, so one dropped request does not restart a 5-minute window.

Several series (one per pod) are reduced to the worst one for the comparison (the largest
for ``>``, the smallest for ``<``): a rule speaks for the service. A trend rule's value is
the least-squares slope per second of the query's values over ``window``; it holds when that
slope passes the threshold and at least ``min_rising`` of successive deltas are positive.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from crystal_runbook.triggers import model
from crystal_runbook.triggers.promql import NAME, Labels, Series

HISTORY_POINTS = 720
"""Values kept per rule (trend windows and the incident document's chart)."""
TREND_MIN_POINTS = 5
"""A trend needs at least this many values in its window before it can hold."""
TREND_MIN_COVER = 0.5
"""... and values spanning at least this share of the window."""


def holds(op: model.Op, value: float, threshold: float) -> bool:
    """``value op threshold``."""
    if op == ">":
        return value > threshold
    if op == ">=":
        return value >= threshold
    if op == "<":
        return value < threshold
    if op == "<=":
        return value <= threshold
    if op == "==":
        return value == threshold
    return value != threshold


def worst(op: model.Op, threshold: float, series: Sequence[Series]) -> Series | None:
    """The series that matters most for ``op`` (NaN values ignored); None if none is left."""
    usable = [s for s in series if not math.isnan(s.value)]
    if not usable:
        return None
    if op in (">", ">="):
        return max(usable, key=lambda s: s.value)
    if op in ("<", "<="):
        return min(usable, key=lambda s: s.value)
    return next((s for s in usable if holds(op, s.value, threshold)), usable[0])


def divide(numerator: Sequence[Series], denominator: Sequence[Series]) -> list[Series]:
    """``numerator / denominator``, matched on labels (one series each side: no matching)."""

    def key(labels: Labels) -> Labels:
        return tuple(p for p in labels if p[0] != NAME)

    if len(numerator) == 1 and len(denominator) == 1:
        pairs = [(numerator[0], denominator[0])]
    else:
        below = {key(s.labels): s for s in denominator}
        pairs = [(s, below[key(s.labels)]) for s in numerator if key(s.labels) in below]
    return [
        Series(key(top.labels), top.value / bottom.value)
        for top, bottom in pairs
        if bottom.value != 0 and not math.isnan(bottom.value)
    ]


@dataclass(frozen=True)
class Trend:
    """The shape of a rule's values over its window."""

    slope: float
    """Least-squares slope, per second."""
    rising: float
    """Share of successive deltas that are positive (0 to 1)."""
    points: int
    span: float
    """Seconds from the first to the last value."""


def trend(points: Sequence[tuple[float, float]]) -> Trend | None:
    """Slope and rising share of ``points`` (time, value); None for fewer than two."""
    if len(points) < 2:
        return None
    n = len(points)
    t0 = points[0][0]
    xs = [t - t0 for t, _ in points]
    ys = [v for _, v in points]
    mean_x = math.fsum(xs) / n
    mean_y = math.fsum(ys) / n
    sxx = math.fsum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        return None
    sxy = math.fsum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    deltas = [b - a for a, b in itertools.pairwise(ys)]
    rising = sum(1 for d in deltas if d > 0) / len(deltas)
    return Trend(slope=sxy / sxx, rising=rising, points=n, span=xs[-1])


ObservationKind = Literal["value", "missing", "unavailable", "rejected"]


@dataclass(frozen=True)
class Observation:
    """What one evaluation saw for one rule."""

    kind: ObservationKind
    value: float | None = None
    series: tuple[Series, ...] = ()
    message: str = ""
    condition: bool | None = None
    """Whether the rule's condition held (None: could not tell)."""
    trend: Trend | None = None


@dataclass
class RuleState:
    """Where one rule is, and what it has seen."""

    state: model.State = "inactive"
    since: float | None = None
    """When the rule entered ``state``."""
    active_at: float | None = None
    """When the condition started holding without interruption (Prometheus' activeAt)."""
    value: float | None = None
    message: str = ""
    last_eval: float | None = None
    history: deque[tuple[float, float]] = field(
        default_factory=lambda: deque(maxlen=HISTORY_POINTS)
    )
    """(time, value) of past evaluations: a trend's window, the incident chart."""
    raw: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=HISTORY_POINTS))
    """Trend rules: (time, query value) the slope is computed from."""

    def enter(self, state: model.State, at: float) -> None:
        if state != self.state or self.since is None:
            self.state = state
            self.since = at


def observe_trend(
    rule: model.Rule, state: RuleState, at: float, series: Sequence[Series]
) -> Observation:
    """Add the query's current value to a trend rule's window and judge the window."""
    current = worst(">", rule.threshold, series)
    if current is None:
        return Observation("missing", message="the query returned no value")
    window = rule.window or 0.0
    state.raw.append((at, current.value))
    while state.raw and state.raw[0][0] < at - window:
        state.raw.popleft()
    shape = trend(list(state.raw))
    if shape is None:
        return Observation(
            "value", None, (current,), "collecting values for the trend", condition=False
        )
    enough = shape.points >= TREND_MIN_POINTS and shape.span >= TREND_MIN_COVER * window
    held = (
        enough and shape.rising >= rule.min_rising and holds(rule.op, shape.slope, rule.threshold)
    )
    note = (
        f"slope {shape.slope:.4g}/s, {shape.rising:.0%} of deltas rising over "
        f"{shape.span:.0f}s ({shape.points} values)"
    )
    if not enough:
        note += (
            f"; collecting (needs {TREND_MIN_POINTS} values over {window * TREND_MIN_COVER:.0f}s)"
        )
    return Observation("value", shape.slope, (current,), note, condition=held, trend=shape)


def step(rule: model.Rule, state: RuleState, obs: Observation, at: float) -> RuleState:
    """Advance ``state`` by one evaluation at ``at`` (mutates and returns it)."""
    state.last_eval = at
    state.message = obs.message
    condition = obs.condition
    if obs.kind == "missing" and rule.on_missing == "fire":
        condition = True
        state.message = obs.message or "no data (on_missing: fire)"
    if obs.kind in ("unavailable", "rejected"):
        state.value = None
        state.enter("error" if obs.kind == "rejected" else "no_data", at)
        return state
    if obs.kind == "missing" and condition is None:
        state.value = None
        state.active_at = None
        state.enter("no_data", at)
        return state
    state.value = obs.value
    if obs.value is not None:
        state.history.append((at, obs.value))
    if not condition:
        state.active_at = None
        state.enter("inactive", at)
        return state
    if state.active_at is None:
        state.active_at = at
    if at - state.active_at >= rule.for_ - 1e-6:
        state.enter("firing", at)
    else:
        state.enter("pending", at)
    return state
