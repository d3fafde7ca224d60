"""`db status`, `db upgrade`, `db downgrade`: the journal's schema migrations.

A thin shell over ``service.db``. With ``CRYSTAL_DATABASE_URL`` they act on the PostgreSQL
journal (which is migrated only by `db upgrade`); without it, on `<state dir>/journal.db`.
"""

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from crystal_runbook.cli import _common

if TYPE_CHECKING:
    from crystal_runbook.service import Workspace
    from crystal_runbook.service.db import Report

app = typer.Typer(
    help="The journal's schema: status, upgrade, downgrade (PostgreSQL via CRYSTAL_DATABASE_URL).",
    no_args_is_help=True,
)

ToOption = Annotated[int | None, typer.Option("--to", min=0, help="The schema version to reach.")]


def _workspace(opts: _common.GlobalOptions) -> "Workspace":
    from crystal_runbook import service

    return service.Workspace(
        state_dir=opts.state_dir, inventory_dir=opts.inventory, runbooks_dir=opts.runbooks
    )


def _show(opts: _common.GlobalOptions, report: "Report") -> None:
    if opts.json:
        from crystal_runbook.cli import _output

        _output.print_json(report.as_json())
        return
    for step in report.steps:
        verb = "applied" if step.direction == "up" else "reverted"
        print(f"{verb} {step.version:04d} {step.name}", file=sys.stderr)
    status = report.status
    state = "up to date" if status.current else f"{len(status.pending)} pending"
    print(f"journal: {report.where} ({report.backend})")
    print(f"schema version {status.version} of {status.head} ({state})")
    applied = {a.version: a.applied_at for a in status.applied}
    for version, name in report.names:
        print(f"  {version:04d} {name:<20} {applied.get(version) or 'pending'}")


@app.command("status")
def status_cmd(ctx: typer.Context) -> None:
    """Show the journal's schema version, and the migrations applied and pending.

    Example: CRYSTAL_DATABASE_URL=postgresql://crystal@db/crystal crystal-runbook db status
    """
    opts = _common.options(ctx)
    with _common.handle_errors():
        from crystal_runbook.service import db

        ws = _workspace(opts)
        _show(opts, db.status(ws))


@app.command("upgrade")
def upgrade_cmd(ctx: typer.Context, to: ToOption = None) -> None:
    """Apply the pending migrations (all, or up to --to); a second run changes nothing.

    Example: crystal-runbook db upgrade
    """
    opts = _common.options(ctx)
    with _common.handle_errors():
        from crystal_runbook.service import db

        report = db.upgrade(_workspace(opts), to=to)
        if not report.steps and not opts.json:
            print("nothing to do: the schema is already there", file=sys.stderr)
        _show(opts, report)


@app.command("downgrade")
def downgrade_cmd(
    ctx: typer.Context,
    to: ToOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Revert migrations down to --to (default: one version back); asks first.

    Version 0 drops the journal's tables and every run in them.
    Example: crystal-runbook db downgrade --to 1 --yes
    """
    opts = _common.options(ctx)
    with _common.handle_errors():
        from crystal_runbook.service import db

        confirm = _common.ask_yes if _common.interactive() else None
        report = db.downgrade(_workspace(opts), to=to, assume_yes=yes, confirm=confirm)
        if not report.steps and not opts.json:
            print("nothing to do: the schema is already there", file=sys.stderr)
        _show(opts, report)


def register(root: typer.Typer) -> None:
    """Add `db` to the root app."""
    root.add_typer(app, name="db")
