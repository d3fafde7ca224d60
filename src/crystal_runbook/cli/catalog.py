"""The runbook format's commands: `validate` (lint runbooks and inventory) and `schema`."""


import sys
from pathlib import Path
from typing import Annotated

import typer

from crystal_runbook.cli import _common, _output
from crystal_runbook.cli.runbooks import workspace


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""

    @app.command("validate")
    def validate_cmd(
        ctx: typer.Context,
        paths: Annotated[
            list[Path] | None,
            typer.Argument(help="Files or directories (default: runbooks and inventory)."),
        ] = None,
    ) -> None:
        """Lint runbooks and inventory; exit 2 with file:line:column for each problem.

        Example: crystal-runbook validate runbooks/
        """
        opts = _common.options(ctx)
        with _common.handle_errors():
            from crystal_runbook import service

            ws = workspace(opts)
            count, problems = service.catalog.validate(ws, paths or [])
            if opts.json:
                _output.print_json(
                    {
                        "files": count,
                        "problems": [
                            {
                                "path": p.path,
                                "line": p.line,
                                "column": p.column,
                                "message": p.message,
                            }
                            for p in problems
                        ],
                    }
                )
            else:
                for problem in problems:
                    print(problem, file=sys.stderr)
                print(f"{count} file(s) checked, {len(problems)} problem(s)")
            if problems:
                raise typer.Exit(2)

    @app.command("schema")
    def schema_cmd(ctx: typer.Context) -> None:
        """Print the JSON Schema of the runbook format (for editors and CI).

        Example: crystal-runbook schema > runbook.schema.json
        """
        opts = _common.options(ctx)
        with _common.handle_errors():
            from crystal_runbook import service

            _output.print_json(service.catalog.schema(workspace(opts)))
