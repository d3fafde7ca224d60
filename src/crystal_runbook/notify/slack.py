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
  block a rollback.

Each notification is sent at most once per run and step, as far as Slack allows: its outbox
entry (named by its key) is marked "sending" before the request and moved to ``sent/`` after;
an entry found "sending" (the process died in between, or the last failure may have posted
it) is first looked up on Slack by its metadata and posted only if it is not there. A
notification with a file is "posted" (still waiting) between its message and its upload, so
a failed upload is retried by `outbox flush` without posting the message again.
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
from crystal_runbook.engine import events
from crystal_runbook.engine.secrets import Redactor
from crystal_runbook.notify import jsonlog, slackapi
from crystal_runbook.notify import outbox as outbox_mod

Progress = Callable[[str], None]


def _quiet(_message: str) -> None:
    return None


# -- notifications: Slack or the outbox -------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """What became of one notification."""

    key: str
    status: str
    """sent (on Slack), queued (no token: console and outbox), failed (delivery failed:
    in the outbox), skipped (`flush` did not try it now), unreadable (a broken outbox file)."""
    summary: str
    outputs: dict[str, Any]
    path: Path | None = None
    error: str | None = None


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
    ) -> None:
        self.outbox = outbox_mod.Outbox.of(state_dir)
        self.redactor = redactor
        self._settings = settings
        self._stream = stream

    @cached_property
    def settings(self) -> slackapi.SlackSettings:
        return self._settings or slackapi.SlackSettings.from_env()

    @cached_property
    def web(self) -> slackapi.SlackWeb:
        return slackapi.SlackWeb(self.settings, redactor=self.redactor)

    @property
    def stream(self) -> TextIO:
        # looked up at each write: a live display may have wrapped sys.stderr meanwhile
        return self._stream or sys.stderr

    # -- the seam of slack.notify ------------------------------------------------------------

    def describe(self, notice: Mapping[str, Any]) -> str:
        """What ``send`` would do, for `plan` and the journal's intent."""
        message = self._message(notice)
        where = message.channel or "(no channel)"
        text = _clip(message.text, 80)
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
        entry = self.outbox.get(self._key(origin, notice))
        if entry is None:
            return None
        path = self.outbox.path(entry)
        if entry.status == outbox_mod.SENT and entry.delivery is not None:
            where = entry.delivery.permalink or f"{entry.delivery.channel} {entry.delivery.ts}"
            return f"already posted: {where}", entry.outputs()
        if not self.settings.configured:
            return f"already queued in {_display(path)}", {"outbox": str(path)}
        return None

    def send(
        self,
        origin: Mapping[str, Any],
        notice: Mapping[str, Any],
        *,
        deadline: float | None,
        progress: Progress = _quiet,
    ) -> tuple[str, dict[str, Any]]:
        """Deliver (or queue) the notice; returns (summary, step outputs). Never raises for a
        delivery failure: that is queued in the outbox and said loudly.

        Outputs: ``{"channel", "ts", "permalink"}`` when on Slack (with ``"file_id",
        "file_permalink"`` once its file is shared); ``{"outbox": path}`` when queued without
        a token; ``{"outbox": path, "error": message}`` when delivery failed, with the
        message's outputs too when only the file's upload failed.
        """
        entry = self._entry(origin, notice)
        if self.settings.problem:
            progress(f"Slack settings ignored: {self.settings.problem}")
        if not self.settings.configured:
            result = self._queue(entry, progress)
        else:
            result = self._deliver(entry.key, fresh=entry, deadline=deadline, progress=progress)
        return result.summary, result.outputs

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
                + f": {len(waiting)} notification(s) wait in {_display(self.outbox.root)}",
                hint=f"export {slackapi.TOKEN_ENV}=xoxb-... (and {slackapi.API_URL_ENV} for "
                "another Web API), then run `crystal-runbook outbox flush` again",
            )
        results = [
            Result(b.path.stem, "unreadable", f"cannot read {_display(b.path)}: {b.error}", {})
            for b in broken
        ]
        for entry in waiting:
            deadline = time.monotonic() + settings.flush_timeout
            results.append(
                self._deliver(entry.key, fresh=None, deadline=deadline, progress=progress)
            )
        return results

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

    def _entry(self, origin: Mapping[str, Any], notice: Mapping[str, Any]) -> outbox_mod.Entry:
        where, message = self._origin(origin), self._message(notice)
        parent = None
        if message.reply_to:
            parent = self.outbox.of_step(where.run_id, message.reply_to)
        return outbox_mod.Entry(
            key=outbox_mod.make_key(where, message),
            message=message,
            origin=where,
            created_at=outbox_mod.now(),
            parent_key=parent.key if parent is not None else None,
        )

    def _queue(self, entry: outbox_mod.Entry, progress: Progress) -> Result:
        existing = self.outbox.get(entry.key)
        if existing is not None:  # the same message of the same run and step: once
            path = self.outbox.path(existing)
            if existing.delivery is not None:
                return Result(existing.key, "sent", "already posted", existing.outputs())
            return Result(
                entry.key, "queued", f"already queued in {_display(path)}", {"outbox": str(path)}
            )
        path = self.outbox.write(entry)
        reason = self.settings.problem or f"{slackapi.TOKEN_ENV} is not set"
        kept = (
            " and uploads the file (kept by its path, not copied: leave it there until then)"
            if entry.message.file
            else ""
        )
        self._print(
            entry,
            headline=f"Slack notification (not sent: {reason})",
            footer=f"queued: {_display(path)} (`crystal-runbook outbox flush` delivers it{kept} "
            "once a token is set)",
        )
        channel = entry.message.channel or "(no channel)"
        return Result(
            entry.key,
            "queued",
            f"queued for {channel} in {_display(path)} ({reason})",
            {"outbox": str(path)},
            path,
        )

    def _deliver(
        self,
        key: str,
        *,
        fresh: outbox_mod.Entry | None,
        deadline: float | None,
        progress: Progress,
    ) -> Result:
        live = fresh is not None  # a step sending now, not `outbox flush`
        left = 30.0 if deadline is None else deadline - time.monotonic()
        wait = min(max(0.0, left), 30.0) if live else 0.0
        with self.outbox.claim(key, wait=wait) as held:
            stored = self.outbox.get(key)
            entry = stored or fresh
            if entry is None:
                return Result(key, "skipped", "no longer in the outbox", {})
            if entry.status == outbox_mod.SENT and entry.delivery is not None:
                return Result(
                    key,
                    "sent",
                    f"already posted: {entry.delivery.permalink or entry.delivery.ts}",
                    entry.outputs(),
                    self.outbox.path(entry),
                )
            if not held:  # the other process owns the file; a new notice is queued beside it
                path = self.outbox.path(entry) if stored else self.outbox.write(entry)
                return Result(
                    key,
                    "skipped",
                    f"another process is delivering it; it stays in {_display(path)}",
                    {"outbox": str(path)},
                    path,
                )
            return self._deliver_held(entry, deadline=deadline, progress=progress, live=live)

    def _route(
        self, entry: outbox_mod.Entry, *, live: bool
    ) -> tuple[str | None, str | None, str | None]:
        """(channel, thread_ts, reason to wait): a reply goes to its parent's channel and
        thread once the parent is on Slack."""
        message = entry.message
        if not message.reply_to or message.thread_ts:
            return message.channel, message.thread_ts, None
        parent = self.outbox.get(entry.parent_key) if entry.parent_key else None
        if parent is None:
            parent = self.outbox.of_step(entry.origin.run_id, message.reply_to)
        if parent is not None and parent.delivery is not None:
            return parent.delivery.channel, parent.delivery.ts, None
        if parent is not None and not live:
            return None, None, f"waits for {parent.key} (the message it replies to)"
        return message.channel, None, None

    def _deliver_held(
        self, entry: outbox_mod.Entry, *, deadline: float | None, progress: Progress, live: bool
    ) -> Result:
        if entry.delivery is not None:  # "posted": the message is on Slack, its file is not
            return self._upload_held(entry, deadline=deadline, progress=progress, live=live)
        channel, thread_ts, wait_for = self._route(entry, live=live)
        if wait_for is not None:
            path = self.outbox.path(entry)
            return Result(entry.key, "skipped", wait_for, {"outbox": str(path)}, path)
        if channel is None:
            error = errors.ConfigurationError(
                "no Slack channel to post to",
                hint="set slack_channel of the service and environment in "
                "inventory/services.yaml, or `channel:` in the step",
            )
            return self._failed(entry, error, maybe_posted=False, live=live)
        try:
            web = self.web
            if entry.status == outbox_mod.SENDING:  # an earlier attempt may have posted it
                found = web.find_quietly(
                    entry,
                    channel=channel,
                    thread_ts=thread_ts,
                    deadline=deadline,
                    progress=progress,
                )
                if found is not None:
                    note = "found on Slack, posted by an earlier attempt"
                    return self._posted(
                        entry, found, deadline=deadline, progress=progress, live=live, note=note
                    )
            entry = entry.with_(
                status=outbox_mod.SENDING,
                attempts=entry.attempts + 1,
                attempted_at=outbox_mod.now(),
            )
            self.outbox.write(entry)
            delivery = web.post(
                entry, channel=channel, thread_ts=thread_ts, deadline=deadline, progress=progress
            )
        except errors.CrystalError as exc:
            maybe = bool(getattr(exc, "maybe_posted", False))
            return self._failed(entry, exc, maybe_posted=maybe, live=live)
        except Exception as exc:  # noqa: BLE001 - a notification's bug must not fail a rollback
            unexpected = errors.ActionError(
                f"posting to {channel}: unexpected {type(exc).__name__}: {exc}",
                hint="this is a bug in crystal-runbook's Slack code; please report it",
            )
            return self._failed(entry, unexpected, maybe_posted=True, live=live)
        return self._posted(entry, delivery, deadline=deadline, progress=progress, live=live)

    def _posted(
        self,
        entry: outbox_mod.Entry,
        delivery: outbox_mod.Delivery,
        *,
        deadline: float | None,
        progress: Progress,
        live: bool,
        note: str = "",
    ) -> Result:
        """The message is on Slack: done, or (with a file) recorded as posted, then upload."""
        if entry.message.file is None:
            return self._sent(self.outbox.mark_sent(entry, delivery), note=note)
        posted = self.outbox.mark_posted(entry, delivery)
        return self._upload_held(posted, deadline=deadline, progress=progress, live=live, note=note)

    def _upload_held(
        self,
        entry: outbox_mod.Entry,
        *,
        deadline: float | None,
        progress: Progress,
        live: bool,
        note: str = "",
    ) -> Result:
        """Upload the file of a posted message into its thread (the thread the message is in,
        or the thread it starts), and record it; a failure keeps the entry waiting."""
        delivery, file = entry.delivery, entry.message.file
        assert delivery is not None  # noqa: S101 - only "posted" entries upload
        assert file is not None  # noqa: S101 - only entries with a file are "posted"
        path = Path(file)
        entry = entry.with_(upload_attempts=entry.upload_attempts + 1)
        self.outbox.write(entry)  # the attempt is on record before the request
        try:
            if not path.is_file():
                raise errors.PermanentActionError(
                    f"uploading {path.name}: {file} is not there any more",
                    hint=f"the outbox keeps the file's path, not a copy: put the file back at "
                    f"{file} and run `crystal-runbook outbox flush`, or delete "
                    f"{_display(self.outbox.path(entry))} to give up on the upload (the "
                    "message itself is posted)",
                )
            uploaded = slackapi.upload_file(
                settings=self.settings,
                redactor=self.redactor,
                channel=delivery.channel,
                filename=path.name,
                path=path,
                title=entry.message.file_title or path.name,
                thread_ts=delivery.thread_ts or delivery.ts,
                deadline=deadline,
                progress=progress,
            )
        except errors.CrystalError as exc:
            return self._upload_failed(entry, exc, live=live)
        except Exception as exc:  # noqa: BLE001 - a notification's bug must not fail a rollback
            unexpected = errors.ActionError(
                f"uploading {path.name}: unexpected {type(exc).__name__}: {exc}",
                hint="this is a bug in crystal-runbook's Slack code; please report it",
            )
            return self._upload_failed(entry, unexpected, live=live)
        share = outbox_mod.FileShare(uploaded.file_id, uploaded.permalink, outbox_mod.now())
        return self._sent(self.outbox.mark_sent(entry, delivery, upload=share), note=note)

    def _sent(self, entry: outbox_mod.Entry, *, note: str = "") -> Result:
        assert entry.delivery is not None  # noqa: S101 - mark_sent always sets it
        where = entry.delivery.permalink or f"{entry.delivery.channel} {entry.delivery.ts}"
        if entry.upload is not None:
            where += f", with {Path(entry.message.file or '').name} "
            where += entry.upload.permalink or entry.upload.file_id
        return Result(
            entry.key,
            "sent",
            f"posted to Slack: {where}" + (f" ({note})" if note else ""),
            entry.outputs(),
            self.outbox.path(entry),
        )

    def _upload_failed(
        self, entry: outbox_mod.Entry, exc: errors.CrystalError, *, live: bool
    ) -> Result:
        """The message is posted but its file is not: keep the entry waiting ("posted") with
        the reason, say so loudly, and give the message's outputs with the error."""
        assert entry.delivery is not None  # noqa: S101 - only "posted" entries upload
        message = self.redactor.text(exc.message)
        kept = entry.with_(last_error=self.redactor.text(str(exc)))
        path = self.outbox.write(kept)
        posted = entry.delivery.permalink or f"{entry.delivery.channel} {entry.delivery.ts}"
        if live:
            self._print(
                kept,
                headline=f"WARNING: Slack file NOT UPLOADED: {message}",
                footer=f"the message is posted: {posted}\n"
                + (f"hint: {self.redactor.text(exc.hint)}\n" if exc.hint else "")
                + f"kept in {_display(path)}; `crystal-runbook outbox flush` uploads the file "
                "(without posting the message again)",
            )
        return Result(
            entry.key,
            "failed",
            f"posted to Slack: {posted}, but the file was NOT uploaded ({message}); kept in "
            f"{_display(path)}",
            {**entry.outputs(), "outbox": str(path), "error": message},
            path,
            error=self.redactor.text(str(exc)),
        )

    def _failed(
        self, entry: outbox_mod.Entry, exc: errors.CrystalError, *, maybe_posted: bool, live: bool
    ) -> Result:
        """Keep the notification in the outbox and say so loudly. An entry whose last attempt
        may have posted it stays "sending", so the next attempt looks on Slack first."""
        message = self.redactor.text(exc.message)
        status = outbox_mod.SENDING if maybe_posted else outbox_mod.PENDING
        kept = entry.with_(status=status, last_error=self.redactor.text(str(exc)))
        path = self.outbox.write(kept)
        if live:
            self._print(
                kept,
                headline=f"WARNING: Slack notification NOT DELIVERED: {message}",
                footer=(f"hint: {self.redactor.text(exc.hint)}\n" if exc.hint else "")
                + f"kept in {_display(path)}; `crystal-runbook outbox flush` retries it",
            )
        return Result(
            entry.key,
            "failed",
            f"NOT delivered to Slack ({message}); kept in {_display(path)}",
            {"outbox": str(path), "error": message},
            path,
            error=self.redactor.text(str(exc)),
        )

    def _print(self, entry: outbox_mod.Entry, *, headline: str, footer: str) -> None:
        """Show the message on the console: a block of lines, or one JSON log line when
        `CRYSTAL_LOG_FORMAT=json` makes stderr a stream of JSON lines."""
        message = entry.message
        if os.environ.get("CRYSTAL_LOG_FORMAT", "").lower() == "json":
            event = events.Event(
                kind="notification",
                run_id=entry.origin.run_id,
                status="warning" if entry.last_error else "queued",
                message=headline,
                at=outbox_mod.now(),
                step_id=entry.origin.step_id,
                uses="slack.notify",
                data={
                    "channel": message.channel,
                    "text": message.text,
                    "reply_to": message.reply_to,
                    "file": message.file,
                    "outbox": str(self.outbox.path(entry)),
                    "detail": footer,
                },
            )
            jsonlog.JsonLogSink(self.stream)(event)
            return
        where = message.channel or "(no channel: set slack_channel in inventory/services.yaml)"
        if message.reply_to:
            where += f", in the thread of step {message.reply_to}"
        lines = [headline, f"  to: {where}"]
        lines += [f"  | {line}" for line in (message.text.splitlines() or [""])]
        if message.file:
            lines.append(f"  file: {message.file}")
        lines += [f"  {line}" for line in footer.splitlines()]
        stream = self.stream
        stream.write("\n".join(lines) + "\n")
        stream.flush()


def _clip(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _display(path: Path) -> str:
    """A path as a user would type it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
