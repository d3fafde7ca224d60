"""`incident show`: the incident document of a run, generated from the journal."""


import sys
from typing import Annotated

import typer

from crystal_runbook.cli import _common

app = typer.Typer(help="Incident documents, generated from the journal.", no_args_is_help=True)


@app.command("show")
def show_cmd(
    ctx: typer.Context,
    run_id: Annotated[
        str | None,
        typer.Argument(help="Run id or a unique prefix (default: the latest run with one)."),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="md or json (default: md; json with -o json)."),
    ] = None,
) -> None:
    """Print a run's incident document and (re)write its files under <state dir>/incidents/.

    Without RUN_ID: the latest run's (refused runs have none and are passed over).

    Example: crystal-runbook incident show 3fa2c1d09b7e --format json
    """
    opts = _common.options(ctx)
    chosen = fmt or ("json" if opts.json else "md")
    if chosen not in ("md", "json"):
        raise _common.fail(f"--format must be md or json, not {chosen!r}", code=2)
    with _common.handle_errors():
        from crystal_runbook import service

        ws = service.Workspace(
            state_dir=opts.state_dir, inventory_dir=opts.inventory, runbooks_dir=opts.runbooks
        )
        try:
            chosen_id = run_id if run_id is not None else service.incidents.latest(ws)
            rendered = service.incidents.document(ws, chosen_id)
        finally:
            ws.close()
        sys.stdout.write(rendered.json if chosen == "json" else rendered.markdown)
        print(f"incident document: {rendered.paths.markdown}", file=sys.stderr)


def register(root: typer.Typer) -> None:
    """Add `incident` to the root app."""
    root.add_typer(app, name="incident")
