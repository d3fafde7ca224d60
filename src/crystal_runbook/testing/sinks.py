"""A sink that records engine events, for assertions in tests."""

from __future__ import annotations

import threading

from crystal_runbook.engine.events import Event


class RecordingSink:
    """Callable sink keeping every event in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def statuses(self, step_id: str) -> list[str]:
        """The statuses step ``step_id`` went through, in order."""
        return [e.status for e in self.events if e.kind == "step" and e.step_id == step_id]
