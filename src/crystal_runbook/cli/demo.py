"""`crystal-runbook demo`: a thin shell over ``crystal_runbook.demo`` (narration, progress)."""


import sys
from typing import Annotated

import typer

from crystal_runbook.cli import _common


def demo_cmd(
    ctx: typer.Context,
    timeout: Annotated[
        int, typer.Option("--timeout", min=30, max=1800, help="Give up after this many seconds.")
    ] = 150,
) -> None:
    """The whole story in the sandbox: bad release, trigger fires, verified rollback, document.

    Needs nothing configured: no cluster, no Slack token, no Prometheus.

    Example: crystal-runbook demo
    """
    opts = _common.options(ctx)
    with _common.handle_errors():
        from crystal_runbook import demo
        from crystal_runbook.notify import console

        def say(line: str) -> None:
            print(line, flush=True)

        with _common.sigterm_as_interrupt():
            result = demo.run_demo(
                state_dir=opts.state_dir,
                runbooks_dir=opts.runbooks,
                say=say,
                sink=console.PlainSink(stream=sys.stdout, verbose=opts.verbose),
                timeout=float(timeout),
            )
        if result.rollback_status != "ok":
            raise _common.fail(f"the demo's rollback ended {result.rollback_status}", code=1)
        where = f"--state-dir {result.state_dir}"
        print(
            f"done in {result.took:.0f} s. The demo's journal, outbox and documents are in "
            f"{result.state_dir}. Next: crystal-runbook {where} runs; "
            f"crystal-runbook {where} runs show {result.rollback_run}"
        )


def register(app: typer.Typer) -> None:
    """Add `demo` to the root app."""
    app.command("demo")(demo_cmd)
