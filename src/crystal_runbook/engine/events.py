"""Events the executor emits as a run progresses, for whoever is watching.

The journal is the record; events are the live view of the same transitions, sent to sinks
(console progress, JSON log lines, Slack, a recorder in tests). A sink is any callable that
takes an ``Event``; a sink that raises never stops a run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

Sink = Callable[["Event"], None]


@dataclass(frozen=True)
class Event:
    """One thing that happened in a run."""

    kind: str  # "run", "step", "progress", "warning"
    run_id: str
    status: str
    message: str
    at: str
    step_id: str | None = None
    uses: str | None = None
    phase: str = "main"
    data: Mapping[str, Any] = field(default_factory=dict)


def fan_out(sinks: list[Sink]) -> Sink:
    """One sink that forwards to several, ignoring a failing one."""

    def emit(event: Event) -> None:
        for sink in sinks:
            with suppress(Exception):  # a broken display must never stop a rollback
                sink(event)

    return emit
