"""The on-call commands of the source checklist: `rollback`, `scale`, `logs`, `health`.

`rollback` and `scale` run the shipped runbooks (`rollback.yaml`, `scale.yaml`) so they
get every guarantee of the engine; `logs` and `health` read the service directly.
"""


import sys
import threading
from typing import Annotated

import typer

from crystal_runbook.cli import _common, _output, _style
from crystal_runbook.cli.runbooks import execute, workspace

ServiceArg = Annotated[str, typer.Argument(help="Service name from inventory/services.yaml.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Only plan: check, change nothing.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Confirm environments that need it.")]


def rollback_cmd(
    ctx: typer.Context,
    service: ServiceArg,
    to_revision: Annotated[
        int,
        typer.Option(
            "--to-revision", min=0, help="Kubernetes: revision to go back to (0: the previous one)."
        ),
    ] = 0,
    to_release: Annotated[
        str | None,
        typer.Option(
            "--to-release",
            help="Hosts: release to switch to, a directory in releases/ (default: the previous).",
        ),
    ] = None,
    dry_run: DryRun = False,
    yes: Yes = False,
    reason: Annotated[
        str,
        typer.Option("--reason", help="Why (goes into the journal and the incident document)."),
    ] = "",
    break_lock: Annotated[
        bool,
        typer.Option(
            "--break-lock",
            help="Take over the service's lock from a run on another host that looks alive "
            "(confirmed like production; journalled with you and the previous holder).",
        ),
    ] = False,
) -> None:
    """Roll a service back to its previous release and verify it.

    On Kubernetes (`kubernetes:` in the inventory): rollout undo in legacy mode
    (runbooks/rollback.yaml). On hosts (`hosts:`): the `current` release symlink switched
    back and the service restarted on every host (runbooks/rollback-vm.yaml).

    A lock left by a crashed run (its process gone, or ended in the journal) is taken over
    at once with a warning; --break-lock takes over one held from another host.

    Example: crystal-runbook rollback maia --env production --reason "p99 above 2s"
    """
    with _common.handle_errors():
        from crystal_runbook import service as service_layer

        ws = workspace(_common.options(ctx))
        try:
            runbook, params = service_layer.rollback.choose(
                ws, service, to_revision=to_revision, to_release=to_release, reason=reason
            )
        finally:
            ws.close()
    execute(ctx, runbook, params, dry_run=dry_run, assume_yes=yes, break_lock=break_lock)


def scale_cmd(
    ctx: typer.Context,
    service: ServiceArg,
    replicas: Annotated[int, typer.Option("--replicas", help="Desired replicas.")],
    force: Annotated[bool, typer.Option("--force", help="Allow more than 1000 replicas.")] = False,
    hpa: Annotated[
        str,
        typer.Option("--hpa", help="If an HPA would undo it: warn, or adjust its minReplicas."),
    ] = "warn",
    dry_run: DryRun = False,
    yes: Yes = False,
) -> None:
    """Scale a service's Deployment and wait until the replicas are available.

    Example: crystal-runbook scale maia --replicas 10 --env production --yes
    """
    if replicas > 1000 and not force and not dry_run:  # bad input: no run, nothing journalled
        raise _common.fail(
            f"--replicas {replicas} is more than 1000",
            code=2,
            hint="add --force if you really mean it (at most 2147483647, Kubernetes' limit)",
        )
    params: dict[str, object] = {
        "service": service,
        "replicas": replicas,
        "force": force,
        "hpa": hpa,
    }
    execute(ctx, "scale", params, dry_run=dry_run, assume_yes=yes)


def logs_cmd(
    ctx: typer.Context,
    service: ServiceArg,
    since: Annotated[
        str | None, typer.Option("--since", help="Only newer lines, e.g. 10m.")
    ] = None,
    tail: Annotated[
        int | None, typer.Option("--tail", min=1, help="Lines per pod to start with.")
    ] = None,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Keep following, across pod restarts and rollouts."),
    ] = False,
    grep: Annotated[
        str | None, typer.Option("--grep", help="Only lines matching this regular expression.")
    ] = None,
) -> None:
    """Logs of every pod of the service, prefixed with the pod name.

    Example: crystal-runbook logs maia --since 10m --grep error -f
    """
    opts = _common.options(ctx)
    with _common.handle_errors(), _common.stopped_by_user():
        import re

        from crystal_runbook import errors
        from crystal_runbook.engine import durations

        try:
            since_seconds = durations.parse_duration(since) if since else None
        except ValueError as exc:
            raise errors.ParamError(f"--since: {exc}") from None
        if grep is not None:
            if len(grep) > 200:
                raise errors.ParamError("--grep: longer than 200 characters")
            try:
                re.compile(grep)
            except re.error as exc:
                raise errors.ParamError(f"--grep: not a regular expression: {exc}") from None
        from crystal_runbook.service import oncall as oncall_service

        ws = workspace(opts)
        stop = threading.Event()

        def emit(line: str) -> None:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

        try:
            oncall_service.logs(
                ws,
                service,
                since=since_seconds,
                tail=tail if tail is not None else (10 if follow else 100),
                grep=grep,
                follow=follow,
                emit=emit,
                stop=stop,
            )
        finally:
            stop.set()
            ws.close()


def health_cmd(ctx: typer.Context, service: ServiceArg) -> None:
    """The service now: health URL, rollout status (and trigger rules); exit 1 if unhealthy.

    Example: crystal-runbook health maia --env production -o json
    """
    opts = _common.options(ctx)
    with _common.handle_errors():
        from crystal_runbook.service import oncall as oncall_service

        ws = workspace(opts)
        try:
            report = oncall_service.health(ws, service)
        finally:
            ws.close()
        if opts.json:
            _output.print_json(report)
        else:
            state = "healthy" if report["healthy"] else "NOT HEALTHY"
            tone = "healthy" if report["healthy"] else "bad"
            print(f"{service} in {report['env']}: {_style.paint(state, tone)}")
            for check in report["checks"]:
                mark = _style.paint("ok ", "ok") if check["ok"] else _style.paint("BAD", "bad")
                print(f"  {mark} {check['name']:<12} {check['detail']}")
            for rule in report["rules"]:
                print(_output.rule_row(rule))
        if not report["healthy"]:
            raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("rollback")(rollback_cmd)
    app.command("scale")(scale_cmd)
    app.command("logs")(logs_cmd)
    app.command("health")(health_cmd)
