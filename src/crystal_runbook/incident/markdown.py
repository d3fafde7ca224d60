"""Markdown of an incident document, from the Jinja2 template `templates/incident.md.j2`.

The template holds the wording and layout (the part reviewers will want to change); this
module holds the filters that keep the Markdown valid whatever the journal contains: table
cells never break a row (pipes escaped, lines joined), times read as UTC, durations short.
Undefined names are errors (StrictUndefined), so a typo in the template fails the tests,
not a 3 a.m. document.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2

from crystal_runbook.engine import durations
from crystal_runbook.incident.model import Document, Sample

TEMPLATE = "incident.md.j2"


def cell(value: Any) -> str:
    """``value`` as text safe inside a Markdown table cell."""
    if value is None:
        return "—"
    text = " ".join(str(value).split())
    return text.replace("\\", "\\\\").replace("|", "\\|") or "—"


def utc(at: str | None) -> str:
    """A journal timestamp as `YYYY-MM-DD HH:MM:SS.mmm` (UTC), or a dash."""
    if not at:
        return "—"
    return at.replace("T", " ").removesuffix("Z")


def seconds(value: float | None) -> str:
    """A duration in the engine's short form (`850ms`, `12.3s`, `4m05s`), or a dash."""
    return "—" if value is None else durations.format_duration(value)


def number(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def samples(observed: list[Sample], last: int) -> str:
    """The last ``last`` observed values as `HH:MM:SS: value, ...` (the JSON keeps all)."""
    shown = ", ".join(f"{s.at[11:19]}: {number(s.value)}" for s in observed[-last:])
    more = f" (last {last} shown; the JSON has all)" if len(observed) > last else ""
    return (shown or "none") + more


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(  # Markdown, not HTML (autoescape=False below)  # nosec B701
        loader=jinja2.PackageLoader("crystal_runbook.incident", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701 - Markdown, not HTML; table cells go through `cell`
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(cell=cell, utc=utc, seconds=seconds, number=number, samples=samples)
    return env


def template() -> jinja2.Template:
    """The compiled template (compiled once per process)."""
    return _environment().get_template(TEMPLATE)


def render(doc: Document, *, chart_file: str | None) -> str:
    """The Markdown of ``doc``; ``chart_file`` is the chart's name relative to the document."""
    return template().render(doc=doc, chart_file=chart_file).rstrip("\n") + "\n"
