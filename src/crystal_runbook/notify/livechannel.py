"""A run's live progress message on Slack: which message, updated how, parked where.

Why: ``notify.live.LiveProgress`` decides when to send; this decides where and keeps the
outbox's guarantees (design.md section 6) for the live message too. The message is:

- the runbook's announcement, when one of its `slack.notify` steps says ``live: true``
  (the shipped rollback and drill): found through the outbox once that step delivered it,
  and updated below its text, so the channel sees one message per run whose thread
  already holds the runbook's replies (outcome, incident document);
- otherwise a message of our own (pseudo step ``outbox.LIVE_STEP``), posted through the
  outbox like any notification (its key in the message metadata, so a resumed run finds
  it instead of posting a second one); step failures and the result then go into its
  thread, as replies of our own.

Updates are ``chat.update`` calls made directly (idempotent, one try each; the pacing is
``LiveProgress``'s). A state Slack did not take is parked in the outbox under one key per
run (``outbox.live_key``), overwriting the previous one, as an update of the live message:
`outbox flush` (or `serve`'s minute flush) applies it once the message itself is on Slack,
after whatever was queued before it. While the run goes, this process holds that key's
delivery lock, so a flush elsewhere never applies an older state over a newer one.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from datetime import UTC, timedelta
from typing import Any

from crystal_runbook import errors
from crystal_runbook.engine import journal
from crystal_runbook.notify import outbox as outbox_mod
from crystal_runbook.notify import slackapi
from crystal_runbook.notify.live import Where
from crystal_runbook.notify.slack import Notifier

log = logging.getLogger("crystal_runbook.notify.live")

POST_SECONDS = 2.0
"""Seconds posting our own message may take (two quick tries): LiveProgress backs off and
tries again, and the run's end must never wait on it."""


def _quiet(_message: str) -> None:
    return None


def _after(created_at: str) -> str:
    """A millisecond after ``created_at``: a parked state waits right behind the message it
    updates (`outbox flush` goes oldest first), before the replies in its thread."""
    later = journal.parse_iso(created_at) + timedelta(milliseconds=1)
    return later.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SlackLiveChannel:
    """One run's live message on Slack (``notify.live.LiveChannel``)."""

    def __init__(
        self,
        *,
        notifier: Notifier,
        channel: str,
        heading: str,
        announcement: str | None,
        origin: Mapping[str, Any],
    ) -> None:
        """
        Args:
            channel: where our own message goes (a name or an id).
            heading: our own message's text (above the steps).
            announcement: the id of the `slack.notify` step whose message is the live one
                (None: a message of our own).
            origin: ``{env, service, actor}`` of the run, for the outbox's records.
        """
        self.notifier = notifier
        self.channel = channel
        self.heading = heading
        self.announcement = announcement
        self.owns = announcement is None
        self.step = announcement or outbox_mod.LIVE_STEP
        self.origin = dict(origin)
        self.run_id = ""
        self.web = slackapi.SlackWeb(notifier.settings, redactor=notifier.redactor)
        self._where: Where | None = None
        self._title: str | None = None if announcement else heading
        self._own: outbox_mod.Entry | None = None
        self._lock = contextlib.ExitStack()

    @property
    def outbox(self) -> outbox_mod.Outbox:
        return self.notifier.outbox

    # -- LiveChannel -------------------------------------------------------------------------

    def start(self, run_id: str) -> None:
        self.run_id = run_id
        try:  # held for the run: no flush elsewhere applies an older state over ours
            self._lock.enter_context(self.outbox.claim(outbox_mod.live_key(run_id)))
        except OSError as exc:
            log.warning("cannot lock the live progress of run %s: %s", run_id, exc)

    def release(self) -> None:
        self._lock.close()
        if not self.run_id:
            return
        with contextlib.suppress(OSError):  # nothing parked: its lock file is not needed
            self.outbox.forget_lock(outbox_mod.live_key(self.run_id))

    def title(self) -> str | None:
        return self._title

    def locate(self, *, deadline: float) -> Where | None:
        if self._where is not None:
            return self._where
        entry = self._entry()
        if entry is not None and self.announcement is not None:
            self._title = entry.message.text
        if entry is not None and entry.delivery is not None:
            self._where = Where(entry.delivery.channel, entry.delivery.ts)
            return self._where
        if self.announcement is not None:
            if entry is not None and entry.last_error and entry.status == outbox_mod.PENDING:
                raise slackapi.SlackUnavailable(
                    f"the announcement ({self.announcement}) is not on Slack: "
                    f"{entry.last_error.splitlines()[0]}"
                )
            return None  # not sent yet, or still being delivered
        return self._post_own(entry, deadline)

    def update(
        self, where: Where, text: str, blocks: list[dict[str, Any]], *, deadline: float
    ) -> None:
        redactor = self.notifier.redactor
        self.web.update(
            channel=where.channel,
            ts=where.ts,
            text=redactor.text(text),
            blocks=redactor.data(blocks),
            deadline=deadline,
            tries=1,  # LiveProgress paces the retries, always with the latest state
        )

    def reply(self, name: str, text: str, *, deadline: float, try_now: bool) -> None:
        try:
            entry = self.notifier.prepare(
                self._origin(f"{outbox_mod.LIVE_STEP}-{name}"),
                {"channel": self.channel, "text": text, "reply_to": outbox_mod.LIVE_STEP},
            )
            if try_now:
                self.notifier.courier.deliver(
                    entry.key, fresh=entry, deadline=deadline, progress=_quiet
                )
            else:
                self.notifier.keep(entry, reason="Slack was not answering")
        except Exception:  # a reply must never stop the run's end; the log has it
            log.exception("replying in the live message's thread of run %s", self.run_id)

    def park(self, text: str, blocks: list[dict[str, Any]], *, error: str | None) -> None:
        redactor = self.notifier.redactor
        try:
            parent = self._entry()
            entry = outbox_mod.Entry(
                key=outbox_mod.live_key(self.run_id),
                message=outbox_mod.Message(
                    channel=self.channel,
                    text=redactor.text(text),
                    blocks=redactor.data(blocks),
                    reply_to=self.step,
                    update=True,
                ),
                origin=outbox_mod.Origin(**self._origin(outbox_mod.LIVE_UPDATE_STEP)),
                created_at=_after(parent.created_at) if parent is not None else outbox_mod.now(),
                last_error=redactor.text(error) if error else None,
                parent_key=parent.key if parent is not None else None,
            )
            self.outbox.park(entry)
        except OSError as exc:  # a full disk must not stop the run; the log says it
            log.warning("cannot keep the live progress of run %s: %s", self.run_id, exc)

    def unpark(self) -> None:
        try:
            self.outbox.unpark(outbox_mod.live_key(self.run_id))
        except OSError as exc:
            log.warning("cannot drop the parked progress of run %s: %s", self.run_id, exc)

    # -- inside ------------------------------------------------------------------------------

    def _origin(self, step_id: str) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "step_id": step_id,
            "env": self.origin.get("env"),
            "service": self.origin.get("service"),
            "actor": self.origin.get("actor"),
        }

    def _entry(self) -> outbox_mod.Entry | None:
        """The live message's outbox entry (delivered ones first), if any."""
        try:
            return self.outbox.of_step(self.run_id, self.step)
        except OSError:
            return None

    def _post_own(self, entry: outbox_mod.Entry | None, deadline: float) -> Where | None:
        """Post our own message (once per run: a resumed run finds it in the outbox)."""
        courier = self.notifier.courier
        deadline = min(deadline, time.monotonic() + POST_SECONDS)
        try:
            if entry is None:
                fresh = self.notifier.prepare(
                    self._origin(outbox_mod.LIVE_STEP),
                    {"channel": self.channel, "text": self.heading},
                )
                result = courier.deliver(fresh.key, fresh=fresh, deadline=deadline, progress=_quiet)
            else:  # an earlier try failed: again, quietly (its warning was said once)
                result = courier.deliver(entry.key, fresh=None, deadline=deadline, progress=_quiet)
        except OSError as exc:  # the outbox cannot record it: no live message then
            raise errors.ConfigurationError(
                f"cannot keep the live message in {self.outbox.root}: {exc.strerror or exc}"
            ) from None
        outputs = result.outputs
        if result.status == "sent" and outputs.get("channel") and outputs.get("ts"):
            self._where = Where(str(outputs["channel"]), str(outputs["ts"]))
            return self._where
        if result.status == "skipped":
            return None  # another process is delivering it
        raise slackapi.SlackUnavailable(
            f"posting the live message: {result.error or result.summary}".splitlines()[0]
        )

