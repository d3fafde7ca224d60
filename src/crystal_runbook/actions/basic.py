"""Actions that need no backend: `wait` and `approval`.

`wait` gives a change time to settle where there is nothing better to watch; `approval`
stops a run until a person types yes (or `--yes` was given), for the steps an on-call
engineer must see before they happen.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import Field

from crystal_runbook import errors
from crystal_runbook.engine import durations
from crystal_runbook.engine.model import MAX_INPUT_LENGTH, Duration
from crystal_runbook.engine.registry import Action, Args, Check, Outcome, StepContext


class WaitArgs(Args):
    seconds: Duration = Field(description="How long to wait (max 1h).", le=3600)


class Wait(Action):
    """Wait a fixed time; returns early if the run is interrupted."""

    name = "wait"
    summary = "Wait a fixed time (with: {seconds: 30s})."
    Args = WaitArgs
    outputs = ("waited_seconds",)

    def check(self, args: Any, ctx: StepContext) -> Check:
        return Check(satisfied=False, summary=f"wait {durations.format_duration(args.seconds)}")

    def apply(self, args: Any, ctx: StepContext, check: Check) -> Outcome:
        started = time.monotonic()
        ctx.cancelled.wait(args.seconds)
        waited = time.monotonic() - started
        return Outcome(
            changed=False,
            summary=f"waited {durations.format_duration(waited)}",
            outputs={"waited_seconds": round(waited, 3)},
        )


class ApprovalArgs(Args):
    prompt: str = Field(default="Continue?", max_length=MAX_INPUT_LENGTH)


class Approval(Action):
    """Ask a person to type yes; `--yes` answers in advance; elsewhere it is refused."""

    name = "approval"
    summary = "Stop until a person approves (interactive yes, or --yes)."
    Args = ApprovalArgs
    outputs = ("approved_by",)
    default_timeout = 3600.0

    def check(self, args: Any, ctx: StepContext) -> Check:
        if ctx.assume_yes:
            return Check(
                satisfied=True,
                summary=f"approved in advance by --yes ({ctx.actor})",
                outputs={"approved_by": ctx.actor},
            )
        return Check(satisfied=False, summary=f"ask for approval: {args.prompt}")

    def apply(self, args: Any, ctx: StepContext, check: Check) -> Outcome:
        if not (ctx.interactive and ctx.confirm is not None):
            raise errors.ConfirmationRequired(
                f"step {ctx.step_id!r} needs approval ({args.prompt}) and nobody can answer here",
                hint=f"re-run in a terminal, or `crystal-runbook resume {ctx.run_id} --yes`",
            )
        if not ctx.confirm(f"{args.prompt} Type yes to approve"):
            raise errors.PermanentActionError(
                f"approval refused by {ctx.actor}: {args.prompt}",
                hint=f"nothing after it ran; `crystal-runbook resume {ctx.run_id}` asks again",
            )
        return Outcome(
            changed=False, summary=f"approved by {ctx.actor}", outputs={"approved_by": ctx.actor}
        )
