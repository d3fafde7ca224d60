"""Commands that run runbooks: `run`, `plan`, `resume`."""


from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated

import typer

from crystal_runbook.cli import _common, _output

if TYPE_CHECKING:
    from crystal_runbook.service import Workspace

ParamOption = Annotated[
    list[str] | None,
    typer.Option(
        "--param", "-p", help="Runbook parameter as key=value (repeatable).", metavar="KEY=VALUE"
    ),
]


def workspace(opts: _common.GlobalOptions, *, sink: object = None) -> "Workspace":
    """The service layer for these options (imported here, never at --help time)."""
    from crystal_runbook import service

    return service.Workspace(
        state_dir=opts.state_dir,
        inventory_dir=opts.inventory,
        runbooks_dir=opts.runbooks,
        env=opts.env,
        confirm=_common.ask_yes,
        interactive=_common.interactive(),
    )


def execute(
    ctx: typer.Context,
    runbook: str,
    params: Mapping[str, object],
    *,
    dry_run: bool,
    assume_yes: bool,
    break_lock: bool = False,
) -> None:
    """Plan or run ``runbook``: the shared body of `run`, `rollback`, `scale` and friends."""
    opts = _common.options(ctx)
    with _common.handle_errors():
        from crystal_runbook import service

        ws = workspace(opts)
        try:
            if dry_run:
                request, planned = service.runs.plan(ws, runbook, params, assume_yes=assume_yes)
                _output.show_plan(opts, request, planned)
                code = service.runs.plan_exit_code(request, planned)
                if code:
                    raise typer.Exit(code)
                return
            request = service.runs.request(ws, runbook, params, assume_yes=assume_yes)
            request.break_lock = break_lock
            title = (
                f"{request.loaded.runbook.name}"
                + (f" {request.service}" if request.service else "")
                + f" in {request.env}"
            )
            with (
                _common.sigterm_as_interrupt(),
                _output.progress(opts, _output.step_list(request), title) as sink,
            ):
                ws.sink = sink
                result = service.runs.execute(ws, request)
        finally:
            ws.close()
        _output.show_result(opts, result)
        if result.exit_code:
            raise typer.Exit(result.exit_code)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""

    @app.command("run")
    def run_cmd(
        ctx: typer.Context,
        runbook: Annotated[
            str, typer.Argument(help="Runbook name (from --runbooks) or a .yaml path.")
        ],
        param: ParamOption = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Only plan: check every step, change nothing.")
        ] = False,
        yes: Annotated[
            bool,
            typer.Option("--yes", "-y", help="Confirm environments that need it, and approvals."),
        ] = False,
    ) -> None:
        """Run any runbook by name or path.

        Example: crystal-runbook run rollback -p service=maia --env staging
        """
        with _common.handle_errors():
            from crystal_runbook.engine import params as params_mod

            values = params_mod.parse_assignments(param or [])
        execute(ctx, runbook, values, dry_run=dry_run, assume_yes=yes)

    @app.command("plan")
    def plan_cmd(
        ctx: typer.Context,
        runbook: Annotated[str, typer.Argument(help="Runbook name or .yaml path.")],
        param: ParamOption = None,
    ) -> None:
        """Show every step's check and the change it would make; changes nothing.

        Example: crystal-runbook plan rollback -p service=maia --env production
        """
        with _common.handle_errors():
            from crystal_runbook.engine import params as params_mod

            values = params_mod.parse_assignments(param or [])
        execute(ctx, runbook, values, dry_run=True, assume_yes=False)

    @app.command("resume")
    def resume_cmd(
        ctx: typer.Context,
        run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix) from `runs`.")],
        yes: Annotated[
            bool,
            typer.Option("--yes", "-y", help="Answer approvals and confirmations in advance."),
        ] = False,
        force: Annotated[
            bool,
            typer.Option(
                "--force",
                help="When what the run changed no longer holds, re-apply from the first "
                "drifted step instead of refusing (confirmation rules apply).",
            ),
        ] = False,
    ) -> None:
        """Continue an interrupted or failed run from the journal.

        Finished steps that changed something are checked again first: when another run (or
        someone by hand) changed the target since, resume refuses (exit 1) and says what
        differs; --force re-applies from there. Finished steps are not run again; the
        interrupted step's check tells whether its change already took effect.

        Example: crystal-runbook resume 3fa2c1d09b7e
        """
        opts = _common.options(ctx)
        with _common.handle_errors():
            from crystal_runbook import service

            ws = workspace(opts)
            try:
                run = service.runs.show(ws, run_id)
                steps = [(s.id, s.uses) for s in run.steps if s.phase == "main"]
                with (
                    _common.sigterm_as_interrupt(),
                    _output.progress(opts, steps, f"resume {run.runbook} {run.id}") as sink,
                ):
                    ws.sink = sink
                    result = service.runs.resume(ws, run.id, assume_yes=yes, force=force)
            finally:
                ws.close()
            _output.show_result(opts, result)
            if result.exit_code:
                raise typer.Exit(result.exit_code)
