"""Deliveries that go on after their step returned, so Slack never holds a rollback up.

Why: a notification step may wait for Slack only about a second (``INLINE_SECONDS``); a
Slack that is slow, or that accepts connections and never answers, must not keep the
rollback's patch waiting. What is not delivered by then goes on here, in one daemon thread
per notifier, in the order the steps sent them (a reply is delivered after the message it
answers). The step is journalled with ``pending`` outputs, and ``Job.settled`` records the
final outputs once the delivery ends, well before the process does: ``Worker.drain`` waits
for what is still going on (the incident document waits for it, and so does the end of
the command).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

INLINE_SECONDS = 0.8
"""How long a notification step waits for its delivery before it lets the run go on
(the rollback's budget for a notification is one second)."""

Settled = Callable[[str, dict[str, Any]], None]


@dataclass
class Job:
    """One delivery: run by the worker; its result goes to the step, or to ``settled``."""

    deliver: Callable[[], tuple[str, dict[str, Any]]]
    settled: Settled | None = None
    result: tuple[str, dict[str, Any]] | None = None
    finished: bool = False
    detached: bool = False
    """True once the step stopped waiting: the result then goes to ``settled``."""
    done: threading.Event = field(default_factory=threading.Event)


class Worker:
    """One daemon thread delivering jobs in order."""

    def __init__(self, *, name: str = "crystal-notify") -> None:
        self._name = name
        self._queue: queue.Queue[Job] = queue.Queue()
        self._lock = threading.Lock()
        self._pending: list[Job] = []
        self._thread: threading.Thread | None = None

    def submit(self, job: Job) -> Job:
        with self._lock:
            self._pending.append(job)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
        self._queue.put(job)
        return job

    def wait(self, job: Job, timeout: float) -> tuple[str, dict[str, Any]] | None:
        """The job's result if it ends within ``timeout`` seconds; else None, and the job
        is detached: its result will go to its ``settled`` callback."""
        job.done.wait(max(0.0, timeout))
        with self._lock:
            if job.finished:
                return job.result
            job.detached = True
            return None

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every submitted job; True if none is left."""
        until = time.monotonic() + timeout
        while True:
            with self._lock:
                pending = [j for j in self._pending if not j.finished]
            if not pending:
                return True
            left = until - time.monotonic()
            if left <= 0:
                return False
            pending[0].done.wait(left)

    @property
    def busy(self) -> bool:
        with self._lock:
            return any(not j.finished for j in self._pending)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                result = job.deliver()
            except Exception as exc:  # noqa: BLE001 - a delivery's bug must not end the thread
                result = (
                    f"notification NOT delivered: unexpected {type(exc).__name__}: {exc}",
                    {"error": f"unexpected {type(exc).__name__}: {exc}"},
                )
            with self._lock:
                job.result = result
                detached = job.detached
                if not detached:  # the step is still waiting: it takes the result
                    job.finished = True
            if detached and job.settled is not None:
                with contextlib.suppress(Exception):  # the run may be gone; the outbox knows
                    job.settled(*result)
            with self._lock:
                job.finished = True
                self._pending = [j for j in self._pending if not j.finished]
            job.done.set()
