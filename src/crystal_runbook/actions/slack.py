"""`slack.notify`: tell people what a run is doing, in Slack or, without a token, on the console
and in the outbox.

A notification is a step like any other (check, apply), with two rules of its own:

- it is idempotent per run and step: ``check`` finds an earlier delivery of the same message
  of the same run and step (by its idempotency key, in the outbox or its ``sent/`` records),
  so a second run of the step, or `resume` after a crash, does not post twice;
- it never fails a rollback: a delivery that finally fails is queued in the outbox and said
  loudly, and the step is ok with ``{"outbox": path, "error": message}`` as outputs.

Outputs: ``{"channel", "ts", "permalink"}`` once on Slack (channel is Slack's channel id);
``{"outbox": path}`` when queued because no token is configured.

The delivery itself (Slack's Web API, retries, the outbox) is ``notify.slack.Notifier``; the
service layer wires it in as ``Notify.notifier`` (actions and notify are sibling layers that
do not import each other), the way it gives ``metrics.check`` its triggers file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from pydantic import Field, field_validator, model_validator

from crystal_runbook import errors
from crystal_runbook.engine.model import STEP_ID
from crystal_runbook.engine.registry import Action, Args, Check, Outcome, StepContext

MAX_TEXT = 4000
"""Characters of `text`: Slack truncates longer messages in notifications and previews."""
MAX_BLOCKS = 50
"""Slack's own limit of blocks in one message."""


class Notifier(Protocol):
    """What `slack.notify` needs from the notification plumbing (``notify.slack.Notifier``).

    ``origin`` is ``{run_id, step_id, env, service, actor}``; ``notice`` is ``{channel, text,
    blocks, thread_ts, reply_to}``.
    """

    def describe(self, notice: Mapping[str, Any]) -> str: ...

    def find(
        self, origin: Mapping[str, Any], notice: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any]] | None: ...

    def send(
        self,
        origin: Mapping[str, Any],
        notice: Mapping[str, Any],
        *,
        deadline: float | None,
        progress: Callable[[str], None],
    ) -> tuple[str, dict[str, Any]]: ...


class NotifyArgs(Args):
    text: str = Field(
        min_length=1,
        max_length=MAX_TEXT,
        description="The message (Slack mrkdwn); also the notification text when blocks are given.",
    )
    channel: str | None = Field(
        default=None,
        pattern=r"^#?[^\s#,]{1,80}$",
        description="Channel name (#maia-incidents) or id; default: target.slack_channel.",
    )
    thread_ts: str | None = Field(
        default=None,
        pattern=r"^\d{9,11}\.\d{1,6}$",
        description="Reply in the thread of this message ts (empty: not a reply).",
    )
    reply_to: str | None = Field(
        default=None,
        pattern=STEP_ID,
        description="Reply in the thread of the message an earlier slack.notify step of this "
        "run sent (its id); works in the outbox too: `outbox flush` keeps the thread.",
    )
    blocks: list[dict[str, Any]] | None = Field(
        default=None, max_length=MAX_BLOCKS, description="Slack Block Kit blocks (optional)."
    )

    @field_validator("thread_ts", "reply_to", "channel", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value in ("", None) else value

    @model_validator(mode="after")
    def _one_thread(self) -> NotifyArgs:
        if self.thread_ts and self.reply_to:
            raise ValueError("give thread_ts or reply_to, not both")
        return self


class Notify(Action):
    """Send a Slack message (console and outbox without SLACK_BOT_TOKEN); never fails a run."""

    name = "slack.notify"
    summary = (
        "Notify Slack (with: {text, channel, reply_to | thread_ts, blocks}); without "
        "SLACK_BOT_TOKEN: console and outbox. Never fails the run."
    )
    Args = NotifyArgs
    outputs = ("channel", "ts", "permalink", "outbox", "error")
    default_timeout = 20.0
    """Seconds a notification may hold a run up, retries included, before it is queued."""

    notifier: Notifier | None = None
    """Set by the service layer (``service.Workspace.registry``)."""

    def _notifier(self) -> Notifier:
        if self.notifier is None:
            raise errors.ConfigurationError(
                "slack.notify has no notifier wired in",
                hint="run runbooks through crystal_runbook.service.Workspace, which wires "
                "notify.slack.Notifier into this action",
            )
        return self.notifier

    @staticmethod
    def _origin(ctx: StepContext) -> dict[str, Any]:
        return {
            "run_id": ctx.run_id,
            "step_id": ctx.step_id,
            "env": ctx.env,
            "service": ctx.service,
            "actor": ctx.actor,
        }

    @staticmethod
    def _notice(args: NotifyArgs, ctx: StepContext) -> dict[str, Any]:
        channel = args.channel or ctx.target.get("slack_channel") or None
        return {
            "channel": channel,
            "text": args.text,
            "blocks": args.blocks,
            "thread_ts": args.thread_ts,
            "reply_to": args.reply_to,
        }

    def check(self, args: Any, ctx: StepContext) -> Check:
        notifier = self._notifier()
        notice = self._notice(args, ctx)
        found = notifier.find(self._origin(ctx), notice)
        if found is not None:
            summary, outputs = found
            return Check(satisfied=True, summary=summary, outputs=outputs)
        return Check(satisfied=False, summary=notifier.describe(notice))

    def apply(self, args: Any, ctx: StepContext, check: Check) -> Outcome:
        summary, outputs = self._notifier().send(
            self._origin(ctx),
            self._notice(args, ctx),
            deadline=ctx.deadline,
            progress=ctx.progress,
        )
        return Outcome(changed=True, summary=summary, outputs=outputs)
