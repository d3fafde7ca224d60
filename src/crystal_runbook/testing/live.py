"""A recording ``notify.live.LiveChannel``, for tests of the live progress message's pacing.

Why: the pacing, collapsing and parking rules of ``notify.live.LiveProgress`` are tested
in-process and fast against this fake; the real channel (``notify.livechannel``) is tested
over HTTP against ``testing.slack_server``. The fake records every call with the time it
was made and can be told to fail (``fail_with``) or to keep the message away (``absent``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from crystal_runbook import errors
from crystal_runbook.notify.live import Where


@dataclass
class Call:
    """One call the channel received."""

    method: str
    """locate, update, reply, park or unpark."""
    at: float
    text: str = ""
    blocks: list[dict[str, Any]] = field(default_factory=list)
    name: str = ""
    try_now: bool = True
    error: str | None = None


class RecordingChannel:
    """A live channel that records calls; updates land unless a failure is queued."""

    def __init__(self, *, owns: bool = True, title: str | None = None) -> None:
        self.owns = owns
        self.heading = title
        self.calls: list[Call] = []
        self.failures: list[errors.CrystalError] = []
        """Raised by the next updates, one each, oldest first."""
        self.absent = False
        """While True, ``locate`` answers None (the message is not on Slack yet)."""
        self.parked: Call | None = None
        self.changed = threading.Event()
        self.run_id: str | None = None
        self.released = False
        self._lock = threading.Lock()

    def fail_with(self, *failures: errors.CrystalError) -> None:
        with self._lock:
            self.failures.extend(failures)

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)
        self.changed.set()

    def start(self, run_id: str) -> None:
        self.run_id = run_id

    def release(self) -> None:
        self.released = True

    def title(self) -> str | None:
        return self.heading

    def locate(self, *, deadline: float) -> Where | None:
        self._record(Call("locate", time.monotonic()))
        return None if self.absent else Where("C0CRYSTAL01", "1700000000.000100")

    def update(
        self, where: Where, text: str, blocks: list[dict[str, Any]], *, deadline: float
    ) -> None:
        with self._lock:
            failure = self.failures.pop(0) if self.failures else None
        error = failure.message if failure is not None else None
        self._record(Call("update", time.monotonic(), text, blocks, error=error))
        if failure is not None:
            raise failure

    def reply(self, name: str, text: str, *, deadline: float, try_now: bool) -> None:
        self._record(Call("reply", time.monotonic(), text, name=name, try_now=try_now))

    def park(self, text: str, blocks: list[dict[str, Any]], *, error: str | None) -> None:
        call = Call("park", time.monotonic(), text, blocks, error=error)
        with self._lock:
            self.parked = call
        self._record(call)

    def unpark(self) -> None:
        with self._lock:
            self.parked = None
        self._record(Call("unpark", time.monotonic()))

    # -- what tests ask ----------------------------------------------------------------------

    def of(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def delivered(self) -> list[Call]:
        """Updates that landed, oldest first."""
        return [c for c in self.of("update") if c.error is None]
