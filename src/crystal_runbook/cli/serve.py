"""`serve`: the long-running process (Slack app, drill scheduler, watchers), a thin shell over
``server``."""

import sys
from typing import Annotated

import typer

from crystal_runbook.cli import _common
from crystal_runbook.cli.runbooks import workspace


def serve_cmd(
    ctx: typer.Context,
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="HTTP port (0: a free one).")
    ] = 3000,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "0.0.0.0",  # noqa: S104 - a server for Slack to reach  # nosec B104
    slack: Annotated[
        bool, typer.Option("--slack", help="Serve the Slack app at POST /slack/events.")
    ] = False,
    socket_mode: Annotated[
        bool,
        typer.Option(
            "--socket-mode", help="Slack app over Socket Mode (SLACK_APP_TOKEN), no public URL."
        ),
    ] = False,
    scheduler: Annotated[
        bool,
        typer.Option(
            "--scheduler",
            help="Run due drills (inventory/drills.yaml) on the replica that leads its Lease.",
        ),
    ] = False,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="Watch the services of inventory/serve.yaml (auto-rollback), one leader each.",
        ),
    ] = False,
    grace: Annotated[
        str, typer.Option("--grace", help="After SIGTERM, how long running jobs may finish.")
    ] = "25s",
    flush_interval: Annotated[
        str,
        typer.Option(
            "--flush-interval",
            help="How often undelivered Slack messages (the outbox) are sent again; 0: never.",
        ),
    ] = "1m",
) -> None:
    """Run the Slack app, the drill scheduler and the trigger watchers until SIGTERM.

    Every replica serves Slack; the scheduler and each watcher of inventory/serve.yaml run on
    one replica at a time (Kubernetes Lease leader election). HTTP: POST /slack/events,
    GET /healthz, /readyz and /metrics. SIGTERM: no new work, Leases released, running jobs
    get --grace to finish (else journalled interrupted; the next leader resumes them), exit 0.

    Secrets come from the environment only: SLACK_SIGNING_SECRET, SLACK_BOT_TOKEN and,
    with --socket-mode, SLACK_APP_TOKEN (or each one's *_FILE); CRYSTAL_DATABASE_URL for a
    shared journal. See docs/slack.md and docs/operations.md.

    Example: crystal-runbook serve --slack --scheduler --watch --port 3000
    """
    opts = _common.options(ctx)
    with _common.handle_errors():
        from crystal_runbook import errors
        from crystal_runbook.engine import durations
        from crystal_runbook.server import app

        if not (slack or socket_mode or scheduler or watch):
            raise errors.InputError(
                "nothing to serve",
                hint="add --slack (HTTP) or --socket-mode (Slack app), --scheduler (drills), "
                "--watch (the services of inventory/serve.yaml)",
            )
        seconds: dict[str, float] = {}
        for name, value in (("--grace", grace), ("--flush-interval", flush_interval)):
            try:
                seconds[name] = durations.parse_duration(value)
            except ValueError as exc:
                raise errors.InputError(f"{name}: {exc}") from None
        options = app.ServeOptions(
            host=host,
            port=port,
            slack=slack,
            socket_mode=socket_mode,
            scheduler=scheduler,
            watch=watch,
            grace=seconds["--grace"],
            flush_interval=seconds["--flush-interval"],
        )
        ws = workspace(opts)
        ws.interactive, ws.confirm = False, None  # nobody answers at a terminal
        try:
            code = app.serve(
                ws,
                options,
                verbose=opts.verbose,
                announce=lambda line: print(line, file=sys.stderr, flush=True),
            )
        finally:
            ws.close()
        raise typer.Exit(code)


def register(root: typer.Typer) -> None:
    """Add `serve` to the root app."""
    root.command("serve")(serve_cmd)
