"""Slack notifications: post them to Slack, or print them and keep them in the outbox.

Why: "users notified" is one of the checklist's rollback verifications, and it must hold on
the embedded defaults too (design.md sections 1, 2 and 6). ``Notifier`` decides per
notification:

- without ``SLACK_BOT_TOKEN`` (the embedded default) it is printed on the console (stderr) and
  queued in the outbox (``notify.outbox``) for `crystal-runbook outbox flush`;
- with a token it is posted (``chat.postMessage`` with its idempotency key in the message
  metadata, then ``chat.getPermalink``) through ``notify.slackapi``; a notification with a
  ``file`` then uploads it into the message's thread (``slackapi.upload_file``);
- a delivery that finally fails (bad token, unknown channel, Slack down past the deadline) is
  kept in the outbox and said loudly; it never raises, because a notification must never
  block a rollback;
- a step waits for Slack at most ``background.INLINE_SECONDS``: a slower delivery goes on in
  the background (``notify.background``) and its final outputs are journalled when it ends;
- an outbox that cannot be written (a full disk, a file in its place) does not stop anything:
  the message is still printed and delivered, and the warning says it was not kept.

Each notification is sent at most once per run and step, as far as Slack allows: its outbox
entry is named by its key, and ``notify.delivery`` (shared by a running step and `outbox
flush`) looks on Slack before it posts an entry an earlier attempt may have posted.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TextIO

from crystal_runbook import errors
from crystal_runbook.engine import templating
from crystal_runbook.engine.secrets import Redactor
from crystal_runbook.notify import background, delivery, notices, slackapi, slackweb
from crystal_runbook.notify import outbox as outbox_mod

Progress = Callable[[str], None]
RETRY_WHEN_DOWN = 2.0
"""Seconds a notification tries Slack once an earlier one of this process found Slack not
answering: one quick try (Slack may be back), not the step's whole timeout again."""
DRAIN_SECONDS = 30.0
"""How long the end of a command waits for deliveries still going on in the background."""


def _quiet(_message: str) -> None:
    return None


Result = delivery.Result


@dataclass(frozen=True)
class Listing:
    """The outbox as `crystal-runbook outbox list` shows it."""

    root: Path
    configured: bool
    """Whether a token is set (else `flush` cannot deliver anything)."""
    problem: str | None
    waiting: list[outbox_mod.Entry]
    sent: list[outbox_mod.Entry]
    broken: list[outbox_mod.Broken]


class Notifier:
    """Delivers notifications: to Slack with a token, else to the console and the outbox.

    This is the seam ``slack.notify`` uses (the service layer wires it into the action):
    ``describe``, ``find`` and ``send`` take the step's origin (run_id, step_id, env, service,
    actor) and notice (channel, text, blocks, thread_ts, reply_to, file, file_title) as plain
    mappings.
    """

    def __init__(
        self,
        *,
        state_dir: Path,
        redactor: Redactor,
        settings: slackapi.SlackSettings | None = None,
        stream: TextIO | None = None,
        inline_seconds: float = background.INLINE_SECONDS,
    ) -> None:
        self.outbox = outbox_mod.Outbox.of(state_dir)
        self.redactor = redactor
        self.inline_seconds = inline_seconds
        """How long ``send`` waits for Slack before the delivery goes on in the background."""
        self._settings = settings
        self._stream = stream
        self._down: str | None = None
        """Why the last live delivery found Slack not answering (None: it answered)."""

    @cached_property
    def settings(self) -> slackapi.SlackSettings:
        return self._settings or slackapi.SlackSettings.from_env()

    @cached_property
    def web(self) -> slackweb.SlackWeb:
        return slackweb.SlackWeb(self.settings, redactor=self.redactor)

    @cached_property
    def courier(self) -> delivery.Courier:
        """Delivers for `outbox flush`: the outbox must be writable (else nothing is sent)."""
        return self._courier(self.outbox)

    @cached_property
    def worker(self) -> background.Worker:
        return background.Worker()

    def _courier(self, outbox: outbox_mod.Outbox) -> delivery.Courier:
        return delivery.Courier(
            outbox=outbox,
            redactor=self.redactor,
            settings=self.settings,
            web=lambda: self.web,
            stream=lambda: self.stream,
        )

    @property
    def stream(self) -> TextIO:
        # looked up at each write: a live display may have wrapped sys.stderr meanwhile
        return self._stream or sys.stderr

    # -- the seam of slack.notify ------------------------------------------------------------

    def describe(self, notice: Mapping[str, Any]) -> str:
        """What ``send`` would do, for `plan` and the journal's intent."""
        message = self._message(notice)
        where = message.channel or "(no channel)"
        text = notices.clip(templating.slack_unescape(message.text), 80)
        share = f"; then upload {message.file} into its thread" if message.file else ""
        if self.settings.configured:
            return f"post to {where}: {text}{share}"
        reason = self.settings.problem or f"{slackapi.TOKEN_ENV} is not set"
        return f"print and queue for {where} in the outbox ({reason}): {text}{share}"

    def find(
        self, origin: Mapping[str, Any], notice: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any]] | None:
        """(summary, outputs) of an earlier delivery of this message of this run and step,
        or None when it still has to be sent. Local and read-only: an entry an attempt may
        have posted ("sending") is looked up on Slack by ``send``, before it posts."""
        entry = self._tolerant([]).get(self._key(origin, notice))
        if entry is None:
            return None
        path = self.outbox.path(entry)
        if entry.status == outbox_mod.SENT and entry.delivery is not None:
            where = entry.delivery.permalink or f"{entry.delivery.channel} {entry.delivery.ts}"
            return f"already posted: {where}", entry.outputs()
        if not self.settings.configured:
            return f"already queued in {notices.display(path)}", {"outbox": str(path)}
        return None

    def send(
        self,
        origin: Mapping[str, Any],
        notice: Mapping[str, Any],
        *,
        deadline: float | None,
        progress: Progress = _quiet,
        settled: background.Settled | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """Deliver (or queue) the notice; returns (summary, step outputs) within about
        ``inline_seconds``. Never raises for a delivery failure: that is queued in the outbox
        and said loudly.

        Outputs: ``{"channel", "ts", "permalink"}`` when on Slack (with ``"file_id",
        "file_permalink"`` once its file is shared); ``{"outbox": path}`` when queued without
        a token; ``{"outbox": path, "error": message}`` when delivery failed, with the
        message's outputs too when only the file's upload failed; ``{"outbox": path,
        "pending": reason}`` when Slack had not answered in time: the delivery goes on in the
        background, and ``settled(summary, outputs)`` gets its final outputs.
        """
        started = time.monotonic()
        problems: list[str] = []
        outbox = self._tolerant(problems)
        entry = self._entry(origin, notice, outbox)
        if self.settings.problem:
            progress(f"Slack settings ignored: {self.settings.problem}")
        if not self.settings.configured:
            result = self._queue(entry, outbox, problems)
            return result.summary, result.outputs
        if outbox.get(entry.key) is None:
            outbox.write(entry)  # on record before anything is sent: a crash leaves it waiting
        courier = self._courier(outbox)

        def deliver() -> tuple[str, dict[str, Any]]:
            until = deadline
            if self._down is not None:  # one quick try: Slack did not answer the last one
                progress("Slack did not answer the previous notification: one quick try")
                quick = time.monotonic() + RETRY_WHEN_DOWN
                until = quick if until is None else min(until, quick)
            result = courier.deliver(entry.key, fresh=entry, deadline=until, progress=progress)
            if result.unreachable:
                self._down = result.error
            elif result.status == "sent":
                self._down = None
            return self._unkept(entry, result, problems)

        job = self.worker.submit(background.Job(deliver=deliver, settled=settled))
        done = self.worker.wait(job, self.inline_seconds - (time.monotonic() - started))
        if done is not None:
            return done
        path = self.outbox.path(entry)
        reason = f"Slack did not answer within {self.inline_seconds:g} s"
        return (
            f"{reason}: delivering in the background (kept in {notices.display(path)} until "
            "it is delivered)",
            {"outbox": str(path), "pending": f"{reason}; delivering in the background"},
        )

    def drain(self, timeout: float = DRAIN_SECONDS) -> bool:
        """Wait for deliveries still going on in the background; True when none is left
        (what is not delivered stays in the outbox for `outbox flush`)."""
        if "worker" not in self.__dict__:
            return True
        return self.worker.drain(timeout)

    # -- outbox commands ---------------------------------------------------------------------

    def listing(self, *, include_sent: bool = False) -> Listing:
        """What waits in the outbox (and what was delivered, if asked)."""
        waiting, broken = self.outbox.waiting()
        sent: list[outbox_mod.Entry] = []
        if include_sent:
            sent, broken_sent = self.outbox.delivered()
            broken += broken_sent
        return Listing(
            root=self.outbox.root,
            configured=self.settings.configured,
            problem=self.settings.problem,
            waiting=waiting,
            sent=sent,
            broken=broken,
        )

    def flush(self, *, progress: Progress = _quiet) -> list[Result]:
        """Deliver every waiting notification, oldest first; each delivered one moves to
        ``outbox/sent/``. A second flush finds nothing left to do.

        Raises:
            errors.ConfigurationError: no token: nothing can be delivered.
        """
        settings = self.settings
        waiting, broken = self.outbox.waiting()
        if not settings.configured and (waiting or broken):
            raise errors.ConfigurationError(
                f"{slackapi.TOKEN_ENV} is not set"
                + (f" ({settings.problem})" if settings.problem else "")
                + f": {len(waiting)} notification(s) wait in {notices.display(self.outbox.root)}",
                hint=f"export {slackapi.TOKEN_ENV}=xoxb-... (and {slackapi.API_URL_ENV} for "
                "another Web API), then run `crystal-runbook outbox flush` again",
            )
        results = [
            Result(
                b.path.stem, "unreadable", f"cannot read {notices.display(b.path)}: {b.error}", {}
            )
            for b in broken
        ]
        for entry in waiting:
            deadline = time.monotonic() + settings.flush_timeout
            try:
                result = self.courier.deliver(
                    entry.key, fresh=None, deadline=deadline, progress=progress
                )
            except OSError as exc:  # the outbox cannot record it: it is not sent either
                why = f"cannot write {notices.display(self.outbox.root)}: {exc.strerror or exc}"
                result = Result(entry.key, "failed", f"NOT delivered: {why}", {}, error=why)
            results.append(result)
        return results

    # -- for the live progress message (notify.livechannel) ----------------------------------

    def prepare(self, origin: Mapping[str, Any], notice: Mapping[str, Any]) -> outbox_mod.Entry:
        """The outbox entry ``send`` would make of this notice (its key, the message it
        replies to)."""
        return self._entry(origin, notice, self._tolerant([]))

    def keep(self, entry: outbox_mod.Entry, *, reason: str) -> None:
        """Queue ``entry`` for `outbox flush` without trying Slack (known to be down), unless
        the outbox has it already. Never raises: an outbox that cannot be written is said
        in the log."""
        problems: list[str] = []
        outbox = self._tolerant(problems)
        if outbox.get(entry.key) is None:
            outbox.write(entry.with_(last_error=self.redactor.text(reason)))
        for problem in problems:
            self.stream.write(f"WARNING: Slack message NOT KEPT: {problem}\n")

    # -- inside ------------------------------------------------------------------------------

    def _message(self, notice: Mapping[str, Any]) -> outbox_mod.Message:
        blocks = notice.get("blocks")
        file = notice.get("file") or None
        title = notice.get("file_title") or None
        return outbox_mod.Message(
            channel=notice.get("channel") or None,
            text=self.redactor.text(str(notice.get("text", ""))),
            blocks=self.redactor.data(list(blocks)) if blocks else None,
            thread_ts=notice.get("thread_ts") or None,
            reply_to=notice.get("reply_to") or None,
            # absolute: `outbox flush` may run from another directory
            file=os.path.abspath(file) if file else None,
            file_title=self.redactor.text(str(title)) if title and file else None,
        )

    @staticmethod
    def _origin(origin: Mapping[str, Any]) -> outbox_mod.Origin:
        return outbox_mod.Origin(
            run_id=str(origin["run_id"]),
            step_id=str(origin["step_id"]),
            env=origin.get("env"),
            service=origin.get("service"),
            actor=origin.get("actor"),
        )

    def _key(self, origin: Mapping[str, Any], notice: Mapping[str, Any]) -> str:
        return outbox_mod.make_key(self._origin(origin), self._message(notice))

    def _entry(
        self,
        origin: Mapping[str, Any],
        notice: Mapping[str, Any],
        outbox: outbox_mod.Outbox,
    ) -> outbox_mod.Entry:
        where, message = self._origin(origin), self._message(notice)
        parent = None
        if message.reply_to:
            parent = outbox.of_step(where.run_id, message.reply_to)
        return outbox_mod.Entry(
            key=outbox_mod.make_key(where, message),
            message=message,
            origin=where,
            created_at=outbox_mod.now(),
            parent_key=parent.key if parent is not None else None,
        )

    def _tolerant(self, problems: list[str]) -> outbox_mod.TolerantOutbox:
        """The outbox for a running step: what cannot be read or written goes to
        ``problems`` (said loudly by the caller) instead of stopping the step."""

        def failed(what: str, exc: Exception) -> None:
            reason = getattr(exc, "strerror", None) or f"{type(exc).__name__}: {exc}"
            problems.append(self.redactor.text(f"cannot {what}: {reason}"))

        return outbox_mod.TolerantOutbox(self.outbox.root, on_error=failed)

    def _queue(
        self, entry: outbox_mod.Entry, outbox: outbox_mod.Outbox, problems: list[str]
    ) -> Result:
        existing = outbox.get(entry.key)
        if existing is not None:  # the same message of the same run and step: once
            path = outbox.path(existing)
            if existing.delivery is not None:
                return Result(existing.key, "sent", "already posted", existing.outputs())
            return Result(
                entry.key,
                "queued",
                f"already queued in {notices.display(path)}",
                {"outbox": str(path)},
            )
        path = outbox.write(entry)
        reason = self.settings.problem or f"{slackapi.TOKEN_ENV} is not set"
        if problems:
            problem = problems[-1]
            self._show(
                entry,
                headline=f"WARNING: Slack notification NOT QUEUED: {problem}",
                footer=f"not sent ({reason}) and not kept: it is printed here only\n"
                f"hint: free space on the disk of {notices.display(self.outbox.root)} or make "
                "it a writable directory; the run goes on",
            )
            return Result(
                entry.key,
                "failed",
                f"printed on the console only: NOT queued ({problem})",
                {"error": f"not queued in the outbox: {problem}"},
            )
        kept = (
            " and uploads the file (kept by its path, not copied: leave it there until then)"
            if entry.message.file
            else ""
        )
        self._show(
            entry,
            headline=f"Slack notification (not sent: {reason})",
            footer=f"queued: {notices.display(path)} (`crystal-runbook outbox flush` delivers "
            f"it{kept} once a token is set)",
        )
        channel = entry.message.channel or "(no channel)"
        return Result(
            entry.key,
            "queued",
            f"queued for {channel} in {notices.display(path)} ({reason})",
            {"outbox": str(path)},
            path,
        )

    def _unkept(
        self, entry: outbox_mod.Entry, result: Result, problems: list[str]
    ) -> tuple[str, dict[str, Any]]:
        """The result of a live delivery, saying (loudly) when the outbox could not keep it."""
        if not problems:
            return result.summary, result.outputs
        problem = problems[-1]
        outputs = dict(result.outputs)
        if result.status == "sent":
            return f"{result.summary} (not recorded in the outbox: {problem})", outputs
        self._show(
            entry,
            headline=f"WARNING: Slack notification NOT KEPT in the outbox: {problem}",
            footer="it is printed here only; `outbox flush` cannot deliver it later\n"
            f"hint: free space on the disk of {notices.display(self.outbox.root)} or make it "
            "a writable directory",
        )
        outputs.pop("outbox", None)
        error = outputs.get("error") or result.error or result.summary
        outputs["error"] = f"{error}; NOT kept in the outbox ({problem})"
        return f"{result.summary}; NOT kept in the outbox ({problem})", outputs

    def _show(self, entry: outbox_mod.Entry, *, headline: str, footer: str) -> None:
        notices.show(
            self.stream, entry, path=self.outbox.path(entry), headline=headline, footer=footer
        )
