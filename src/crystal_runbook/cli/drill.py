"""`crystal-runbook drill`: rollback drills by hand, their history, the schedule, what is due.

`drill SERVICE` runs the drill (a run of `runbooks/drill.yaml`, shown live like any run,
then its verdict and figures); `drill history`, `drill schedule` (and `--emit-cronjob`) and
`drill due [--run]` read `inventory/drills.yaml` and the journal. Each command calls one
function of ``service.drills`` and maps errors to exit codes.
"""

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from crystal_runbook.cli import _common, _output
from crystal_runbook.cli.runbooks import workspace

if TYPE_CHECKING:
    from collections.abc import Sequence

    from crystal_runbook.service.drill_schedule import DueOutcome, Planned
    from crystal_runbook.service.drills import Summary


class _DrillGroup(TyperGroup):
    """`drill SERVICE` means `drill run SERVICE`: a first word that is no subcommand is one."""

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["run", *args]
        return super().resolve_command(ctx, args)


app = typer.Typer(
    cls=_DrillGroup,
    help=(
        "Rollback drills: roll back and restore on purpose, timed, verified and reported.\n\n"
        "crystal-runbook drill SERVICE [--allow-production] [--reason TEXT] runs one; the "
        "commands below read the journal and inventory/drills.yaml.\n\n"
        "Example: crystal-runbook drill maia --env staging"
    ),
    no_args_is_help=True,
)

ServiceArg = Annotated[str, typer.Argument(help="Service name from inventory/services.yaml.")]


def _seconds(value: float | None) -> str:
    from crystal_runbook.engine import durations

    return "-" if value is None else durations.format_duration(value)


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _print_summary(found: "Summary") -> None:
    # "PASS" is a verdict's label, not a password
    mark = {"pass": "PASS", "fail": "FAIL", "in_progress": "IN PROGRESS"}.get(  # nosec B105
        found.verdict, found.verdict
    )
    failed = f" (failed phase: {found.failed_phase})" if found.failed_phase else ""
    print(f"DRILL {found.run.id}: {mark}{failed}")
    target = {True: "within", False: "OVER", None: "not measured against"}[found.within_target]
    print(
        f"  rollback {_seconds(found.rollback_seconds)} ({target} the 5-minute target), "
        f"restore {_seconds(found.restore_seconds)}, total {_seconds(found.total_seconds)}"
    )
    print(
        f"  Kubernetes API requests: rollback {_count(found.rollback_requests)}, "
        f"restore {_count(found.restore_requests)}"
    )
    restored = {True: "restored and verified", False: "NOT verified", None: "not recorded"}
    print(f"  baseline: {restored[found.restored]}")
    for anomaly in found.anomalies:
        print(f"  anomaly: {anomaly}")


@app.command("run", hidden=True)
def run_cmd(
    ctx: typer.Context,
    service: ServiceArg,
    allow_production: Annotated[
        bool,
        typer.Option(
            "--allow-production",
            help="Allow a drill in production (drills.yaml must allow it there too).",
        ),
    ] = False,
    reason: Annotated[
        str, typer.Option("--reason", help="Why (kept in the journal and the drill report).")
    ] = "",
) -> None:
    """Run a rollback drill: baseline, rollback, verify, restore, verify, report.

    Example: crystal-runbook drill maia --env staging
    """
    opts = _common.options(ctx)
    with _common.handle_errors():
        from crystal_runbook.service import drills

        ws = workspace(opts)
        try:
            steps = [(s.id, s.uses) for s in ws.load_runbook(drills.RUNBOOK).runbook.steps]
            title = f"DRILL {service} in {ws.resolve_env()}"
            with (
                _common.sigterm_as_interrupt(),
                _output.progress(opts, steps, title) as sink,
            ):
                ws.sink = sink
                result = drills.run(ws, service, allow_production=allow_production, reason=reason)
            found = drills.summary(ws, result.run)
        finally:
            ws.close()
        if opts.json:
            from crystal_runbook.engine.secrets import Redactor

            _output.print_json({**Redactor().data(found.run.as_json()), "drill": found.as_json()})
        else:
            _output.show_result(opts, result)
            _print_summary(found)
        if result.exit_code:
            raise typer.Exit(result.exit_code)


@app.command("history")
def history_cmd(
    ctx: typer.Context,
    service: ServiceArg,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="How many.")] = 20,
) -> None:
    """Past drills of a service with their figures (in --env, if given).

    Example: crystal-runbook drill history maia -o json
    """
    opts = _common.options(ctx)
    with _common.handle_errors():
        from crystal_runbook.service import drills

        ws = workspace(opts)
        try:
            found = drills.history(ws, service, env=opts.env, limit=limit)
        finally:
            ws.close()
    if opts.json:
        _output.print_json([s.as_json() for s in found])
        return
    if not found:
        print(f"no drills of {service} in the journal yet (run: crystal-runbook drill {service})")
        return
    rows = [
        ("RUN", "ENV", "STARTED (UTC)", "VERDICT", "ROLLBACK", "RESTORE", "REQUESTS", "ANOMALIES")
    ]
    for s in found:
        requests = f"{_count(s.rollback_requests)}/{_count(s.restore_requests)}"
        verdict = s.verdict + (f" ({s.failed_phase})" if s.failed_phase else "")
        rows.append(
            (
                s.run.id,
                s.run.env,
                s.run.started_at[:19].replace("T", " "),
                verdict,
                _seconds(s.rollback_seconds),
                _seconds(s.restore_seconds),
                requests,
                str(len(s.anomalies)),
            )
        )
    _table(rows)


def _table(rows: "Sequence[tuple[str, ...]]") -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())


@app.command("schedule")
def schedule_cmd(
    ctx: typer.Context,
    emit_cronjob: Annotated[
        str | None,
        typer.Option(
            "--emit-cronjob",
            metavar="SERVICE",
            help="Print a Kubernetes CronJob (batch/v1) that runs `drill due --run` for SERVICE.",
        ),
    ] = None,
    count: Annotated[int, typer.Option("--count", min=1, max=100, help="Slots per drill.")] = 5,
    image: Annotated[
        str, typer.Option("--image", help="Container image of the CronJob (with crystal-runbook).")
    ] = "crystal-runbook:latest",
    service_account: Annotated[
        str, typer.Option("--service-account", help="ServiceAccount of the CronJob's pods.")
    ] = "crystal-runbook",
) -> None:
    """The next slots of each drill in inventory/drills.yaml, or a CronJob that drives them.

    Example: crystal-runbook drill schedule --emit-cronjob maia > drill-cronjob.yaml
    """
    opts = _common.options(ctx)
    with _common.handle_errors():
        from crystal_runbook.service import drill_schedule

        ws = workspace(opts)
        try:
            if emit_cronjob is not None:
                manifests = drill_schedule.cronjobs(
                    ws,
                    emit_cronjob,
                    image=image,
                    service_account=service_account or None,
                    env=opts.env,
                )
                _print_manifests(opts, manifests)
                return
            plans = drill_schedule.planned(ws, env=opts.env, count=count)
        finally:
            ws.close()
    if opts.json:
        _output.print_json([p.as_json() for p in plans])
        return
    if not plans:
        print("no drills in inventory/drills.yaml (docs/drills.md shows the format)")
        return
    for plan in plans:
        _print_plan(plan)


def _print_manifests(opts: _common.GlobalOptions, manifests: list[dict[str, Any]]) -> None:
    if opts.json:
        many = {"apiVersion": "v1", "kind": "List", "items": manifests}
        _output.print_json(manifests[0] if len(manifests) == 1 else many)
        return
    import yaml

    sys.stdout.write(yaml.safe_dump_all(manifests, sort_keys=False, default_flow_style=False))


def _print_plan(plan: "Planned") -> None:
    from cronsim import CronSim

    d = plan.drill
    print(f"{plan.service} in {plan.env} ({plan.where})")
    if d.schedule is None:
        print(f"  no schedule: run by hand (crystal-runbook drill {plan.service} --env {plan.env})")
    else:
        from datetime import UTC, datetime

        explained = CronSim(d.schedule, datetime.now(UTC)).explain()
        extra = [f"grace {_seconds(d.grace)}"]
        if d.jitter:
            extra.append(f"jitter up to {_seconds(d.jitter)}")
        print(f"  schedule: {d.schedule} ({explained}), {d.timezone}, {', '.join(extra)}")
    for window in d.blackout:
        print(f"  blackout: {window.describe()}")
    if d.allow_production:
        print("  allows drills in production (with --allow-production)")
    for slot in plan.upcoming:
        late = int((slot.start - slot.nominal).total_seconds())
        starts = f"  (starts {slot.start:%H:%M:%S}, +{late}s jitter)" if late else ""
        print(f"  next: {slot.nominal:%Y-%m-%d %a %H:%M %Z}{starts}")
    print(f"  now: {plan.decision.state}: {plan.decision.reason}")


@app.command("due")
def due_cmd(
    ctx: typer.Context,
    run: Annotated[bool, typer.Option("--run", help="Run the drills that are due.")] = False,
    service: Annotated[
        str | None, typer.Option("--service", help="Only this service's drills.")
    ] = None,
    max_wait: Annotated[
        str,
        typer.Option("--max-wait", help="Wait out a slot's jitter up to this long (0: never)."),
    ] = "6h",
) -> None:
    """Which drills are due now; with --run, run them (for cron or a Kubernetes CronJob).

    A missed slot runs once if it was missed by less than its grace; a blackout blocks it.
    Exit 0 when nothing failed (a drill another process runs is skipped), 1 when a drill failed.

    Example: crystal-runbook drill due --run --service maia
    """
    opts = _common.options(ctx)
    with _common.handle_errors():
        from crystal_runbook import errors
        from crystal_runbook.engine import durations
        from crystal_runbook.service import drill_schedule

        try:
            wait = durations.parse_duration(max_wait)
        except ValueError as exc:
            raise errors.ParamError(f"--max-wait: {exc}") from None
        ws = workspace(opts)
        try:
            if not run:
                plans = drill_schedule.planned(ws, service=service, env=opts.env, count=1)
                if opts.json:
                    _output.print_json([p.as_json() for p in plans])
                else:
                    for plan in plans:
                        decision = plan.decision
                        print(
                            f"{plan.service:<16} {plan.env:<12} {decision.state:<11} "
                            f"{decision.reason}"
                        )
                return
            from crystal_runbook.notify import console

            ws.sink = console.PlainSink(verbose=opts.verbose)
            with _common.sigterm_as_interrupt():
                outcomes = drill_schedule.run_due(
                    ws,
                    service=service,
                    env=opts.env,
                    max_wait=wait,
                    progress=lambda message: print(message, file=sys.stderr, flush=True),
                )
        finally:
            ws.close()
    _print_outcomes(opts, outcomes)
    if drill_schedule.outcomes_failed(outcomes):
        raise typer.Exit(1)


def _print_outcomes(opts: _common.GlobalOptions, outcomes: "list[DueOutcome]") -> None:
    if opts.json:
        _output.print_json([o.as_json() for o in outcomes])
        return
    if not outcomes:
        print("no drills in inventory/drills.yaml")
    for o in outcomes:
        print(f"{o.service:<16} {o.env:<12} {o.action:<11} {o.message}")


def register(root: typer.Typer) -> None:
    """Add `drill` and its subcommands to the root app."""
    root.add_typer(app, name="drill")
