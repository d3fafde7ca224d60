"""`outbox`, `outbox list`, `outbox flush`: notifications that are not on Slack yet.

Without `SLACK_BOT_TOKEN`, or when Slack could not be reached, `slack.notify` keeps each
message in `<state dir>/outbox/`; `flush` delivers them once a token is configured.
"""


import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from crystal_runbook.cli import _common

if TYPE_CHECKING:
    from crystal_runbook.notify import outbox as outbox_mod
    from crystal_runbook.notify import slack
    from crystal_runbook.service import Workspace

app = typer.Typer(
    help="Notifications not delivered to Slack yet (the outbox).", invoke_without_command=True
)

SentOption = Annotated[
    bool, typer.Option("--sent", help="Also show notifications already delivered.")
]


def _workspace(opts: _common.GlobalOptions) -> "Workspace":
    from crystal_runbook import service

    return service.Workspace(
        state_dir=opts.state_dir,
        inventory_dir=opts.inventory,
        runbooks_dir=opts.runbooks,
        env=opts.env,
    )


def _entry_json(entry: "outbox_mod.Entry", path: str) -> dict[str, Any]:
    return {**entry.to_json(), "path": path}


def _show(opts: _common.GlobalOptions, listing: "slack.Listing") -> None:
    from crystal_runbook.notify import outbox as outbox_mod

    box = outbox_mod.Outbox(listing.root)
    entries = [*listing.waiting, *listing.sent]
    if opts.json:
        print(json.dumps([_entry_json(e, str(box.path(e))) for e in entries], indent=2))
    else:
        if entries:
            print(
                f"{'CREATED (UTC)':<19}  {'STATUS':<8} {'CHANNEL':<20} {'RUN/STEP':<28} TEXT"
            )
        for entry in entries:
            text = " ".join(entry.message.text.split())
            text = text if len(text) <= 60 else text[:59] + "…"
            status = entry.status
            if status == outbox_mod.SENDING:
                status = "unknown"  # an attempt may have posted it; flush looks first
            channel = entry.message.channel or "-"
            origin = f"{entry.origin.run_id}/{entry.origin.step_id}"
            print(
                f"{entry.created_at[:19].replace('T', ' ')}  {status:<8} {channel:<20} "
                f"{origin:<28} {text}"
            )
            if entry.status != outbox_mod.SENT and entry.last_error:
                print(f"    last error: {entry.last_error.splitlines()[0]}")
    for broken in listing.broken:
        print(f"warning: cannot read {broken.path}: {broken.error}", file=sys.stderr)
    count = len(listing.waiting)
    where = listing.root
    if not count:
        print(f"nothing waits in {where}", file=sys.stderr)
    elif listing.configured:
        print(
            f"{count} waiting in {where}; `crystal-runbook outbox flush` delivers them",
            file=sys.stderr,
        )
    else:
        why = listing.problem or "SLACK_BOT_TOKEN is not set"
        print(
            f"{count} waiting in {where}; {why}: export SLACK_BOT_TOKEN, then "
            "`crystal-runbook outbox flush`",
            file=sys.stderr,
        )


def _list(ctx: typer.Context, sent: bool) -> None:
    opts = _common.options(ctx)
    with _common.handle_errors():
        from crystal_runbook import service

        ws = _workspace(opts)
        try:
            _show(opts, service.incidents.outbox(ws, include_sent=sent))
        finally:
            ws.close()


@app.callback()
def outbox_cmd(ctx: typer.Context, sent: SentOption = False) -> None:
    """List notifications waiting in the outbox (same as `outbox list`).

    Example: crystal-runbook outbox --sent
    """
    if ctx.invoked_subcommand is None:
        _list(ctx, sent)


@app.command("list")
def list_cmd(ctx: typer.Context, sent: SentOption = False) -> None:
    """List notifications waiting in the outbox, oldest first.

    Example: crystal-runbook outbox list -o json
    """
    _list(ctx, sent)


@app.command("flush")
def flush_cmd(ctx: typer.Context) -> None:
    """Deliver the waiting notifications to Slack (needs SLACK_BOT_TOKEN); idempotent.

    Each delivered one moves to outbox/sent/. Exit 0 when all were delivered (or another
    process is delivering them), 1 when some could not be (they stay, with the reason),
    2 without a token.

    Example: SLACK_BOT_TOKEN=xoxb-... crystal-runbook outbox flush
    """
    opts = _common.options(ctx)
    with _common.handle_errors():
        from crystal_runbook import service

        ws = _workspace(opts)
        try:
            results = service.incidents.flush_outbox(ws,
                progress=lambda message: print(f"  {message}", file=sys.stderr)
            )
        finally:
            ws.close()
    if opts.json:
        print(
            json.dumps(
                [
                    {
                        "key": r.key,
                        "status": r.status,
                        "summary": r.summary,
                        "outputs": r.outputs,
                        "path": str(r.path) if r.path else None,
                        "error": r.error,
                    }
                    for r in results
                ],
                indent=2,
            )
        )
    else:
        for result in results:
            print(f"{result.status:<10} {result.key}  {result.summary}")
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    print(f"outbox flush: {summary or 'nothing to deliver'}", file=sys.stderr)
    if counts.get("failed") or counts.get("unreadable"):
        raise typer.Exit(1)


def register(root: typer.Typer) -> None:
    """Add `outbox` to the root app."""
    root.add_typer(app, name="outbox")
