"""The sandbox's tunable timings, in one small object tests and the admin endpoint can change.

Values are read when they are needed (a pod reads ``ready_delay`` when it starts), so a
change applies to what happens next, not to what is already under way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass
class SandboxConfig:
    """Timings of the simulated cluster and service."""

    ready_delay: float = 0.5
    """Seconds from a pod's start to Ready (``--ready-delay``); the issue's default."""

    crash_after: float = 0.2
    """Seconds a ``-crash`` container runs before it exits with code 1."""

    backoff_base: float = 0.5
    """First crash-loop back-off in seconds (Kubernetes uses 10 s; short keeps tests fast)."""

    backoff_max: float = 5.0
    """Longest crash-loop back-off in seconds (Kubernetes caps at 300 s)."""

    burn_ramp_seconds: float = 5.0
    """Seconds a ``-bad`` release takes to reach its full error rate, latency and pool use."""

    burn_held_until: float = 0.0
    """Wall-clock time (epoch seconds) before which ``-bad`` pods serve good figures; their
    burn ramps from then (or from their start, if later). 0, the default: from their start.
    The demo holds the burn while its release is rolled out and health-checked, then lets
    it go, so the story does not race the machine's speed. Set it only forward in time."""

    pod_rps: float = 40.0
    """Requests per second each simulated pod serves (drives its counters)."""

    log_interval: float = 0.3
    """Seconds between a pod's log lines (a few per second)."""

    shutdown_seconds: float = 0.2
    """Seconds a simulated container takes to exit after SIGTERM when its pod is deleted.

    The pod shows Terminating (``deletionTimestamp`` set) for this long, or for its grace
    period if that is shorter (then it is killed, exit code 137). Real services drain for
    a while; tests of the product also run with 1 s.
    """

    def as_dict(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def update(self, values: dict[str, Any]) -> None:
        """Set fields from a mapping; raises ``ValueError`` for unknown or negative values."""
        names = {f.name for f in dataclasses.fields(self)}
        for key, value in values.items():
            if key not in names:
                raise ValueError(f"unknown setting {key!r}; known: {', '.join(sorted(names))}")
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{key} must be a number >= 0, not {value!r}")
        for key, value in values.items():
            setattr(self, key, float(value))
