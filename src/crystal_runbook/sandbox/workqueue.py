"""The controllers' single worker thread: a de-duplicating work queue plus timers.

Store listeners ``add`` keys when objects change; controllers ``add_after`` keys for what is
due later (a pod becoming Ready after the ready delay, a crashed container's restart, a
Deployment's progress deadline). The worker sleeps on a condition variable until a key is
added or the earliest timer is due, so nothing polls. One thread runs every controller, so
controllers never race one another (HTTP handlers still change objects concurrently, and
controllers re-read what they change under the store's lock).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Hashable

log = logging.getLogger("crystal_runbook.sandbox")

Handler = Callable[[Hashable], None]


class WorkQueue:
    """Keys to process now (each once, however often added) and keys due at a later time."""

    def __init__(self, handler: Handler, *, name: str = "sandbox-controller") -> None:
        self._handler = handler
        self._cond = threading.Condition()
        self._ready: dict[Hashable, None] = {}
        self._timers: list[tuple[float, int, Hashable]] = []
        self._due: dict[Hashable, float] = {}  # earliest pending timer per key
        self._seq = itertools.count()
        self._stopping = False
        self._busy = False
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, key: Hashable) -> None:
        """Process ``key`` soon (once, even if added several times before it runs)."""
        with self._cond:
            self._ready[key] = None
            self._cond.notify()

    def add_after(self, key: Hashable, delay: float) -> None:
        """Process ``key`` after ``delay`` seconds (the earliest of pending requests wins:
        a controller re-schedules whatever it still needs when it runs)."""
        if delay <= 0:
            self.add(key)
            return
        when = time.monotonic() + delay
        with self._cond:
            current = self._due.get(key)
            if current is not None and current <= when:
                return
            self._due[key] = when
            heapq.heappush(self._timers, (when, next(self._seq), key))
            self._cond.notify()

    def idle(self) -> bool:
        """Nothing queued now and nothing running (timers may still be pending)."""
        with self._cond:
            return not self._ready and not self._busy

    def wait_idle(self, timeout: float) -> bool:
        """Block until ``idle()`` or timeout; for tests that need the controllers settled."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._ready or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()

    def _next(self) -> Hashable | None:
        with self._cond:
            while True:
                if self._stopping:
                    return None
                now = time.monotonic()
                while self._timers and self._timers[0][0] <= now:
                    when, _, key = heapq.heappop(self._timers)
                    if self._due.get(key) == when:  # else superseded by an earlier timer
                        del self._due[key]
                        self._ready[key] = None
                if self._ready:
                    key = next(iter(self._ready))
                    del self._ready[key]
                    self._busy = True
                    return key
                self._cond.notify_all()  # wake wait_idle()
                timeout = self._timers[0][0] - now if self._timers else None
                self._cond.wait(timeout)

    def _run(self) -> None:
        while True:
            key = self._next()
            if key is None:
                return
            try:
                self._handler(key)
            except Exception as exc:  # a controller bug must not kill the sandbox
                log.exception("controller failed on %r", key)
                self.errors.append(f"{key!r}: {type(exc).__name__}: {exc}")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
