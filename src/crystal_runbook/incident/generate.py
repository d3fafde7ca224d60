"""The one entry point: a run id and a journal in, the document's files out.

Used by the `incident.write` action (from inside the run, as of its own step) and by
`crystal-runbook incident show` (the run as the journal has it now). Both read only the
journal, pass every text through the ``Redactor`` before it is written, and write a file only
when its bytes change, so writing the same run's document again is "no change".

``prepare`` reads the journal and decides the paths (cheap: an action's check calls it);
``render`` builds the texts, drawing the chart only when asked; ``write`` puts them on disk.
"""

from __future__ import annotations

import dataclasses
import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crystal_runbook.engine import journal
from crystal_runbook.engine.secrets import Redactor
from crystal_runbook.incident import asof, build, chart, facts, files, markdown, model, plot

RELATED_RUNS = 20
"""Earlier runs of the same service read for the review fields (release, incident count)."""


@dataclass(frozen=True)
class Prepared:
    """What the journal says about one run, and where its document goes."""

    run: journal.RunRecord
    events: list[journal.EventRecord]
    related: list[journal.RunRecord]
    writer: journal.StepRecord | None
    paths: files.Paths
    spec: chart.Spec | str
    """What the chart would draw, or why there is none."""
    alive: bool


@dataclass(frozen=True)
class Rendered:
    """The document and its files' contents."""

    prepared: Prepared
    document: model.Document
    markdown: str
    json: str
    png: bytes | None

    @property
    def paths(self) -> files.Paths:
        return self.prepared.paths

    def up_to_date(self) -> bool:
        """Whether the files on disk already hold exactly this document."""
        p = self.paths
        fresh = files.same(p.markdown, self.markdown.encode()) and files.same(
            p.json, self.json.encode()
        )
        if self.document.chart.path is not None:
            fresh = fresh and (
                files.same(p.chart, self.png) if self.png is not None else p.chart.exists()
            )
        return fresh


def prepare(
    source: journal.Journal,
    run_id: str,
    *,
    directory: Path,
    writer_step: str | None = None,
    history: Mapping[str, Any] | None = None,
) -> Prepared:
    """Read ``run_id`` from ``source``.

    Args:
        writer_step: the id of the `incident.write` step writing from inside the run: the
            document then describes the run as it stood when that step started.
        history: the trigger rules' values before a manual rollback (``incident.write``
            reads them once); default: what the run's `incident.write` step journalled.
    Raises:
        errors.RunNotFound: no such run (or an ambiguous prefix).
    """
    run = source.get_run(run_id)
    if history is None:
        history = next(
            (
                s.resolved["history"]
                for s in run.steps
                if s.uses == facts.DOCUMENT_USES and isinstance(s.resolved.get("history"), Mapping)
            ),
            None,
        )
    if history is not None:
        run = dataclasses.replace(run, meta={**run.meta, "history": dict(history)})
    events = source.events(run.id)
    writer = None
    if writer_step is not None:
        candidates = [s for s in run.steps if s.id == writer_step]
        busy = [s for s in candidates if s.status not in ("pending", "ok", "skipped", "failed")]
        chosen = busy or candidates
        writer = chosen[-1] if chosen else None
    related: list[journal.RunRecord] = []
    if run.service is not None:
        for other in source.list_runs(service=run.service, limit=RELATED_RUNS):
            if other.id != run.id and other.env == run.env and other.started_at <= run.started_at:
                related.append(source.get_run(other.id))
    steps, cut = asof.as_of_writer(run, events, writer)
    view = dataclasses.replace(run, steps=steps)
    restored = facts.restored_at(facts.restoration(view))
    alive = (
        run.status == "running"
        and run.host == socket.gethostname()
        and journal.process_alive(run.pid)
    )
    end = restored
    if end is None and run.ended_at and writer is None:
        end = run.ended_at
    return Prepared(
        run=run,
        events=events,
        related=related,
        writer=writer,
        paths=files.paths_for(directory, run),
        spec=chart.spec_for(view, rollback_end=end or (cut[-1].at if cut else None)),
        alive=alive,
    )


def warm() -> None:
    """Compile the Markdown template and load the chart's library and fonts (see
    ``Action.warm``: done while an earlier step waits, so writing the document is quick)."""
    markdown.template()
    plot.warm()


def render(prepared: Prepared, *, redactor: Redactor, draw: bool = True) -> Rendered:
    """Build the document; with ``draw`` also the chart's PNG (else assume it will be drawn).

    A chart that cannot be drawn never stops the document: the document then says why.
    """
    png: bytes | None = None
    spec = prepared.spec
    if isinstance(spec, str):
        info = model.Chart(path=None, rule=None, points=0, reason=spec)
    else:
        spec = dataclasses.replace(spec, title=redactor.text(spec.title))
        info = model.Chart(
            path=str(prepared.paths.chart), rule=spec.rule, points=len(spec.points), reason=""
        )
        if draw:
            try:
                png = chart.render(spec)
            except Exception as exc:  # noqa: BLE001 - a chart problem must not cost the document
                info = model.Chart(
                    path=None,
                    rule=spec.rule,
                    points=len(spec.points),
                    reason=f"No chart: drawing it failed ({type(exc).__name__}: "
                    f"{redactor.text(str(exc))[:200]}); the values are in the JSON document.",
                )
    document = build.build(
        prepared.run,
        prepared.events,
        related=prepared.related,
        writer=prepared.writer,
        paths=build.Paths(markdown=str(prepared.paths.markdown), json=str(prepared.paths.json)),
        chart=info,
        alive=prepared.alive,
    )
    text = redactor.text(
        markdown.render(document, chart_file=prepared.paths.chart.name if info.path else None)
    )
    data = redactor.data(document.as_json())
    return Rendered(
        prepared=prepared,
        document=document,
        markdown=text,
        json=json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n",
        png=png,
    )


def write(rendered: Rendered) -> list[Path]:
    """Write the files that differ; returns the paths written (empty: nothing changed).

    Raises:
        OSError: a file cannot be written.
    """
    p = rendered.paths
    written = []
    if rendered.png is not None and files.write(p.chart, rendered.png):
        written.append(p.chart)
    if files.write(p.json, rendered.json.encode()):
        written.append(p.json)
    if files.write(p.markdown, rendered.markdown.encode()):
        written.append(p.markdown)
    return written
