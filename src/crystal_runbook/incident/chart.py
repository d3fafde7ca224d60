"""The PNG chart of the trigger metric across the incident window.

What the reviewer wants to see at a glance: the metric crossing its threshold, when the
rule started to hold and fired, and when the rollback started and ended, with the metric
coming back. The values are the journal's: the trigger's window (`meta.trigger`) and the
verification steps' polls of the same rule (`metrics.check` evidence).

matplotlib is imported here only, inside ``render``, with the Agg backend (no display) and
its object API (no pyplot global state): `--help` and runs without a chart never load it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime

from crystal_runbook.engine import journal
from crystal_runbook.incident import facts

WIDTH = 1000
"""Pixels; wide enough for a timeline of minutes, narrow enough for a Slack preview."""
HEIGHT = 450
DPI = 100
MIN_PAD = 5.0
"""Seconds of margin left and right of what is drawn, at least."""


@dataclass(frozen=True)
class Mark:
    """A vertical line at ``at`` (a journal timestamp)."""

    at: str
    label: str
    style: str  # "pending" | "firing"


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


def spec_for(run: journal.RunRecord, *, rollback_end: str | None) -> Spec | str:
    """What to draw for ``run``, or the sentence saying why there is no chart."""
    evidence = facts.trigger(run)
    rule: dict[str, object] | None = None
    marks: list[Mark] = []
    if evidence is not None:
        rule = facts.first(r for r in evidence.get("rules") or [] if isinstance(r, dict))
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
    )


def render(spec: Spec) -> bytes:
    """The PNG (``WIDTH`` x ``HEIGHT`` pixels) of ``spec``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import ticker
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def when(at: str) -> float:
        """Seconds since the epoch of a journal timestamp (the x axis)."""
        return journal.parse_iso(at).timestamp()

    def label(value: float, _position: int | None) -> str:
        return datetime.fromtimestamp(value, UTC).strftime("%H:%M:%S")

    fig = Figure(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    start = when(spec.rollback_start)
    times = [when(at) for at, _ in spec.points]
    # the trigger's window and the verification's polls: no line across the rollout between
    segments = [
        ([t for t in times if t < start], "trigger window"),
        ([t for t in times if t >= start], "verification"),
    ]
    values = dict(zip(times, (v for _, v in spec.points), strict=True))
    for segment, when_drawn in segments:
        if segment:
            ax.plot(
                segment,
                [values[t] for t in segment],
                marker="o",
                markersize=3,
                linewidth=1.5,
                color="#1f4e79" if segment[0] < start else "#2e7d32",
                label=f"{spec.rule} ({when_drawn})",
            )
    ax.axhline(
        spec.threshold,
        color="#c00000",
        linestyle="--",
        linewidth=1,
        label=f"threshold ({spec.op} {spec.threshold:g})",
    )
    end = when(spec.rollback_end) if spec.rollback_end else None
    ax.axvline(start, color="#2e7d32", linewidth=1.5, label="rollback start")
    if end is not None:
        ax.axvspan(start, end, color="#2e7d32", alpha=0.12)
        ax.axvline(end, color="#2e7d32", linestyle=":", linewidth=1.5, label="rollback end")
    for mark in spec.marks:
        color = "#ef6c00" if mark.style == "pending" else "#c00000"
        ax.axvline(when(mark.at), color=color, linestyle="-.", linewidth=1, label=mark.label)
    moments = [*times, start, *([end] if end else []), *(when(m.at) for m in spec.marks)]
    low, high = min(moments), max(moments)
    pad = max((high - low) * 0.05, MIN_PAD)
    ax.set_xlim(low - pad, high + pad)
    ax.xaxis.set_major_locator(ticker.MaxNLocator(nbins=8, steps=[1, 2, 3, 5, 6, 10]))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(label))
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel(spec.rule)
    ax.set_title(spec.title, fontsize=11)
    ax.grid(visible=True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.subplots_adjust(left=0.08, right=0.75, top=0.9, bottom=0.13)
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI, metadata={"Software": None})
    return out.getvalue()
