"""Approval steps of a run started from Slack: Approve and Reject buttons in its thread.

Why: a runbook's `approval` step stops a run until a person agrees (`approval` action);
in a run from Slack nobody is at a terminal, so the question becomes buttons in the
confirm message's thread, decided under the same rules as the confirmation (issue 11
item 6): an allowed person, not the invoker where ``approvers: 2``, within 10 minutes.
``SlackApprover`` is the run's ``confirm`` callable and an engine sink.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from crystal_runbook import errors
from crystal_runbook.engine import journal as journal_mod
from crystal_runbook.engine.events import Event
from crystal_runbook.service import approvals as approvals_mod
from crystal_runbook.service import slacksay
from crystal_runbook.service.slack import Button, Reply, SlackCommands

log = logging.getLogger("crystal_runbook.slack")


class SlackApprover:
    """The ``confirm`` of a run from Slack: approvals are Slack buttons in its thread.

    The executor asks first for the environment's confirmation (before the run starts):
    that was the Confirm press. Any later question comes from an `approval` step: the
    decision (who approved, or that it was rejected or expired) is journalled in the run
    itself, and a step that was not approved fails saying why.
    """

    def __init__(self, app: SlackCommands, origin: approvals_mod.Pending) -> None:
        self.app = app
        self.origin = origin
        self.started = False
        self.run_id: str | None = None
        self.step_id: str | None = None
        self.journal: journal_mod.Journal | None = None
        """The run's journal (set once the run's workspace exists)."""

    def observe(self, event: Event) -> None:
        """A sink: notes when the run has started (later questions are approval steps) and
        which step is applying (the one asking)."""
        if event.kind == "run" and event.status in ("running", "resumed"):
            self.started = True
            self.run_id = event.run_id
        elif event.kind == "step" and event.status == "applying":
            self.step_id = event.step_id

    def _journal(self, status: str, message: str, **data: Any) -> None:
        if self.journal is None or self.run_id is None:
            return
        try:
            self.journal.add_event(
                self.run_id,
                step_id=self.step_id,
                kind="approval",
                status=status,
                message=message,
                data=data,
            )
        except errors.CrystalError as exc:  # the step's own journalling says the rest
            log.error("cannot journal the approval of run %s: %s", self.run_id, exc)

    def __call__(self, question: str) -> bool:
        if not self.started:
            return True  # the run's own confirmation: the Confirm button was pressed
        app, origin = self.app, self.origin
        prompt = question.removesuffix(" Type yes to approve").strip()
        approvers = app.access().approvers(origin.env)
        pending = app.approvals.ask(
            kind="approval",
            invoker=origin.invoker,
            env=origin.env,
            command=origin.command,
            summary=prompt,
            approvers=approvers,
            data={"channel": origin.data.get("channel")},
        )
        who = (
            "an allowed person other than <@" + origin.invoker + ">"
            if approvers >= 2
            else "an allowed person"
        )
        reply = Reply(
            f":raising_hand: Approval needed: {prompt}",
            (f"{who} must press Approve (or Reject); the buttons expire in 10 minutes.",),
            buttons=(
                Button("approve", "Approve", pending.token, "primary"),
                Button("reject", "Reject", pending.token, "danger"),
            ),
            ephemeral=False,
        )
        assert origin.where is not None  # noqa: S101 - runs start from a posted confirm  # nosec B101
        channel, thread_ts = origin.where
        ts = slacksay.post(app, channel, reply, thread_ts=thread_ts)
        again = "`crystal-runbook resume` of the run asks again"
        if ts is None:
            app.approvals.withdraw(pending)
            raise errors.PermanentActionError(
                f"could not post the approval buttons in Slack: {prompt}",
                hint=f"check that the app can post in the channel; {again}",
            )
        pending.where = (channel, ts)
        while not pending.done.wait(0.5):
            if app.stopping.is_set():
                raise KeyboardInterrupt
            if time.monotonic() >= pending.expires:
                app.tick()
        if app.stopping.is_set() and pending.state not in ("started", "rejected"):
            raise KeyboardInterrupt
        by = pending.decided_by
        if pending.state == "started":
            self._journal("approved", f"approved by slack:{by} in Slack: {prompt}", user=by)
            return True
        if pending.state == "rejected":
            self._journal("rejected", f"rejected by slack:{by} in Slack: {prompt}", user=by)
            raise errors.PermanentActionError(
                f"approval rejected in Slack by <@{by}>: {prompt}", hint=again
            )
        self._journal("expired", f"nobody decided within 10 minutes: {prompt}")
        raise errors.PermanentActionError(
            f"approval expired in Slack: nobody pressed Approve within 10 minutes: {prompt}",
            hint=again,
        )
