"""The PNG chart of the trigger metric across the incident window.

What the reviewer wants to see at a glance: the metric crossing its threshold, when the
rule started to hold and fired, and when the rollback started and ended, with the metric
coming back. The values are the journal's: the trigger's window (`meta.trigger`), or for a
rollback started by hand the history its `incident.write` step read from the metrics source
(drawn from the release to the document), and the verification steps' polls of the same
rule (`metrics.check` evidence). The y axis starts at 0 for metrics that are never negative.

It is drawn with Pillow through ``plot`` (imported only to draw): matplotlib cost 0.7 s of
import alone in the middle of a rollback, Pillow about a tenth of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from crystal_runbook.engine import journal
from crystal_runbook.incident import facts, plot

WIDTH = 1000
"""Pixels; wide enough for a timeline of minutes, narrow enough for a Slack preview."""
HEIGHT = 450
PLOT_BOX = plot.Box(left=80, top=40, right=750, bottom=390)
"""The plot area; the legend goes to its right."""
MIN_PAD = 5.0
"""Seconds of margin left and right of what is drawn, at least."""
TRIGGER_COLOR = "#1f4e79"
VERIFY_COLOR = "#2e7d32"
THRESHOLD_COLOR = "#c00000"
PENDING_COLOR = "#ef6c00"
FIRING_COLOR = "#c00000"
RELEASE_COLOR = "#616161"
ROLLBACK_SHADE = "#e2eee3"
"""The rollback's span: its green at 12 % on white."""


@dataclass(frozen=True)
class Mark:
    """A vertical line at ``at`` (a journal timestamp)."""

    at: str
    label: str
    style: str  # "pending" | "firing" | "release"


@dataclass(frozen=True)
class Spec:
    """Everything drawn: the rule's values, its threshold, the moments and the rollback."""

    rule: str
    op: str
    threshold: float
    points: list[tuple[str, float]]
    marks: list[Mark]
    rollback_start: str
    rollback_end: str | None
    title: str
    window: tuple[str, str] | None = None
    """The span the chart must cover (a manual rollback's: the release to the document)."""
    before_label: str = "trigger window"
    """What the values before the rollback are (the trigger's window, or the history)."""


def spec_for(run: journal.RunRecord, *, rollback_end: str | None) -> Spec | str:
    """What to draw for ``run``, or the sentence saying why there is no chart."""
    evidence = facts.trigger(run)
    rule: dict[str, object] | None = None
    marks: list[Mark] = []
    past = facts.history(run)
    if evidence is not None:
        rule = facts.first(r for r in evidence.get("rules") or [] if isinstance(r, dict))
    else:
        rule = _history_rule(run)
    if rule is None:
        for step in run.steps:
            metrics = step.evidence.get("metrics")
            if isinstance(metrics, dict) and metrics.get("name"):
                rule = metrics
                break
    if rule is None:
        why = (
            "the trigger evidence names no rule"
            if evidence is not None
            else "the run was started by hand, the metrics source had no data from before it, "
            "and no step of it checked a metric"
            if past
            else "the run was started by hand and no step of it checked a metric"
        )
        return f"No chart: there is no metric to draw ({why})."
    name = facts.text(rule.get("name"))
    threshold = facts.finite(rule.get("threshold"))
    values = [(at, v) for at, v in facts.rule_series(run, name) if v is not None]
    if not values or threshold is None:
        return f"No chart: the journal holds no values of rule {name}."
    if evidence is not None:
        if isinstance(rule.get("pending_since"), str):
            marks.append(Mark(str(rule["pending_since"]), "condition first held", "pending"))
        if isinstance(rule.get("since"), str):
            marks.append(Mark(str(rule["since"]), f"{name} firing", "firing"))
    window: tuple[str, str] | None = None
    if evidence is None and past:
        if isinstance(past.get("release_at"), str):
            marks.append(Mark(str(past["release_at"]), "release", "release"))
        if isinstance(past.get("since"), str) and isinstance(past.get("until"), str):
            window = (str(past["since"]), str(past["until"]))
    return Spec(
        rule=name,
        op=facts.text(rule.get("op")) or ">",
        threshold=threshold,
        points=values,
        marks=marks,
        rollback_start=run.started_at,
        rollback_end=rollback_end,
        title=f"{run.service or run.runbook} in {run.env}: {name} (rule {rule.get('op')} "
        f"{threshold:g})",
        window=window,
        before_label="trigger window" if evidence is not None else "before the rollback",
    )


def _history_rule(run: journal.RunRecord) -> dict[str, object] | None:
    """The rule of a manual rollback's history to draw: one that crossed its threshold (a
    rule the run's verification checked first, so the chart shows it before and after),
    else the first with values (None without history)."""
    checked = {
        str(m.get("name"))
        for m in (s.evidence.get("metrics") for s in run.steps)
        if isinstance(m, dict) and m.get("name")
    }
    with_values: list[dict[str, object]] = []
    crossed: list[dict[str, object]] = []
    for name, entry in facts.history_rules(run).items():
        values = [v for _, v in facts.points(entry.get("points")) if v is not None]
        threshold = facts.finite(entry.get("threshold"))
        if not values or threshold is None:
            continue
        op = facts.text(entry.get("op")) or ">"
        found: dict[str, object] = {"name": name, "threshold": threshold, "op": op}
        with_values.append(found)
        if any(facts.holds(op, v, threshold) for v in values):
            crossed.append(found)
    crossed.sort(key=lambda r: r["name"] not in checked)  # stable: file order otherwise
    ordered = [*crossed, *with_values]
    return ordered[0] if ordered else None


def value_range(values: list[float], threshold: float) -> tuple[float, float]:
    """The y axis: the values and the threshold with 5 % margins, never below 0 when no
    value is (a rate or a latency is never negative, so neither is its axis)."""
    bottom, top = min([*values, threshold]), max([*values, threshold])
    margin = (top - bottom) * 0.05 or abs(top) * 0.05 or 1.0
    if bottom >= 0:
        return max(0.0, bottom - margin), top + margin
    return bottom - margin, top + margin


def render(spec: Spec) -> bytes:
    """The PNG (``WIDTH`` x ``HEIGHT`` pixels) of ``spec``."""

    def when(at: str) -> float:
        """Seconds since the epoch of a journal timestamp (the x axis)."""
        return journal.parse_iso(at).timestamp()

    start = when(spec.rollback_start)
    end = when(spec.rollback_end) if spec.rollback_end else None
    points = [(when(at), value) for at, value in spec.points]
    times = [t for t, _ in points]
    moments = [*times, start, *([end] if end else []), *(when(m.at) for m in spec.marks)]
    if spec.window is not None:
        moments += [when(spec.window[0]), when(spec.window[1])]
    low, high = min(moments), max(moments)
    pad = max((high - low) * 0.05, MIN_PAD)
    y_range = value_range([v for _, v in points], spec.threshold)
    canvas = plot.Canvas(WIDTH, HEIGHT, PLOT_BOX, x_range=(low - pad, high + pad), y_range=y_range)
    x_ticks = [t for t in plot.time_ticks(low - pad, high + pad) if low - pad <= t <= high + pad]
    y_ticks = plot.nice_ticks(*y_range)
    if end is not None:
        canvas.span(start, end, ROLLBACK_SHADE)
    canvas.frame(
        x_ticks,
        [plot.clock_label(t) for t in x_ticks],
        y_ticks,
        [plot.number_label(v, y_ticks) for v in y_ticks],
    )
    legend: list[tuple[plot.Style, str]] = []
    # the trigger's window and the verification's polls: no line across the rollout between
    for segment, label, color in (
        ([p for p in points if p[0] < start], spec.before_label, TRIGGER_COLOR),
        ([p for p in points if p[0] >= start], "verification", VERIFY_COLOR),
    ):
        if segment:
            style = plot.Style(color, width=1.5, marker=True)
            canvas.line(segment, style)
            legend.append((style, f"{spec.rule} ({label})"))
    threshold = plot.Style(THRESHOLD_COLOR, width=1, dash=(5, 3))
    canvas.hline(spec.threshold, threshold)
    legend.append((threshold, f"threshold ({spec.op} {spec.threshold:g})"))
    began = plot.Style(VERIFY_COLOR, width=1.5)
    canvas.vline(start, began)
    legend.append((began, "rollback start"))
    if end is not None:
        ended = plot.Style(VERIFY_COLOR, width=1.5, dash=(1.5, 2.5))
        canvas.vline(end, ended)
        legend.append((ended, "rollback end"))
    for mark in spec.marks:
        color = {"pending": PENDING_COLOR, "release": RELEASE_COLOR}.get(mark.style, FIRING_COLOR)
        style = plot.Style(color, width=1, dash=(6, 3, 1.5, 3))
        canvas.vline(when(mark.at), style)
        legend.append((style, mark.label))
    canvas.titles(spec.title, "time (UTC)", spec.rule)
    canvas.legend(legend)
    return canvas.png()
