"""The `crystal-runbook` command line: a thin shell over `crystal_runbook.service`.

Each command parses its arguments, calls one service function and maps errors to exit codes
(design.md section 4). Global options work before or after the command name, as kubectl's
flags do: `main()` moves them to the front before click parses the line.

Nothing heavy is imported here: `--help` must stay fast and must not load kubernetes,
fabric, slack_sdk or ansible_runner. Commands import what they need when they run. Modules
that define commands do not use `from __future__ import annotations`: typer would then `eval`
every annotation of every command at start-up, a third of the `--help` budget
(bench/cli_help.py: 157 ms with it, 100 ms without).
"""


import contextlib
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from crystal_runbook.cli import (
    _common,
    _hoist,
    catalog,
    db,
    demo,
    drill,
    incident,
    oncall,
    outbox,
    readiness,
    runbooks,
    runs,
    sandbox,
    serve,
    watch,
)


def _usage_metavar(
    self: typer.core.TyperArgument, ctx: object, *, usage: bool = False
) -> str:
    """An argument as click writes it: `SERVICE`, `[SERVICE]` when optional, `RUN_ID...`.

    typer 0.28 writes a required argument as `{service}` in the usage line; at 3 a.m. the
    usage line must read like every other command line tool's.
    """
    var = self.metavar or (self.name or "").upper()
    if usage and not self.required and not var.startswith("["):
        var = f"[{var}]"
    if self.nargs != 1:
        var += "..."
    return var


typer.core.TyperArgument.make_metavar = _usage_metavar  # type: ignore[method-assign]  # one place, see the docstring


def _version(value: bool) -> None:
    if value:
        from crystal_runbook import __version__

        print(f"crystal-runbook {__version__}")
        raise typer.Exit(0)


app = typer.Typer(
    name="crystal-runbook",
    help=(
        "Emergency rollback and incident runbooks: every change verified, every run "
        "resumable, every action idempotent.\n\n"
        "Example: crystal-runbook rollback maia --env production"
    ),
    no_args_is_help=True,
    add_completion=True,  # typer's own --install-completion / --show-completion
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root(
    ctx: typer.Context,
    env: Annotated[
        str | None,
        typer.Option(
            "--env",
            help="Environment (default: $CRYSTAL_ENV, else default_environment of the inventory).",
        ),
    ] = None,
    inventory: Annotated[
        Path | None,
        typer.Option(
            "--inventory",
            help="Inventory directory (default: ./inventory, else the shipped one).",
        ),
    ] = None,
    runbooks_dir: Annotated[
        Path | None,
        typer.Option(
            "--runbooks", help="Runbooks directory (default: ./runbooks, else the shipped ones)."
        ),
    ] = None,
    output: Annotated[
        str, typer.Option("--output", "-o", help="Output format: text or json.")
    ] = "text",
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir", help="State directory (default: $CRYSTAL_STATE_DIR, else ./.crystal)."
        ),
    ] = None,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More detail (repeat for more).")
    ] = 0,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Global options; they may also follow the command name."""
    if output not in ("text", "json"):
        raise _common.fail(f"--output must be text or json, not {output!r}", code=2)
    ctx.obj = _common.GlobalOptions(
        env=env or os.environ.get("CRYSTAL_ENV") or None,
        inventory=inventory or _common.default_dir("inventory"),
        runbooks=runbooks_dir or _common.default_dir("runbooks"),
        output=output,
        state_dir=state_dir or Path(os.environ.get("CRYSTAL_STATE_DIR") or ".crystal"),
        verbose=verbose,
    )


oncall.register(app)
demo.register(app)
runbooks.register(app)
catalog.register(app)
runs.register(app)
outbox.register(app)
incident.register(app)
watch.register(app)
serve.register(app)
drill.register(app)
readiness.register(app)
db.register(app)
app.add_typer(sandbox.app, name="sandbox")


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point. SIGTERM is handled like Ctrl-C everywhere: every command
    ends on it as on Ctrl-C (quietly, with its exit code), never with a traceback."""
    import signal

    with contextlib.suppress(ValueError):  # not the main thread (a test harness)
        signal.signal(signal.SIGTERM, _sigterm)
    args = list(sys.argv[1:] if argv is None else argv)
    with _common.redacted_stdio():  # output echoes input, and input may hold a secret
        for position, arg in enumerate(args, start=1):
            if "\x00" in arg:  # no path, name or value holds one; the OS refuses it in paths
                raise SystemExit(
                    _common.fail(
                        f"argument {position} contains a NUL character",
                        code=2,
                        hint="remove it (it cannot be part of a path, a name or a value)",
                    ).exit_code
                )
        args = _hoist.hoist_global_options(args)
        try:
            app(args=args, prog_name="crystal-runbook")
        except Exception as exc:  # noqa: BLE001 - the last line of defence: no traceback, ever
            raise SystemExit(_common.unexpected(exc)) from None
