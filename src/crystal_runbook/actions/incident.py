"""`incident.write`: the run writes its own incident document, from the journal.

The last step of `rollback.yaml` (and of its `on_failure`, so a failed rollback is
documented too). Its check builds the document as the run stood when the step started and
compares it with the files on disk: identical files are "no change", so a resumed run or a
second check rewrites nothing. Its apply writes the Markdown, the JSON and the chart.

A document problem never passes silently: a chart that cannot be drawn leaves a document
that says why; a document that cannot be written fails the step with a message saying that
the steps before it are done and how to write the document later.

A rollback started by hand has no trigger evidence, so its first check also reads the
trigger rules' recent past from the metrics source, from the release (the rolled-back
ReplicaSet's creation, or the release run in the journal) to now (``triggers.history``), and
journals it as the step's decision (``Check.resolved``): the document, a second check and
`incident show` all use those same values.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from crystal_runbook import errors
from crystal_runbook.engine import journal as journal_mod
from crystal_runbook.engine.inventory import Target
from crystal_runbook.engine.model import MAX_INPUT_LENGTH
from crystal_runbook.engine.registry import Action, Args, Change, Check, Outcome, StepContext
from crystal_runbook.engine.secrets import Redactor

if TYPE_CHECKING:  # loaded by the first check (or ``warm``), not when a runbook is validated
    from crystal_runbook.incident import generate

SETTLE_SECONDS = 30.0
"""At most this long the document waits for notifications still being delivered."""
LOOKBACK = 15 * 60.0
"""Seconds of metric history read for a manual rollback when the release time is unknown."""
MAX_LOOKBACK = 6 * 3600.0
"""Never more history than this (a release long ago would only flatten the chart)."""


class IncidentWriteArgs(Args):
    chart: bool = Field(default=True, description="Draw the PNG chart of the trigger metric.")
    directory: str | None = Field(
        default=None,
        max_length=MAX_INPUT_LENGTH,
        description="Where the files go; default: <state dir>/incidents.",
    )


class IncidentWrite(Action):
    """Write the run's incident document (Markdown, JSON, chart) from the journal."""

    name = "incident.write"
    summary = (
        "Write the run's incident document (Markdown, JSON, PNG chart) from the journal; "
        "no change when the files already hold it."
    )
    Args = IncidentWriteArgs
    outputs = ("markdown", "json", "chart", "status")
    default_timeout = 120.0
    recheck_on_resume = False  # a written document is not undone by another run

    def __init__(self) -> None:
        self.journal: Callable[[], journal_mod.Journal] | None = None
        """Set by the service layer: gives the workspace's journal (opened on first use);
        without it the journal of the step's state directory is opened for each call."""
        self.redactor: Redactor | None = None
        """Set by the service layer (it also knows secret parameters); else from the env."""
        self.settle_notifications: Callable[[float], bool] | None = None
        """Set by the service layer: waits (up to the seconds given) for notifications still
        being delivered in the background, so the document says whether users were told."""
        self.triggers_file: Path | None = None
        """Set by the service layer: the workspace's triggers.yaml (a manual rollback's
        document reads those rules' recent history from the metrics source)."""

    def warm(self) -> None:
        """Load the document generator, compile its template and load the chart's fonts."""
        from crystal_runbook.incident import generate

        generate.warm()

    def check(self, args: Any, ctx: StepContext) -> Check:
        directory = self._directory(args, ctx)
        if ctx.dry_run:
            return Check(
                satisfied=False,
                summary=f"write the run's incident document to {directory}/"
                "<UTC date>-<service>-<run id>.md",
            )
        rendered = self._render(args, ctx, directory, draw=False)
        outputs = self._outputs(rendered)
        history = rendered.prepared.run.meta.get("history")
        resolved = {"history": history} if history is not None else {}
        if rendered.up_to_date():
            return Check(
                satisfied=True,
                summary=f"incident document {rendered.paths.markdown} is up to date",
                outputs=outputs,
                resolved=resolved,
            )
        before = "outdated" if rendered.paths.markdown.exists() else "absent"
        return Check(
            satisfied=False,
            summary=f"write the incident document {rendered.paths.markdown}",
            changes=(Change("incident document", before, str(rendered.paths.markdown)),),
            outputs=outputs,
            resolved=resolved,
        )

    def apply(self, args: Any, ctx: StepContext, check: Check) -> Outcome:
        from crystal_runbook.incident import generate

        directory = self._directory(args, ctx)
        rendered = self._render(args, ctx, directory, draw=args.chart)
        try:
            written = generate.write(rendered)
        except OSError as exc:
            raise errors.PermanentActionError(
                f"the incident document could not be written to {directory}: {exc.strerror or exc}"
                "; the steps before this one are done and journalled",
                hint=f"fix the directory, then `crystal-runbook incident show {ctx.run_id}` "
                "writes the document from the journal",
            ) from None
        chart = rendered.document.chart
        note = "" if chart.path else f" ({chart.reason.rstrip('.')})"
        return Outcome(
            changed=bool(written),
            summary=f"wrote the incident document {rendered.paths.markdown}{note}",
            outputs=self._outputs(rendered),
        )

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _directory(args: Any, ctx: StepContext) -> Path:
        from crystal_runbook.incident import files

        return Path(args.directory) if args.directory else ctx.state_dir / files.DIRECTORY

    def _render(
        self, args: Any, ctx: StepContext, directory: Path, *, draw: bool
    ) -> generate.Rendered:
        from crystal_runbook.incident import generate

        if self.settle_notifications is not None:
            left = SETTLE_SECONDS if ctx.deadline is None else ctx.deadline - time.monotonic()
            if not self.settle_notifications(max(0.0, min(SETTLE_SECONDS, left / 2))):
                ctx.progress("a notification is still being delivered; documented as pending")
        opened = None
        if self.journal is not None:
            source = self.journal()
        else:
            opened = journal_mod.open_journal(ctx.state_dir)
            source = opened
        try:
            history = ctx.resolved.get("history")
            if not isinstance(history, Mapping):
                history = self._history(source, ctx)
            prepared = generate.prepare(
                source, ctx.run_id, directory=directory, writer_step=ctx.step_id, history=history
            )
            if not args.chart:
                prepared = dataclasses.replace(
                    prepared, spec="No chart: this step was told not to draw one (chart: false)."
                )
            return generate.render(prepared, redactor=self.redactor or Redactor(), draw=draw)
        except errors.CrystalError:
            raise
        except (
            Exception
        ) as exc:  # a bug in the generator: say clearly that only the document failed
            raise errors.PermanentActionError(
                f"the incident document could not be generated ({type(exc).__name__}: {exc}); "
                "the steps before this one are done and journalled",
                hint=f"`crystal-runbook incident show {ctx.run_id}` retries from the journal; "
                "please report this as a bug",
            ) from exc
        finally:
            if opened is not None:
                opened.close()

    def _history(self, source: journal_mod.Journal, ctx: StepContext) -> dict[str, Any] | None:
        """The trigger rules' values from the release to now, for a run started by hand
        (None for a run started by a trigger, a drill, or without metrics or rules)."""
        from crystal_runbook.triggers import history, loader

        run = source.get_run(ctx.run_id)
        if run.meta.get("trigger") or run.drill or ctx.service is None:
            return None
        file = self.triggers_file
        if file is None or not ctx.target.get("metrics") or not file.exists():
            return None
        until = time.time()
        released = _release_time(source, run)
        since = max(released or until - LOOKBACK, until - MAX_LOOKBACK)
        found: dict[str, Any] = {
            "since": history.iso(since),
            "until": history.iso(until),
            "release_at": history.iso(released) if released else None,
            "rules": {},
        }
        try:
            bound = loader.bind(
                loader.load(file), ctx.service, ctx.env, Target.model_validate(dict(ctx.target))
            )
        except (errors.CrystalError, ValueError) as exc:
            found["error"] = getattr(exc, "message", str(exc))[:300]
            return found
        found["rules"] = history.recent(
            bound, state_dir=ctx.state_dir, since=since, until=until, redactor=self.redactor
        )
        return found

    @staticmethod
    def _outputs(rendered: generate.Rendered) -> dict[str, Any]:
        return {
            "markdown": str(rendered.paths.markdown),
            "json": str(rendered.paths.json),
            "chart": rendered.document.chart.path,
            "status": rendered.document.status,
        }


def _release_time(source: journal_mod.Journal, run: journal_mod.RunRecord) -> float | None:
    """When the release this run rolls back went out (epoch seconds), if known: the
    rolled-back ReplicaSet's creation, else the latest release run of the service there."""
    for step in run.steps:
        released = step.outputs.get("released_at") if step.uses == "k8s.rollout_undo" else None
        if isinstance(released, str) and released:
            try:
                return journal_mod.parse_iso(released).timestamp()
            except ValueError:
                break
    if run.service is None:
        return None
    for other in source.list_runs(service=run.service, limit=20):
        if other.id == run.id or other.env != run.env or other.started_at >= run.started_at:
            continue
        for step in source.get_run(other.id).steps:
            if step.uses == "k8s.set_image" and step.status == "ok" and step.changed:
                return journal_mod.parse_iso(str(step.started_at)).timestamp()
    return None


ACTIONS: tuple[type[Action], ...] = (IncidentWrite,)
