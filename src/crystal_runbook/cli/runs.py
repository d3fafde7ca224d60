"""`runs` and `runs show`: run history from the journal.

Kept light on purpose (`runs` is timed by bench/runs_list.py): it opens the journal through
``service.journals`` alone, not the whole workspace, and psycopg is imported only when
``CRYSTAL_DATABASE_URL`` puts the journal in PostgreSQL (then on one connection, no pool).
"""

import sys
from typing import Annotated

import typer

from crystal_runbook.cli import _common, _output

app = typer.Typer(help="Run history from the journal.", invoke_without_command=True)


def _journal(opts: _common.GlobalOptions):  # type: ignore[no-untyped-def]  # lazy import keeps --help light
    from crystal_runbook.service import journals

    return journals.open_journal(
        opts.state_dir, database_url=journals.database_url(), pooled=False
    )


def _exists(opts: _common.GlobalOptions) -> bool:
    from crystal_runbook.service import journals

    return journals.journal_exists(opts.state_dir, database_url=journals.database_url())


@app.callback()
def runs_cmd(
    ctx: typer.Context,
    service: Annotated[
        str | None, typer.Option("--service", help="Only runs of this service.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10_000, help="How many runs (newest first).")
    ] = 20,
    before: Annotated[
        str | None,
        typer.Option(
            "--before",
            metavar="RUN_ID",
            help="Only runs older than this one: the next page after a listing's last run.",
        ),
    ] = None,
) -> None:
    """List runs, newest first.

    Example: crystal-runbook runs --service maia --limit 5
    Next page: crystal-runbook runs --service maia --limit 5 --before <last run id shown>
    """
    if ctx.invoked_subcommand is not None:
        return
    from crystal_runbook.engine import orphans

    opts = _common.options(ctx)
    with _common.handle_errors():
        if not _exists(opts):
            if before is not None:
                from crystal_runbook import errors

                raise errors.RunNotFound(f"no run {before.strip()[:64]!r} in the journal")
            _output.show_runs(opts, [])
            return
        journal = _journal(opts)
        try:
            runs = [  # a run killed on this host shows as interrupted, not running forever
                orphans.as_seen(r)
                for r in journal.list_runs(service=service, limit=limit, before=before)
            ]
        finally:
            journal.close()
        _output.show_runs(opts, runs)
        if len(runs) == limit and not opts.json:
            more = ["crystal-runbook runs"]
            if service:
                more.append(f"--service {service}")
            more += [f"--limit {limit}", f"--before {runs[-1].id}"]
            print(f"older runs: {' '.join(more)}", file=sys.stderr)


@app.command("show")
def show_cmd(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="Run id or a unique prefix.")],
) -> None:
    """Show one run: its steps, what changed, errors.

    Example: crystal-runbook runs show 3fa2c1d09b7e -o json
    """
    from crystal_runbook.engine import orphans

    opts = _common.options(ctx)
    with _common.handle_errors():
        journal = _journal(opts)
        try:
            _output.show_run(opts, orphans.as_seen(journal.get_run(run_id)))
        finally:
            journal.close()


def register(root: typer.Typer) -> None:
    """Add `runs` to the root app."""
    root.add_typer(app, name="runs")
