"""`watch SERVICE`: evaluate the rollback triggers continuously (or once, for cron).

A thin shell over ``Workspace.watch``: parse the options, print each evaluation (a line per
tick, a table for `--once`, or JSON), print notices loudly on stderr, and exit 0 when all is
clear, 1 when a rule fires or cannot see its data (design.md section 4).
"""


import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from crystal_runbook.cli import _common, _output, _style
from crystal_runbook.cli.runbooks import workspace

if TYPE_CHECKING:
    from crystal_runbook.triggers.evaluator import Report
    from crystal_runbook.triggers.watch import Notice


def _seconds(text: str, option: str) -> float:
    from crystal_runbook import errors
    from crystal_runbook.engine import durations

    try:
        value = durations.parse_duration(text)
    except ValueError as exc:
        raise errors.InputError(f"{option}: {exc}") from None
    if value <= 0:
        raise errors.InputError(f"{option} must be longer than 0s")
    return value


def _print_table(report: "Report") -> None:
    state = "ALL CLEAR" if report.healthy else "NOT CLEAR"
    mark = _style.paint(state, "ok" if report.healthy else "failed")
    print(f"{report.service} in {report.env}: {mark} — {report.summary()}")
    for r in report.rules:
        print(_output.rule_row(r.as_json()))
        if r.message and r.state != "inactive":
            print(f"            {r.message}")


def _print_tick(report: "Report") -> None:
    clock = (report.as_json()["evaluated_at"] or "")[11:19]
    print(f"{clock} {report.service}/{report.env} {report.summary()}", flush=True)


def _print_notice(notice: "Notice") -> None:
    mark = {"critical": "!!", "warning": "! ", "info": "  "}[notice.level]
    print(f"{mark} {notice.message}", file=sys.stderr, flush=True)


def watch_cmd(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service name from inventory/services.yaml.")],
    triggers: Annotated[
        Path | None,
        typer.Option("--triggers", help="Triggers file (default: <inventory>/triggers.yaml)."),
    ] = None,
    interval: Annotated[
        str, typer.Option("--interval", help="Time between evaluations (e.g. 15s, 1m).")
    ] = "15s",
    auto_rollback: Annotated[
        bool,
        typer.Option(
            "--auto-rollback/--notify-only",
            help="Run the rollback runbook when a rollback rule fires (default: only notify).",
        ),
    ] = False,
    once: Annotated[
        bool, typer.Option("--once", help="Evaluate once; exit 0 all clear, 1 otherwise.")
    ] = False,
    cooldown: Annotated[
        str,
        typer.Option("--cooldown", help="After a rollback, no other one for at least this long."),
    ] = "10m",
) -> None:
    """Evaluate a service's rollback triggers every interval; roll back when one fires.

    Rules come from triggers.yaml (docs/triggers.md). Exit 0 when every rule is clear, 1
    when one fires or has no data; with --auto-rollback a firing rollback rule runs the
    rollback runbook once per incident.

    Example: crystal-runbook watch maia --env production --interval 15s --auto-rollback
    """
    opts = _common.options(ctx)
    with _common.handle_errors(), _common.stopped_by_user("watch stopped"):
        from crystal_runbook.notify import console
        from crystal_runbook.triggers import watch

        settings = watch.WatchSettings(
            interval=_seconds(interval, "--interval"),
            auto_rollback=auto_rollback,
            cooldown=_seconds(cooldown, "--cooldown"),
        )
        from crystal_runbook.service import triggers as trigger_service

        ws = workspace(opts)
        ws.sink = console.PlainSink(verbose=opts.verbose)
        approve = _common.ask_yes if _common.interactive() else None

        def on_report(report: "Report") -> None:
            if once:
                return
            if opts.json:
                sys.stdout.write(json.dumps(report.as_json(), default=str) + "\n")
                sys.stdout.flush()
            else:
                _print_tick(report)

        try:
            last = trigger_service.watch(
                ws,
                service,
                settings=settings,
                notify=_print_notice,
                on_report=on_report,
                path=triggers,
                once=once,
                approve=approve,
            )
        finally:
            ws.close()
        if once:
            if opts.json:
                _output.print_json(last.as_json())
            else:
                _print_table(last)
            if not last.healthy:
                raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `watch` to the root app."""
    app.command("watch")(watch_cmd)
