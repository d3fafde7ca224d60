"""The Slack app's background jobs: plan and ask, run after Confirm, health, logs, approvals.

Why: Slack gives a command 3 seconds; planning a rollback talks to the cluster and a run
takes minutes. ``service.slack`` decides in the request, then hands one of these to the
background worker. Each job has its own ``Workspace`` (same directories, its own journal
connection and actor ``slack:<user id> (<user name>)``), so a Slack run is exactly a CLI
run: ``service.runs`` with the shipped runbook.

- ``propose``: `plan` the mutation; post the confirm message (what will change, Confirm and
  Cancel) in the channel, or say ephemerally why it would not run.
- ``decided``: a judged button press; update the message, start the run.
- ``run``: the run itself. Its workspace's ``confirm`` is a ``slackapprover.SlackApprover``:
  the run's own confirmation was the Confirm button; a runbook's `approval` step posts
  Approve and Reject buttons in the thread and waits for them (item 6), under the same
  two-person rule.
- ``read_only`` (``slackread``): `health` and `logs`, answered ephemerally.

Nothing here lets a Slack failure touch a run: every Slack call is made through
``slacksay``, which logs and swallows errors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from crystal_runbook import errors
from crystal_runbook.engine import durations, templating
from crystal_runbook.engine import journal as journal_mod
from crystal_runbook.service import approvals as approvals_mod
from crystal_runbook.service import (
    drills,
    runs,
    slackapprover,
    slackparse,
    slackread,
    slacksay,
)
from crystal_runbook.service.slack import (
    RUNBOOKS,
    Button,
    ButtonPress,
    Invocation,
    Reply,
    SlackCommands,
    actor,
    workspace_for,
)

if TYPE_CHECKING:
    from crystal_runbook.engine.executor import PlannedStep

log = logging.getLogger("crystal_runbook.slack")

MAX_CHANGES = 12
"""Changes listed in a confirm message (the plan has them all)."""


# -- dispatch ---------------------------------------------------------------------------------


def job_for(app: SlackCommands, inv: Invocation, cmd: slackparse.Command) -> Callable[[], None]:
    """The background job of an accepted command."""
    if cmd.name in ("health", "logs"):
        return lambda: slackread.read_only(app, inv, cmd)
    return lambda: propose(app, inv, cmd)


def runbook_service(cmd: slackparse.Command) -> str:
    assert cmd.service is not None  # noqa: S101 - the grammar requires it for mutations  # nosec B101
    return cmd.service


def _runbook(cmd: slackparse.Command) -> tuple[str, dict[str, Any]]:
    if cmd.name == "rollback":
        return RUNBOOKS["rollback"], {"service": cmd.service, "reason": cmd.reason}
    if cmd.name == "scale":
        return RUNBOOKS["scale"], {"service": cmd.service, "replicas": cmd.replicas}
    return RUNBOOKS["drill"], {"service": cmd.service}


# -- plan, then ask ---------------------------------------------------------------------------


def _change_lines(planned: list[PlannedStep]) -> list[str]:
    lines: list[str] = []
    for step in planned:
        if step.status != "change":
            continue
        # summaries are plain text as a person reads them: escaped on their way to Slack
        lines.append(f"• *{step.id}*: {templating.slack_escape(step.summary)}")
        lines.extend(
            f"    `{templating.slack_escape(c.render())}`" for c in step.changes[:MAX_CHANGES]
        )
    return lines


def propose(app: SlackCommands, inv: Invocation, cmd: slackparse.Command) -> None:
    """Plan a mutation and post its confirm message (or say why it would not run)."""
    assert cmd.env is not None  # noqa: S101 - set by the dispatcher  # nosec B101
    runbook, params = _runbook(cmd)
    ws = workspace_for(app.base, actor=actor(inv.user_id, inv.user_name), env=cmd.env)
    try:
        if cmd.name == "drill":  # production: the Confirm is the operator's permission
            drills.check_allowed(ws, runbook_service(cmd), cmd.env, allow_production=True)
        _request, planned = runs.plan(ws, runbook, params)
    except errors.CrystalError as exc:
        app.refuse(inv.user_id, inv.user_name, exc.message, command=cmd.describe())
        slacksay.respond(app, inv.response_url, Reply(f":no_entry: `{cmd.describe()}`: {exc}"))
        return
    finally:
        ws.close()
    failing = [p for p in planned if p.status == "error"]
    if failing:
        reasons = [f"• *{p.id}*: {templating.slack_escape(p.summary)}" for p in failing]
        app.refuse(
            inv.user_id,
            inv.user_name,
            "; ".join(p.summary for p in failing),
            command=cmd.describe(),
        )
        slacksay.respond(
            app,
            inv.response_url,
            Reply(f":no_entry: `{cmd.describe()}` would not run; nothing changed:", tuple(reasons)),
        )
        return
    changes = _change_lines(planned)
    if not changes:
        slacksay.respond(
            app, inv.response_url, Reply(f"Nothing to change: `{cmd.describe()}` holds now.")
        )
        return
    approvers = app.access().approvers(cmd.env)
    pending = app.approvals.ask(
        kind="confirm",
        invoker=inv.user_id,
        env=cmd.env,
        command=cmd.name,
        summary=cmd.describe(),
        approvers=approvers,
        data={
            "channel": inv.channel_id,
            "user_name": inv.user_name,
            "runbook": runbook,
            "params": params,
            "response_url": inv.response_url,
            "changes": changes,
        },
    )
    ts = slacksay.post(app, inv.channel_id, confirm_message(pending))
    if ts is None:
        app.approvals.withdraw(pending)
        slacksay.respond(
            app,
            inv.response_url,
            Reply(
                ":no_entry: could not post the confirm message in this channel; nothing ran",
                ("Invite the app to the channel (/invite @crystal-runbook) and try again.",),
            ),
        )
        return
    pending.where = (inv.channel_id, ts)
    app.journal_event(
        "asked",
        f"{inv.user_id} asked for `{cmd.describe()}`; waiting for Confirm",
        user=inv.user_id,
        command=cmd.describe(),
        env=cmd.env,
    )


def confirm_message(pending: approvals_mod.Pending, *, note: str = "") -> Reply:
    """The confirm message: who asks, what will change, who must press what."""
    invoker = f"<@{pending.invoker}>"
    head = f":warning: {invoker} asks to run `{pending.summary}` in *{pending.env}*."
    lines = ["*What will change* (from the plan):", *pending.data.get("changes", [])]
    if note:
        lines.append(note)
        buttons: tuple[Button, ...] = ()
    elif pending.state == "confirmed":
        lines.append(
            f"Confirmed by {invoker}. A second allowed person must press *Approve* "
            "(buttons expire 10 minutes after the request)."
        )
        buttons = (
            Button("approve", "Approve", pending.token, "primary"),
            Button("cancel", "Cancel", pending.token, "danger"),
        )
    else:
        second = " Then a second allowed person must Approve." if pending.approvers >= 2 else ""
        lines.append(f"Only {invoker} can Confirm.{second} The buttons expire in 10 minutes.")
        buttons = (
            Button("confirm", "Confirm", pending.token, "primary"),
            Button("cancel", "Cancel", pending.token, "danger"),
        )
    return Reply(head, tuple(lines), buttons=buttons, ephemeral=False)


# -- decisions --------------------------------------------------------------------------------


def decided(app: SlackCommands, judged: approvals_mod.Press, press: ButtonPress) -> None:
    """Act on an accepted press: update the message, start the run (in the background)."""
    pending = judged.pending
    assert pending is not None  # noqa: S101 - accepted presses carry their decision  # nosec B101
    who = f"<@{press.user_id}>"
    app.journal_event(
        {"start": "approved" if pending.approved_by else "confirmed"}.get(
            judged.outcome, judged.outcome
        ),
        f"{press.user_id} pressed {press.action} on `{pending.summary}` in {pending.env}",
        user=press.user_id,
        user_name=press.user_name,
        command=pending.summary,
        env=pending.env,
        kind=pending.kind,
    )
    if pending.kind == "approval":  # the waiting run goes on by itself
        verdict = "Approved" if judged.outcome == "start" else "Rejected"
        reply = Reply(f"{verdict} by {who}: {pending.summary}", ephemeral=False)
        app.submit("update approval", lambda: slacksay.update(app, pending, reply))
        return
    if judged.outcome == "need_approval":
        app.submit(
            "update confirm", lambda: slacksay.update(app, pending, confirm_message(pending))
        )
        return
    if judged.outcome == "cancelled":
        note = f":no_entry_sign: Cancelled by {who}; nothing ran."
        app.submit(
            "update confirm",
            lambda: slacksay.update(app, pending, confirm_message(pending, note=note)),
        )
        return
    by = f"Confirmed by <@{pending.confirmed_by}>"
    if pending.approved_by:
        by += f", approved by <@{pending.approved_by}>"
    note = f":arrow_forward: {by}. Starting…"
    if not app.submit(f"run {pending.summary}", lambda: run(app, pending, note)):
        busy = f":hourglass: {by}, but crystal-runbook is busy or shutting down; nothing ran."
        slacksay.update(app, pending, confirm_message(pending, note=busy))


def expired(app: SlackCommands, pending: approvals_mod.Pending) -> None:
    """A confirmation or approval nobody decided in time."""
    app.journal_event(
        "expired",
        f"`{pending.summary}` in {pending.env} expired without a decision",
        user=pending.invoker,
        command=pending.summary,
        env=pending.env,
        kind=pending.kind,
    )
    if pending.kind == "confirm":
        note = ":alarm_clock: Expired after 10 minutes; nothing ran. Run the command again."
        slacksay.update(app, pending, confirm_message(pending, note=note))
    else:
        slacksay.update(
            app, pending, Reply(f":alarm_clock: Expired: {pending.summary}", ephemeral=False)
        )


# -- the run ----------------------------------------------------------------------------------


def run(app: SlackCommands, pending: approvals_mod.Pending, note: str) -> None:
    """Run the confirmed mutation, then say how it ended in the confirm message's thread.

    The message's "Starting…" update is its own job: a Slack outage must not delay the run.
    """
    app.submit(
        "update confirm", lambda: slacksay.update(app, pending, confirm_message(pending, note=note))
    )
    assert pending.where is not None  # noqa: S101 - only posted confirmations are pressed  # nosec B101
    channel, ts = pending.where
    data = pending.data
    approver = slackapprover.SlackApprover(app, pending)
    ws = workspace_for(
        app.base,
        actor=actor(pending.invoker, str(data.get("user_name", ""))),
        env=pending.env,
        sink=approver.observe,
        confirm=approver,
        interactive=True,
    )
    approver.journal = ws.journal
    meta = {
        "slack": {
            "channel": channel,
            "ts": ts,
            "invoker": pending.invoker,
            "confirmed_by": pending.confirmed_by,
            "approved_by": pending.approved_by,
        }
    }
    params = dict(data["params"])
    try:
        if pending.command == "drill":  # as `crystal-runbook drill` runs it
            result = drills.run(
                ws,
                str(params["service"]),
                allow_production=True,  # Confirm (and Approve) were the operator's yes
                reason=str(params.get("reason") or ""),
                meta={"trigger": "slack"},
                run_meta=meta,
            )
        else:
            result = runs.run(ws, str(data["runbook"]), params, meta=meta)
    except KeyboardInterrupt:
        slacksay.post(
            app,
            channel,
            Reply(
                ":pause_button: crystal-runbook stopped before the run started; nothing ran.",
                ephemeral=False,
            ),
            thread_ts=ts,
        )
        return
    except errors.CrystalError as exc:
        slacksay.post(
            app,
            channel,
            Reply(f":no_entry: could not start: {exc}", ephemeral=False),
            thread_ts=ts,
        )
        return
    finally:
        ws.close()
    slacksay.post(app, channel, result_reply(result.run, result.error), thread_ts=ts)


def result_reply(run: journal_mod.RunRecord, error: errors.CrystalError | None) -> Reply:
    """How a run ended, for its thread."""
    took = "?"
    if run.ended_at:
        seconds = (
            journal_mod.parse_iso(run.ended_at) - journal_mod.parse_iso(run.started_at)
        ).total_seconds()
        took = durations.format_duration(seconds)
    what = f"{run.runbook} {run.service or ''} in {run.env}".replace("  ", " ")
    if run.status == "ok":
        changed = sum(1 for s in run.steps if s.changed and s.phase == "main")
        return Reply(
            f":white_check_mark: Run `{run.id}` ({what}) ok in {took}: "
            f"{changed} step(s) changed something.",
            ephemeral=False,
        )
    if run.status == "interrupted":
        return Reply(
            f":pause_button: Run `{run.id}` ({what}) interrupted after {took}; continue with "
            f"`crystal-runbook resume {run.id}`.",
            ephemeral=False,
        )
    hint = f" ({error.hint})" if error is not None and error.hint else ""
    return Reply(
        f":x: Run `{run.id}` ({what}) {run.status} after {took}: {run.error}{hint}",
        ephemeral=False,
    )
