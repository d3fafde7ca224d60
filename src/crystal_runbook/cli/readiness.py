"""`crystal-runbook readiness SERVICE`: the checklist's rollback items, proved from evidence.

A thin shell over ``service.readiness.report``: one line per item, ✓ or ✗, with its evidence
and its age; `--output json` prints the same as one document. Exit 0 only when every line
passes (so CI or a release gate can run it), 1 otherwise.
"""

from typing import Annotated

import typer

from crystal_runbook.cli import _common, _output
from crystal_runbook.cli.runbooks import workspace


def readiness_cmd(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service name from inventory/services.yaml.")],
    max_drill_age: Annotated[
        str,
        typer.Option("--max-drill-age", help="A passing drill must be at most this old."),
    ] = "7d",
    drills: Annotated[
        int,
        typer.Option("--drills", min=1, max=100, help="The rollback time is the p95 of this many."),
    ] = 10,
) -> None:
    """Prove the checklist's rollback section for a service; exit 0 only if every line passes.

    Drills, rollback time, a previous revision, the triggers and their sources, Slack, the
    locks and the incident documents: each line says ✓ or ✗, the evidence, and its age.

    Example: crystal-runbook readiness maia --env production
    """
    opts = _common.options(ctx)
    with _common.handle_errors():
        from crystal_runbook import errors
        from crystal_runbook.engine import durations
        from crystal_runbook.service import readiness

        try:
            max_age = durations.parse_duration(max_drill_age)
        except ValueError as exc:
            raise errors.ParamError(f"--max-drill-age: {exc}") from None
        ws = workspace(opts)
        try:
            found = readiness.report(ws, service, max_drill_age=max_age, drills_for_p95=drills)
        finally:
            ws.close()
        if opts.json:
            _output.print_json(found.as_json())
        else:
            state = "READY" if found.ready else "NOT READY"
            failing = len(found.failing)
            print(
                f"{service} in {found.env}: {state}"
                + (f" ({failing} of {len(found.lines)} items fail)" if failing else "")
            )
            for line in found.lines:
                mark = "✓" if line.ok else "✗"
                age = (
                    ""
                    if line.age_seconds is None
                    else (
                        " (now)"
                        if line.age_seconds < 1
                        else f" ({durations.format_duration(line.age_seconds)} ago)"
                    )
                )
                print(f" {mark} {line.item}")
                print(f"     {line.evidence}{age}")
        if not found.ready:
            raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `readiness` to the root app."""
    app.command("readiness")(readiness_cmd)
