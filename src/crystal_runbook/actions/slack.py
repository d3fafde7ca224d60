"""`slack.notify`: tell people what a run is doing, in Slack or, without a token, on the console
and in the outbox.

A notification is a step like any other (check, apply), with two rules of its own:

- it is idempotent per run and step: ``check`` finds an earlier delivery of the same message
  of the same run and step (by its idempotency key, in the outbox or its ``sent/`` records),
  so a second run of the step, or `resume` after a crash, does not post twice;
- it never fails a rollback: a delivery that finally fails is queued in the outbox and said
  loudly, and the step is ok with ``{"outbox": path, "error": message}`` as outputs;
- it never holds a rollback up by more than about a second: a slower Slack is waited for in
  the background (outputs ``{"outbox": path, "pending": reason}``, replaced in the journal by
  the final outputs when the delivery ends); an outbox that cannot be written leaves the
  message printed on the console, the step ok with ``{"error": ...}``.

With ``file:`` the message shares a file (an incident document) in its thread once it is
posted. The file must exist and be small enough (``MAX_FILE_BYTES``) when the step's check
runs: a wrong path is the runbook's mistake and fails the step before anything is posted.
An upload that fails afterwards is Slack's problem and, like a message, is only queued.

Outputs: ``{"channel", "ts", "permalink"}`` once on Slack (channel is Slack's channel id),
plus ``{"file_id", "file_permalink"}`` once its file is shared; ``{"outbox": path}`` when
queued because no token is configured.

The delivery itself (Slack's Web API, retries, the outbox) is ``notify.slack.Notifier``; the
service layer wires it in as ``Notify.notifier`` (actions and notify are sibling layers that
do not import each other), the way it gives ``metrics.check`` its triggers file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from pydantic import Field, field_validator, model_validator

from crystal_runbook import errors
from crystal_runbook.engine.model import STEP_ID
from crystal_runbook.engine.registry import Action, Args, Check, Outcome, StepContext

MAX_TEXT = 4000
"""Characters of `text`: Slack truncates longer messages in notifications and previews."""
MAX_BLOCKS = 50
"""Slack's own limit of blocks in one message."""
MAX_PATH = 1000
"""Characters of `file` (the source checklist's input limit)."""
MAX_FILE_BYTES = 5 * 1024 * 1024
"""Bytes of a file to share: an incident document is tens of kilobytes; a file of megabytes
is a mistake (a log, a dump) that would hold the run up while it uploads."""
MAX_TITLE = 250
"""Characters of `file_title`: what Slack shows above the file."""


class Notifier(Protocol):
    """What `slack.notify` needs from the notification plumbing (``notify.slack.Notifier``).

    ``origin`` is ``{run_id, step_id, env, service, actor}``; ``notice`` is ``{channel, text,
    blocks, thread_ts, reply_to, file, file_title}``.
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
        settled: Callable[[str, dict[str, Any]], None] | None = None,
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
    file: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_PATH,
        description="Path of a file to upload into the message's thread once it is posted "
        "(e.g. {{ steps.document.outputs.markdown }}); at most 5 MB.",
    )
    file_title: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_TITLE,
        description="Title Slack shows for the file (default: its name); needs `file`.",
    )
    live: bool = Field(
        default=False,
        description="This message is the run's live progress message: with a token, every "
        "step's state and time is kept below its text (chat.update), and the run's other "
        "messages reply in its thread (docs/slack.md). The first such step of a run counts.",
    )

    @field_validator("thread_ts", "reply_to", "channel", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value in ("", None) else value

    @field_validator("file", mode="after")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\0" in value:
            raise ValueError("a file path cannot contain a NUL character")
        return value

    @model_validator(mode="after")
    def _one_thread(self) -> NotifyArgs:
        if self.thread_ts and self.reply_to:
            raise ValueError("give thread_ts or reply_to, not both")
        if self.file_title is not None and self.file is None:
            raise ValueError("file_title needs file (the file it names)")
        return self


class Notify(Action):
    """Send a Slack message (console and outbox without SLACK_BOT_TOKEN); never fails a run."""

    name = "slack.notify"
    summary = (
        "Notify Slack (with: {text, channel, reply_to | thread_ts, blocks, file, file_title}); "
        "without SLACK_BOT_TOKEN: console and outbox. Never fails the run."
    )
    Args = NotifyArgs
    outputs = (
        "channel",
        "ts",
        "permalink",
        "file_id",
        "file_permalink",
        "outbox",
        "error",
        "pending",
    )
    markup = {"text": "slack", "blocks": "slack"}
    """What users typed (a reason, an actor) is text in the message: `&`, `<`, `>` escaped
    as Slack asks, so a `<!channel>` in a --reason pages nobody."""
    default_timeout = 20.0
    """Seconds a notification may hold a run up, retries included, before it is queued."""
    recheck_on_resume = False
    """A notice sent is not undone by another run, and the outbox that remembers it may be
    another machine's (a `serve` replica that died): resume never calls it drift."""

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
            "file": args.file,
            "file_title": args.file_title,
        }

    def check(self, args: Any, ctx: StepContext) -> Check:
        notifier = self._notifier()
        notice = self._notice(args, ctx)
        found = notifier.find(self._origin(ctx), notice)
        if found is not None:  # delivered before: the file need not be there any more
            summary, outputs = found
            return Check(satisfied=True, summary=summary, outputs=outputs)
        if args.file is not None:
            check_file(args.file)
        return Check(satisfied=False, summary=notifier.describe(notice))

    def apply(self, args: Any, ctx: StepContext, check: Check) -> Outcome:
        summary, outputs = self._notifier().send(
            self._origin(ctx),
            self._notice(args, ctx),
            deadline=ctx.deadline,
            progress=ctx.progress,
            settled=ctx.settle,
        )
        return Outcome(changed=True, summary=summary, outputs=outputs)


def check_file(file: str) -> None:
    """Refuse a `file:` that cannot be shared: missing, not a regular file, empty or too big.

    Raises:
        errors.PermanentActionError: what is wrong with which path, and what to do.
    """
    path = Path(file)
    where = f"`file: {file}`"  # the executor adds the step's id
    relative = (
        f" (a relative path is relative to the working directory, {Path.cwd()})"
        if not path.is_absolute()
        else ""
    )
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise errors.PermanentActionError(
            f"{where}: no such file{relative}",
            hint="give the path of a file an earlier step wrote, e.g. "
            '"{{ steps.document.outputs.markdown }}" of an incident.write step',
        ) from None
    except OSError as exc:
        raise errors.PermanentActionError(
            f"{where}: cannot read it: {exc.strerror}",
            hint="check the path and the permissions of the file and its directories",
        ) from None
    if not path.is_file():
        raise errors.PermanentActionError(
            f"{where}: not a regular file{relative}",
            hint="give the path of one file (a directory cannot be uploaded)",
        )
    if stat.st_size == 0:
        raise errors.PermanentActionError(
            f"{where}: the file is empty; Slack refuses empty uploads",
            hint="check that the step that writes it ran and wrote something",
        )
    if stat.st_size > MAX_FILE_BYTES:
        raise errors.PermanentActionError(
            f"{where}: the file is {stat.st_size / 1024 / 1024:.1f} MB, more than the "
            f"{MAX_FILE_BYTES // 1024 // 1024} MB slack.notify uploads",
            hint="share a smaller file (a summary or the tail of a log), or put the big one "
            "somewhere people can reach and link it in `text:`",
        )
