"""Delivering one outbox entry to Slack: post, look before posting again, upload, record.

Why: a notification of a running step and an entry `outbox flush` picks up go through the
same steps, and the rules that keep a message from appearing twice live here once:

- the entry's delivery lock (``Outbox.claim``) is held while it is delivered, and the entry
  is re-read under it;
- before the request the entry is marked "sending"; an entry found "sending" (the process
  died in between, or the last failure may have posted it) is first looked up on Slack by
  its metadata key and posted only if it is not there;
- a notification with a file is "posted" (still waiting) between its message and its
  upload, so a failed upload is retried by `outbox flush` without posting the message again;
- a failure is kept in the outbox with its reason and said loudly; nothing here raises.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from crystal_runbook import errors
from crystal_runbook.engine.secrets import Redactor
from crystal_runbook.notify import notices, slackapi, slackweb
from crystal_runbook.notify import outbox as outbox_mod

Progress = Callable[[str], None]


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
    unreachable: bool = False
    """The failure was Slack not answering (timeouts, connections), not a refusal."""


class Courier:
    """Delivers outbox entries to Slack (the token is set when this is used)."""

    def __init__(
        self,
        *,
        outbox: outbox_mod.Outbox,
        redactor: Redactor,
        settings: slackapi.SlackSettings,
        web: Callable[[], slackweb.SlackWeb],
        stream: Callable[[], TextIO],
    ) -> None:
        self.outbox = outbox
        self.redactor = redactor
        self.settings = settings
        self._web = web
        self._stream = stream

    @property
    def web(self) -> slackweb.SlackWeb:
        return self._web()

    def deliver(
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
                    f"another process is delivering it; it stays in {notices.display(path)}",
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
        if entry.message.update:  # a parked live progress state: replace, do not post
            return self._update_held(entry, deadline=deadline, progress=progress)
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
                if found is None and thread_ts is not None and not entry.message.thread_ts:
                    # a reply tried while the message it answers was not known to be on
                    # Slack went to the channel itself (``_route``, live): look there too
                    found = web.find_quietly(
                        entry, channel=channel, thread_ts=None, deadline=deadline, progress=progress
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

    def _update_held(
        self, entry: outbox_mod.Entry, *, deadline: float | None, progress: Progress
    ) -> Result:
        """Replace the message this update is for with its text and blocks, once that
        message is on Slack. ``chat.update`` is idempotent: no look-up before a retry."""
        step = entry.message.reply_to or ""
        parent = self.outbox.get(entry.parent_key) if entry.parent_key else None
        if parent is None or parent.delivery is None:
            parent = self.outbox.of_step(entry.origin.run_id, step) or parent
        path = self.outbox.path(entry)
        if parent is None:
            error = errors.ConfigurationError(
                f"the message this progress updates (step {step} of run {entry.origin.run_id}) "
                "is not in the outbox",
                hint=f"delete {notices.display(path)}: there is nothing to update",
            )
            return self._failed(entry, error, maybe_posted=False, live=False)
        if parent.delivery is None:
            return Result(
                entry.key, "skipped", f"waits for {parent.key} (the message it updates)",
                {"outbox": str(path)}, path,
            )
        where = parent.delivery
        try:
            self.web.update(
                channel=where.channel,
                ts=where.ts,
                text=entry.message.text,
                blocks=entry.message.blocks,
                deadline=deadline,
                progress=progress,
            )
        except errors.CrystalError as exc:
            return self._failed(entry, exc, maybe_posted=False, live=False)
        delivery = outbox_mod.Delivery(where.channel, where.ts, where.permalink, outbox_mod.now())
        return self._sent(self.outbox.mark_sent(entry, delivery), note="updated in place")

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
        assert delivery is not None  # noqa: S101 - only "posted" entries upload  # nosec B101
        assert file is not None  # noqa: S101 - only entries with a file are "posted"  # nosec B101
        path = Path(file)
        entry = entry.with_(upload_attempts=entry.upload_attempts + 1)
        self.outbox.write(entry)  # the attempt is on record before the request
        try:
            if not path.is_file():
                raise errors.PermanentActionError(
                    f"uploading {path.name}: {file} is not there any more",
                    hint=f"the outbox keeps the file's path, not a copy: put the file back at "
                    f"{file} and run `crystal-runbook outbox flush`, or delete "
                    f"{notices.display(self.outbox.path(entry))} to give up on the upload (the "
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
        assert entry.delivery is not None  # noqa: S101 - mark_sent always sets it  # nosec B101
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
        assert entry.delivery is not None  # noqa: S101 - only "posted" entries upload  # nosec B101
        message = self.redactor.text(exc.message)
        kept = entry.with_(last_error=self.redactor.text(str(exc)))
        path = self.outbox.write(kept)
        posted = entry.delivery.permalink or f"{entry.delivery.channel} {entry.delivery.ts}"
        if live:
            self._show(
                kept,
                headline=f"WARNING: Slack file NOT UPLOADED: {message}",
                footer=f"the message is posted: {posted}\n"
                + (f"hint: {self.redactor.text(exc.hint)}\n" if exc.hint else "")
                + f"kept in {notices.display(path)}; `crystal-runbook outbox flush` uploads the "
                "file (without posting the message again)",
            )
        return Result(
            entry.key,
            "failed",
            f"posted to Slack: {posted}, but the file was NOT uploaded ({message}); kept in "
            f"{notices.display(path)}",
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
            self._show(
                kept,
                headline=f"WARNING: Slack notification NOT DELIVERED: {message}",
                footer=(f"hint: {self.redactor.text(exc.hint)}\n" if exc.hint else "")
                + f"kept in {notices.display(path)}; `crystal-runbook outbox flush` retries it",
            )
        return Result(
            entry.key,
            "failed",
            f"NOT delivered to Slack ({message}); kept in {notices.display(path)}",
            {"outbox": str(path), "error": message},
            path,
            error=self.redactor.text(str(exc)),
            unreachable=isinstance(exc, slackapi.SlackUnavailable) and exc.retry_after is None,
        )

    def _show(self, entry: outbox_mod.Entry, *, headline: str, footer: str) -> None:
        notices.show(
            self._stream(),
            entry,
            path=self.outbox.path(entry),
            headline=headline,
            footer=footer,
        )
