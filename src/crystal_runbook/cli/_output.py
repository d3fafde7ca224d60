"""How commands show runs and plans: live progress, plain text or one JSON document.

Messages and progress go to stderr; stdout carries the result (a summary line, or with
`--output json` exactly one JSON document), so `crystal-runbook ... -o json | jq` works.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from crystal_runbook.cli._common import GlobalOptions
from crystal_runbook.engine.printable import printable


def _print(*values: object, file: Any = None, **kwargs: Any) -> None:
    """print(), with control characters of journalled and remote text shown as escapes."""
    text = " ".join(str(v) for v in values)
    print(printable(text), file=file, **kwargs)


if TYPE_CHECKING:
    from crystal_runbook.engine.events import Sink
    from crystal_runbook.engine.executor import PlannedStep, Request, RunResult
    from crystal_runbook.engine.journal import RunRecord


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")


@contextmanager
def progress(opts: GlobalOptions, steps: list[tuple[str, str]], title: str) -> Iterator[Sink]:
    """The sink for a run's events, chosen by the terminal and the options."""
    from crystal_runbook.engine.events import fan_out
    from crystal_runbook.notify import console, jsonlog

    if os.environ.get("CRYSTAL_LOG_FORMAT", "").lower() == "json":
        yield fan_out([jsonlog.JsonLogSink()])
        return
    if sys.stderr.isatty() and not opts.json:
        with console.LiveSink(steps, title=title) as live:
            yield fan_out([live])
        return
    yield fan_out([console.PlainSink(verbose=opts.verbose)])


def step_list(request: Request) -> list[tuple[str, str]]:
    return [(s.id, s.uses) for s in request.loaded.runbook.steps]


def show_result(opts: GlobalOptions, result: RunResult) -> None:
    from crystal_runbook.engine.secrets import Redactor

    run = result.run
    if opts.json:  # the in-memory record is not yet redacted the way the journal is
        print_json(Redactor().data(run.as_json()))
        return
    changed = sum(1 for s in run.steps if s.changed and s.phase == "main")
    unchanged = sum(
        1 for s in run.steps if s.status == "ok" and not s.changed and s.phase == "main"
    )
    took = _duration(run)
    if run.status == "ok":
        what = (
            f"{changed} step(s) changed, {unchanged} already as wanted"
            if changed
            else "nothing needed changing"
        )
        _print(f"run {run.id} ok in {took}: {what}")
    elif run.status == "refused":
        step = next((s for s in run.steps if s.status == "refused"), None)
        where = f"step {step.id} ({step.uses}) refused: " if step else ""
        reason = result.error.message if result.error is not None else run.error
        _print(f"run {run.id} refused before any change (nothing was announced or changed)")
        _print(f"  {where}{reason}")
        if result.error is not None and result.error.hint:
            _print(f"  hint: {result.error.hint}")
    elif run.status == "interrupted":
        _print(
            f"run {run.id} interrupted after {took}; continue with: crystal-runbook resume {run.id}"
        )
    else:
        _print(f"run {run.id} {run.status} after {took}: {run.error}")
        if result.error is not None and result.error.hint:
            _print(f"  hint: {result.error.hint}")


def _duration(run: RunRecord) -> str:
    from crystal_runbook.engine import durations, journal

    if not run.ended_at:
        return "?"
    seconds = (journal.parse_iso(run.ended_at) - journal.parse_iso(run.started_at)).total_seconds()
    return durations.format_duration(seconds)


def show_plan(opts: GlobalOptions, request: Request, planned: list[PlannedStep]) -> None:
    runbook = request.loaded.runbook
    if opts.json:
        print_json(
            {
                "runbook": runbook.name,
                "env": request.env,
                "service": request.service,
                "params": request.redacted_params,
                "confirm": request.env in runbook.confirm,
                "refused": next((p.id for p in planned if p.status == "refused"), None),
                "steps": [p.as_json() for p in planned],
            }
        )
        return
    where = f" for {request.service}" if request.service else ""
    _print(f"plan: {runbook.name}{where} in {request.env} ({len(planned)} steps)")
    width = max((len(p.id) for p in planned), default=4)
    marks = {
        "change": "~",
        "ok": "=",
        "check": "?",
        "skip": "-",
        "deferred": "…",
        "refused": "x",
        "error": "!",
    }
    for i, step in enumerate(planned, 1):
        mark = marks.get(step.status, " ")
        _print(f" {mark} {i:>2}. {step.id:<{width}}  {step.uses:<20} {step.summary}")
        for change in step.changes:
            _print(f"        {change.render()}")
        if step.error:
            _print(f"        error: {step.error}")
    changes = sum(1 for p in planned if p.status == "change")
    _print(f"{changes} step(s) would change something; nothing was changed.")
    refused = next((p for p in planned if p.status == "refused"), None)
    failed = [p.id for p in planned if p.status == "error"]
    if refused is not None:
        _print(f"the run would be refused at step {refused.id}: nothing would be changed (exit 1).")
        exc = refused.exception
        if exc is not None and exc.hint:
            _print(f"  hint: {exc.hint}")
    elif failed:
        _print(f"the check of {', '.join(failed)} failed: see above (exit 1).")
    elif request.env in runbook.confirm and not request.assume_yes:
        _print(f"{request.env} needs confirmation: add --yes to apply (exit 4).")


def show_runs(opts: GlobalOptions, runs: list[RunRecord]) -> None:
    if opts.json:
        print_json([r.as_json(with_steps=False) for r in runs])
        return
    if not runs:
        _print("no runs in the journal yet")
        return
    rows = [("RUN", "RUNBOOK", "SERVICE", "ENV", "STATUS", "ACTOR", "STARTED (UTC)", "TOOK")]
    rows += [
        (
            r.id,
            r.runbook,
            r.service or "-",
            r.env,
            r.status,
            r.actor,
            r.started_at[:19].replace("T", " "),
            _duration(r),
        )
        for r in runs
    ]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        _print("  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)).rstrip())


def show_run(opts: GlobalOptions, run: RunRecord) -> None:
    if opts.json:
        print_json(run.as_json())
        return
    _print(
        f"run {run.id}: {run.runbook} in {run.env}" + (f" for {run.service}" if run.service else "")
    )
    _print(f"  status:  {run.status}" + (f" ({run.error})" if run.error else ""))
    _print(f"  actor:   {run.actor} on {run.host}")
    _print(f"  started: {run.started_at}   ended: {run.ended_at or '-'}   took: {_duration(run)}")
    if run.params:
        _print("  params:  " + ", ".join(f"{k}={v}" for k, v in run.params.items()))
    _print("  steps:")
    for step in run.steps:
        changed = {True: "changed", False: "unchanged", None: ""}[step.changed]
        prefix = "on_failure " if step.phase == "on_failure" else ""
        _print(
            f"    {prefix}{step.id:<16} {step.uses:<20} {step.status:<11} {changed:<9} "
            f"attempts={step.attempts}  {step.summary}"
        )
        if step.error:
            _print(f"      error: {step.error}")
