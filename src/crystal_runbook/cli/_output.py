"""How commands show runs and plans: live progress, plain text or one JSON document.

Messages and progress go to stderr; stdout carries the result (a summary line, or with
`--output json` exactly one JSON document), so `crystal-runbook ... -o json | jq` works.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from crystal_runbook.cli import _style
from crystal_runbook.cli._common import GlobalOptions
from crystal_runbook.engine.printable import printable


def _print(*values: object, file: Any = None, **kwargs: Any) -> None:
    """print(), with control characters of journalled and remote text shown as escapes."""
    text = " ".join(str(v) for v in values)
    print(printable(text), file=file, **kwargs)


def _line(*parts: str | tuple[str, str], strip: bool = False) -> None:
    """One line: text parts made printable like ``_print``; a ``(text, status)`` part also
    painted in the status's colour on a terminal (the colour codes are added after the
    escaping, so they survive it, and take no width, so padding stays aligned)."""
    text = "".join(
        _style.paint(printable(part[0]), part[1]) if isinstance(part, tuple) else printable(part)
        for part in parts
    )
    print(text.rstrip() if strip else text)


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
    run = result.run
    if opts.json:  # the in-memory record is not yet redacted the way the journal is
        print_json(result.redactor.data(run.as_json()))
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
        _line(f"run {run.id} ", ("ok", "ok"), f" in {took}: {what}")
    elif run.status == "refused":
        step = next((s for s in run.steps if s.status == "refused"), None)
        where = f"step {step.id} ({step.uses}) refused: " if step else ""
        reason = result.error.message if result.error is not None else run.error
        _line(
            f"run {run.id} ",
            ("refused", "refused"),
            " before any change (nothing was announced or changed)",
        )
        _print(f"  {where}{reason}")
        if result.error is not None and result.error.hint:
            _print(f"  hint: {result.error.hint}")
    elif run.status == "interrupted":
        _line(
            f"run {run.id} ",
            ("interrupted", "interrupted"),
            f" after {took}; continue with: crystal-runbook resume {run.id}",
        )
        if run.error and run.error != "interrupted by a signal":  # e.g. the disk filled
            _print(f"  why: {run.error.removeprefix('interrupted: ')}")
            if result.error is not None and result.error.hint:
                _print(f"  hint: {result.error.hint}")
    else:
        _line(f"run {run.id} ", (run.status, run.status), f" after {took}: {run.error}")
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
    from crystal_runbook.engine.executor import plan_exit_code  # loaded by now: no cost

    code = plan_exit_code(request, planned)
    if refused is not None:
        _print(
            f"the run would be refused at step {refused.id}: nothing would be changed "
            f"(exit {code})."
        )
        exc = refused.exception
        if exc is not None and exc.hint:
            _print(f"  hint: {exc.hint}")
    elif failed:
        _print(f"the check of {', '.join(failed)} failed: see above (exit {code}).")
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
    status_column = rows[0].index("STATUS")
    for n, row in enumerate(rows):
        cells: list[str | tuple[str, str]] = [
            str(cell).ljust(widths[i]) for i, cell in enumerate(row)
        ]
        if n:
            cells[status_column] = (str(cells[status_column]), str(row[status_column]))
        parts: list[str | tuple[str, str]] = []
        for i, cell in enumerate(cells):
            parts += ["  ", cell] if i else [cell]
        _line(*parts, strip=True)


def show_run(opts: GlobalOptions, run: RunRecord) -> None:
    if opts.json:
        print_json(run.as_json())
        return
    _print(
        f"run {run.id}: {run.runbook} in {run.env}" + (f" for {run.service}" if run.service else "")
    )
    _line("  status:  ", (run.status, run.status), f" ({run.error})" if run.error else "")
    _print(f"  actor:   {run.actor} on {run.host}")
    _print(f"  started: {run.started_at}   ended: {run.ended_at or '-'}   took: {_duration(run)}")
    if run.params:
        _print("  params:  " + ", ".join(f"{k}={v}" for k, v in run.params.items()))
    _print("  steps:")
    # columns as wide as their longest cell (a long step id must not shift the others)
    names = [("on_failure " if s.phase == "on_failure" else "") + s.id for s in run.steps]
    id_width = max((len(n) for n in names), default=4)
    uses_width = max((len(s.uses) for s in run.steps), default=4)
    status_width = max((len(s.status) for s in run.steps), default=6)
    for name, step in zip(names, run.steps, strict=True):
        changed = {True: "changed", False: "unchanged", None: ""}[step.changed]
        _line(
            f"    {name:<{id_width}}  {step.uses:<{uses_width}}  ",
            (f"{step.status:<{status_width}}", step.status),
            f"  {changed:<9}  attempts={step.attempts}  {step.summary}",
            strip=True,
        )
        if step.error:
            _print(f"      error: {step.error}")


def rule_row(rule: Mapping[str, Any]) -> str:
    """One trigger rule as `watch --once` and `health` print it (numbers to 4 digits; the
    rule's own text made printable, its state in colour on a terminal)."""
    value = rule.get("value")
    shown = "-" if value is None else f"{value:.4g}"
    what = "slope/s" if rule.get("kind") == "trend" else "value"
    threshold = rule.get("threshold")
    condition = f"{what} {rule.get('op', '>')} {threshold:g}" if threshold is not None else what
    if rule.get("for_seconds"):
        condition += f" for {rule['for_seconds']:g}s"
    since = str(rule.get("since") or "")[11:19]
    state = str(rule.get("state", ""))
    name = printable(str(rule.get("name", "")))
    return (
        f"  {_style.paint(f'{state:<9}', state)} {name:<26} {shown:>10}  "
        f"{condition:<28} since {since}"
    )
