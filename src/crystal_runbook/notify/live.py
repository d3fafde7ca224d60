"""The live progress message of a run: one Slack message, updated in place as the run goes.

Why: an on-call channel wants to watch a rollback's steps tick in one message, not read a
message per step; and a Slack outage must never slow the rollback (issue 11 item 3).
``LiveProgress`` is an engine sink: the run's thread only folds each event into
``progress.RunProgress`` (microseconds, no I/O). A thread of its own delivers:

- at most one ``chat.update`` per ``INTERVAL`` (1 s) per run, always of the latest state:
  states that came and went within a second are never sent, none is sent twice, and none
  older than one already sent (updates arrive in order);
- a refresh every ``HEARTBEAT`` seconds while a step runs long, so the elapsed time moves;
- the final state always: ``close`` (after the run ended) waits for it at most
  ``CLOSE_SECONDS``, and not at all while Slack is down or has asked us to wait longer;
- while Slack does not answer, the latest state is parked in the outbox (one entry per run,
  overwritten: undelivered updates collapse to the latest state), retried with backoff in
  the background, and delivered by `outbox flush` (or `serve`'s minute flush) otherwise;
- when the message is ours (the runbook announced nothing to update), each step failure
  and the result are posted in its thread.

Where the message is, how it is updated and parked, is the ``LiveChannel``'s business
(``notify.livechannel`` over Slack's Web API and the outbox; a recording fake in tests).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from crystal_runbook import errors
from crystal_runbook.engine.events import Event
from crystal_runbook.notify import progress as progress_mod

log = logging.getLogger("crystal_runbook.notify.live")

INTERVAL = 1.0
"""Seconds between two updates of one run's message, at least (Slack's chat.update allows
about one per second per message)."""
HEARTBEAT = 15.0
"""Seconds after which an unchanged running state is sent again (the elapsed time moves)."""
CLOSE_SECONDS = 2.0
"""How long the end of a run waits for its final state to reach Slack before parking it
(one pacing interval and a request)."""
UPDATE_SECONDS = 3.0
"""Seconds one delivery attempt (an update, our own message, a reply) may take."""
BACKOFF = (2.0, 5.0, 10.0, 30.0)
"""Seconds before the next attempt after consecutive failures (without a Retry-After)."""
LOCATE_POLL = 0.25
"""Seconds between looks for an announcement that is not on Slack yet."""


@dataclass(frozen=True)
class Where:
    """A message on Slack."""

    channel: str
    ts: str


class LiveChannel(Protocol):
    """Where a run's live message lives and how it is changed.

    Methods raising ``errors.CrystalError`` (``slackapi.SlackUnavailable`` with its
    ``retry_after``, ``slackapi.SlackRefused``) are retried by the caller or parked.
    """

    owns: bool
    """True when the message is ours (not the runbook's announcement): we then say step
    failures and the result in its thread."""

    def start(self, run_id: str) -> None:
        """The run ``run_id`` started: its live message is this channel's from now on."""

    def release(self) -> None:
        """The run is over for this process: `outbox flush` may take its parked state."""

    def title(self) -> str | None:
        """What the message says above the steps (the announcement's text), if known."""

    def locate(self, *, deadline: float) -> Where | None:
        """The live message; posts our own first if needed. None: not on Slack yet (the
        announcement is still on its way, or could not be delivered)."""

    def update(
        self, where: Where, text: str, blocks: list[dict[str, Any]], *, deadline: float
    ) -> None:
        """Replace the message's text and blocks (``chat.update``)."""

    def reply(self, name: str, text: str, *, deadline: float, try_now: bool) -> None:
        """Post ``text`` in the message's thread, once per run and ``name``; without
        ``try_now`` (Slack is down) only queue it in the outbox. Never raises."""

    def park(self, text: str, blocks: list[dict[str, Any]], *, error: str | None) -> None:
        """Keep this state for `outbox flush` (replacing any state parked before); never
        raises."""

    def unpark(self) -> None:
        """A later state reached Slack: drop the parked one; never raises."""


Clock = Callable[[], float]


class LiveProgress:
    """A sink keeping one run's live message up to date from a thread of its own."""

    def __init__(
        self,
        progress: progress_mod.RunProgress,
        channel: LiveChannel,
        *,
        interval: float = INTERVAL,
        heartbeat: float = HEARTBEAT,
        close_seconds: float = CLOSE_SECONDS,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
    ) -> None:
        self.progress = progress
        self.channel = channel
        self.interval = interval
        self.heartbeat = heartbeat
        self.close_seconds = close_seconds
        self._clock = clock
        self._wall = wall
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.sent_version = -1
        """The version of the latest state Slack has."""
        self.sent_at = -float("inf")
        self.failures = 0
        """Consecutive failed attempts (0: Slack took the last one)."""
        self.unreachable = False
        """Whether the last attempt found Slack not answering (not a 429: Slack answered)."""
        self.parked = False
        self.parked_version = -1
        """The version of the state parked in the outbox (if ``parked``)."""
        self.gave_up: str | None = None
        """Why live delivery stopped (Slack refused it for good); the outbox has the rest."""
        self._retry_at = 0.0
        """Monotonic time before which no attempt is made (backoff, Retry-After)."""
        self._concluded = False

    # -- the sink (the run's thread) ---------------------------------------------------------

    def __call__(self, event: Event) -> None:
        changed = self.progress.apply(event)
        if event.kind == "run" and event.status in ("running", "resumed"):
            self._start()
        if changed:
            self._wake.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self.channel.start(self.progress.run_id)
            self._thread = threading.Thread(
                target=self._run, name=f"live-{self.progress.run_id}", daemon=True
            )
            self._thread.start()

    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def down(self) -> bool:
        """Whether Slack did not answer the latest attempt, or refused live delivery for good
        (a 429 is not down: Slack answered, and says when to come back)."""
        return self.unreachable or self.gave_up is not None

    def close(self) -> None:
        """The run ended (or gave up): deliver its final state, or park it; bounded.

        Waits at most ``close_seconds``, and not at all while Slack is down or has asked
        for a longer wait (429): the final state (and, for a message of ours, the result)
        is then parked in the outbox for `outbox flush`.
        """
        thread = self._thread
        if thread is None:
            return  # the run never started (refused, locked): nothing was shown
        self._closing.set()
        self._wake.set()
        until = self._clock() + self.close_seconds
        while not self._done.is_set() and self._clock() < until:
            if self.down or self._retry_at > until:
                break
            self._done.wait(0.02)
        if not self._done.is_set():  # Slack is down or slow: the outbox takes it from here
            self._conclude(self.progress.snapshot(), "Slack did not take the run's final state")
        self.channel.release()

    # -- the delivering thread ---------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # a bug here must not end quietly: the outbox keeps the state
            log.exception("live progress of run %s failed", self.progress.run_id)
            self._conclude(self.progress.snapshot(), "unexpected error in the live progress")
        finally:
            self._done.set()

    def _loop(self) -> None:
        while not self._concluded:
            snap = self.progress.snapshot()
            closing = self._closing.is_set()
            if self.gave_up is not None or (closing and self.down):
                if closing:
                    self._conclude(snap, self.gave_up or "Slack is not answering")
                    return
                self._wake.wait()  # live delivery stopped for good: wait for the end
                self._wake.clear()
                continue
            fresh = snap.version != self.sent_version
            if not fresh and closing:
                self._conclude(snap, None)
                return
            if not fresh and snap.status != "running":
                self._wake.wait()  # the final state is on Slack: wait for close()
                self._wake.clear()
                continue
            due = self.sent_at + (self.interval if fresh else self.heartbeat)
            due = max(due, self._retry_at)  # backing off, or looking for the message again
            left = due - self._clock()
            if left > 0:
                if not fresh:  # an idle heartbeat: a new state or close() wakes it
                    self._wake.wait(left)
                    self._wake.clear()
                elif closing:  # pacing the final state: at most one update a second
                    time.sleep(min(left, self.interval))
                else:  # pacing, or backing off: a new state waits, close() does not
                    self._closing.wait(left)
                continue
            self._attempt(snap)

    def _attempt(self, snap: progress_mod.Snapshot) -> None:
        started = self._clock()
        deadline = started + UPDATE_SECONDS
        try:
            where = self.channel.locate(deadline=deadline)
            if where is None:  # the announcement is on its way: look again shortly
                self._retry_at = started + LOCATE_POLL
                return
            text, blocks = self._render(snap)
            self.channel.update(where, text, blocks, deadline=deadline)
        except errors.CrystalError as exc:
            self._failed(snap, exc)
            return
        self.sent_version, self.sent_at = snap.version, started
        self.failures, self.unreachable = 0, False
        if self.parked and snap.version >= self.parked_version:  # the parked state is older
            self.channel.unpark()
            self.parked = False
        if self.channel.owns:
            self._say_failures(try_now=True)

    def _render(self, snap: progress_mod.Snapshot) -> tuple[str, list[dict[str, Any]]]:
        return progress_mod.render(snap, self._wall(), title=self.channel.title())

    def _park(self, snap: progress_mod.Snapshot, reason: str | None) -> None:
        text, blocks = self._render(snap)
        self.channel.park(text, blocks, error=reason)
        self.parked, self.parked_version = True, snap.version

    def _failed(self, snap: progress_mod.Snapshot, exc: errors.CrystalError) -> None:
        self.failures += 1
        reason = exc.message
        self._park(snap, reason)
        if isinstance(exc, errors.TemporaryActionError):
            delay = exc.retry_after
            self.unreachable = delay is None
            if delay is None:
                delay = BACKOFF[min(self.failures, len(BACKOFF)) - 1]
            self._retry_at = self._clock() + delay
            log.info("live progress of run %s: %s; next try in %.0f s", snap.run_id, reason, delay)
            return
        self.gave_up = reason  # refused for good (a revoked token, a deleted message)
        log.warning("live progress of run %s stopped: %s", snap.run_id, reason)

    def _conclude(self, snap: progress_mod.Snapshot, reason: str | None) -> None:
        """The end, once: park what Slack does not have; say failures and the result."""
        with self._lock:
            if self._concluded:
                return
            self._concluded = True
        delivered = snap.version == self.sent_version
        if not delivered:
            self._park(snap, reason)
        if self.channel.owns:
            self._say_failures(try_now=delivered)
            if snap.final:
                self.channel.reply(
                    "result",
                    progress_mod.status_line(snap, self._wall()),
                    deadline=self._clock() + UPDATE_SECONDS,
                    try_now=delivered,
                )

    def _say_failures(self, *, try_now: bool) -> None:
        for step in self.progress.take_failures():
            note = f": {step.note}" if step.note else ""
            self.channel.reply(
                f"failed-{step.phase}-{step.id}",
                f":x: Step `{step.id}` failed after {step.attempts or 1} attempt(s){note}",
                deadline=self._clock() + UPDATE_SECONDS,
                try_now=try_now,
            )
