"""Components started and stopped together, and the signal handling of `serve`.

A component is anything with ``name``, ``start()`` and ``stop(deadline)``; ``Server``
starts them in list order and, on SIGTERM or SIGINT, first tells every component that has a
``quiesce()`` to take no new work (at once: the elected duties stop starting runs and
release their Leases), then stops them in reverse
order: the request listeners first (no new commands), the background worker last (running
jobs get the rest of the grace period to finish, then are interrupted and journalled as
such). `serve` then exits 0.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

log = logging.getLogger("crystal_runbook.serve")


class Component(Protocol):
    """Something `serve` runs: started once, stopped once by a monotonic deadline."""

    name: str

    def start(self) -> None: ...

    def stop(self, deadline: float) -> None: ...


class Periodic:
    """Calls ``fn`` every ``interval`` seconds in a thread (the first time after ``first``
    seconds, default ``interval``); a failing call is logged."""

    def __init__(
        self, name: str, interval: float, fn: Callable[[], None], *, first: float | None = None
    ) -> None:
        self.name = name
        self.interval = interval
        self.first = interval if first is None else first
        self.fn = fn
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"serve-{self.name}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        wait = self.first
        while not self._stop.wait(wait):
            wait = self.interval
            try:
                self.fn()
            except Exception:
                log.exception("%s failed", self.name)

    def stop(self, deadline: float) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))


class Server:
    """Runs components until SIGTERM or SIGINT, then stops them within ``grace`` seconds."""

    def __init__(self, components: Sequence[Component], *, grace: float) -> None:
        self.components = list(components)
        self.grace = grace
        self.stopping = threading.Event()
        self.started: list[Component] = []

    def start(self) -> None:
        """Start every component in order; if one fails, stop those started and re-raise."""
        try:
            for component in self.components:
                component.start()
                self.started.append(component)
                log.debug("started %s", component.name)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """No new work anywhere, then stop what was started, in reverse order, all within
        the grace period."""
        deadline = time.monotonic() + self.grace
        for component in reversed(self.started):
            quiesce = getattr(component, "quiesce", None)
            if quiesce is not None:
                try:
                    quiesce()
                except Exception:
                    log.exception("quiescing %s failed", component.name)
        for component in reversed(self.started):
            try:
                component.stop(deadline)
            except Exception:
                log.exception("stopping %s failed", component.name)
        self.started.clear()

    def run(self, *, ready: Callable[[], None] | None = None) -> int:
        """Start, wait for a signal (or ``stopping``), stop; returns the exit code (0)."""
        with self._signals():
            self.start()
            if ready is not None:
                ready()
            while not self.stopping.wait(0.5):
                pass
            log.info("stopping: no new commands; running jobs get %.0f s", self.grace)
            self.stop()
        return 0

    @contextmanager
    def _signals(self) -> Iterator[None]:
        def handler(signum: int, frame: object) -> None:
            self.stopping.set()

        try:
            previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        except ValueError:  # not the main thread (an embedding test): stop by `stopping`
            yield
            return
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
