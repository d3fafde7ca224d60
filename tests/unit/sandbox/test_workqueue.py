"""The controllers' work queue: de-duplication, timers, idling and stopping."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable

from crystal_runbook.sandbox.workqueue import WorkQueue


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[Hashable, float]] = []
        self.started = time.monotonic()
        self.release = threading.Event()
        self.release.set()

    def __call__(self, key: Hashable) -> None:
        self.release.wait(5)
        self.seen.append((key, time.monotonic() - self.started))


class TestWorkQueue:
    """Keys run once however often added; timers fire at their time; earliest timer wins."""

    def test_keys_added_while_busy_run_once(self) -> None:
        """Adding a key many times before it runs processes it once."""
        rec = Recorder()
        rec.release.clear()
        queue = WorkQueue(rec)
        queue.start()
        try:
            queue.add("first")
            time.sleep(0.05)
            for _ in range(10):
                queue.add("again")
            rec.release.set()
            assert queue.wait_idle(5)
        finally:
            queue.stop()
        assert [key for key, _ in rec.seen] == ["first", "again"]

    def test_timers_fire_in_order_and_earliest_wins(self) -> None:
        """A later request for a key with an earlier timer pending adds nothing."""
        rec = Recorder()
        queue = WorkQueue(rec)
        queue.start()
        try:
            queue.add_after("b", 0.2)
            queue.add_after("a", 0.1)
            queue.add_after("a", 0.5)  # superseded: "a" already runs at 0.1
            queue.add_after("c", 0.4)
            queue.add_after("c", 0.15)  # earlier: replaces 0.4
            time.sleep(0.7)
        finally:
            queue.stop()
        assert [key for key, _ in rec.seen] == ["a", "c", "b"]
        times = dict(rec.seen)
        assert 0.09 <= times["a"] < 0.3

    def test_failing_handler_is_recorded_not_fatal(self) -> None:
        """An exception in a controller is kept in ``errors`` and the worker goes on."""
        seen: list[Hashable] = []

        def handler(key: Hashable) -> None:
            if key == "bad":
                raise ValueError("boom")
            seen.append(key)

        queue = WorkQueue(handler)
        queue.start()
        try:
            queue.add("bad")
            queue.add("good")
            assert queue.wait_idle(5)
        finally:
            queue.stop()
        assert seen == ["good"]
        assert queue.errors == ["'bad': ValueError: boom"]
