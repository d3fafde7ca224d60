"""`runs` and `runs show`: run history from the journal."""


from typing import Annotated

import typer

from crystal_runbook.cli import _common, _output

app = typer.Typer(help="Run history from the journal.", invoke_without_command=True)


def _journal(opts: _common.GlobalOptions):  # type: ignore[no-untyped-def]  # lazy import keeps --help light
    from crystal_runbook.engine import journal

    return journal.open_journal(opts.state_dir)


@app.callback()
def runs_cmd(
    ctx: typer.Context,
    service: Annotated[
        str | None, typer.Option("--service", help="Only runs of this service.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10_000, help="How many runs (newest first).")
    ] = 20,
) -> None:
    """List runs, newest first.

    Example: crystal-runbook runs --service maia --limit 5
    """
    if ctx.invoked_subcommand is not None:
        return
    opts = _common.options(ctx)
    with _common.handle_errors():
        if not (opts.state_dir / "journal.db").exists():
            _output.show_runs(opts, [])
            return
        journal = _journal(opts)
        try:
            _output.show_runs(opts, journal.list_runs(service=service, limit=limit))
        finally:
            journal.close()


@app.command("show")
def show_cmd(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="Run id or a unique prefix.")],
) -> None:
    """Show one run: its steps, what changed, errors.

    Example: crystal-runbook runs show 3fa2c1d09b7e -o json
    """
    opts = _common.options(ctx)
    with _common.handle_errors():
        journal = _journal(opts)
        try:
            _output.show_run(opts, journal.get_run(run_id))
        finally:
            journal.close()


def register(root: typer.Typer) -> None:
    """Add `runs` to the root app."""
    root.add_typer(app, name="runs")
