"""The background worker: jobs run off the request threads, and are drained on stop.

Why: Slack waits at most 3 seconds for a command's acknowledgement, and a rollback takes
minutes. The request thread decides and answers; the work (plans, runs, health, logs,
message updates) is a job here. A bounded queue, so a flood of commands cannot queue
unbounded work: ``submit`` answers False when it is full or stopping, and the user is told.

On stop: no new jobs; queued jobs that never started are dropped (nothing of theirs ran);
running jobs get until the deadline to finish. A job still running then gets a
``KeyboardInterrupt`` raised in its thread, which the engine turns into a run journalled as
`interrupted` (the same path as Ctrl-C in the CLI), so `crystal-runbook resume` continues it.
"""

from __future__ import annotations

import ctypes
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("crystal_runbook.serve")

THREADS = 8
"""Jobs that run at once. A run holds its thread for minutes (an approval up to 10), and
runs on the same service queue on its lock anyway; 8 leaves room for answers meanwhile."""
QUEUE = 200
"""Jobs that may wait for a thread before ``submit`` says no (the worker is "busy")."""
INTERRUPT_WAIT = 15.0
"""Seconds an interrupted job gets, after the grace period, to journal its interruption."""


def interrupt(ident: int) -> None:
    """Raise ``KeyboardInterrupt`` in the thread ``ident`` (at its next bytecode): a run there
    is journalled `interrupted`, as after Ctrl-C in the CLI."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(ident), ctypes.py_object(KeyboardInterrupt)
    )


@dataclass
class _Job:
    name: str
    fn: Callable[[], None]


class Worker:
    """A fixed pool of threads over a bounded queue."""

    name = "worker"

    def __init__(self, *, threads: int = THREADS, size: int = QUEUE) -> None:
        self.threads = threads
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=size)
        self._accepting = False
        self._running: dict[int, str] = {}
        self._lock = threading.Lock()
        self._pool: list[threading.Thread] = []

    def start(self) -> None:
        self._accepting = True
        for i in range(self.threads):
            thread = threading.Thread(target=self._loop, name=f"serve-worker-{i}", daemon=True)
            thread.start()
            self._pool.append(thread)

    def submit(self, name: str, fn: Callable[[], None]) -> bool:
        """Queue a job; False (and nothing queued) when full or stopping."""
        if not self._accepting:
            return False
        try:
            self._queue.put_nowait(_Job(name, fn))
        except queue.Full:
            log.warning("worker queue full: %s refused", name)
            return False
        return True

    def running(self) -> list[str]:
        with self._lock:
            return sorted(self._running.values())

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            ident = threading.get_ident()
            with self._lock:
                self._running[ident] = job.name
            try:
                job.fn()
            except KeyboardInterrupt:
                log.warning("job %s interrupted", job.name)
            except Exception:
                log.exception("job %s failed", job.name)
            finally:
                with self._lock:
                    self._running.pop(ident, None)

    def _refuse_new(self) -> None:
        """Take no more jobs and drop the queued ones (nothing of theirs ran)."""
        self._accepting = False
        dropped = 0
        while True:
            try:
                if self._queue.get_nowait() is not None:
                    dropped += 1
            except queue.Empty:
                break
        if dropped:
            log.warning("%d queued job(s) dropped before they started", dropped)

    def stop(self, deadline: float) -> None:
        """Take no more jobs, drop queued ones, let running ones finish until ``deadline``,
        then interrupt those left and wait for them to journal it."""
        self._refuse_new()
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._lock:
            left = dict(self._running)
        for ident, name in left.items():
            log.warning("interrupting %s (the grace period is over)", name)
            interrupt(ident)
        until = time.monotonic() + (INTERRUPT_WAIT if left else 0.0)
        while self.running() and time.monotonic() < until:
            time.sleep(0.05)
        for _thread in self._pool:
            self._queue.put(None)
        for thread in self._pool:
            thread.join(max(0.1, until - time.monotonic()))
        self._pool.clear()
