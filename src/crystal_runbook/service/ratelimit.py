"""Rate limits for anything a user can call: 100 per minute per user, 10,000 in total.

Why: the source checklist binds every user-callable surface to these limits (design.md
section 2); the Slack app answers a command over them with "slow down" and when to retry,
before it does any work. A sliding window (the times of the accepted calls of the last
minute), so a burst at the end of one minute and the start of the next is still bounded.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

PER_USER = 100
"""Calls one user may make per window (the checklist's per-user limit)."""
TOTAL = 10_000
"""Calls everyone together may make per window (the checklist's global limit)."""
WINDOW = 60.0
"""Seconds of the sliding window."""
SWEEP_AT = 1024
"""Users remembered before those idle for a whole window are dropped (bounds memory)."""


@dataclass(frozen=True)
class Verdict:
    """Whether a call may go ahead; if not, which limit and how long until it may."""

    allowed: bool
    retry_after: float = 0.0
    limit: str = ""


class RateLimiter:
    """Sliding-window limits per user and in total; thread-safe."""

    def __init__(
        self,
        *,
        per_user: int = PER_USER,
        total: int = TOTAL,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_user = per_user
        self.total = total
        self.window = window
        self._clock = clock
        self._users: dict[str, deque[float]] = {}
        self._all: deque[float] = deque()
        self._lock = threading.Lock()

    def take(self, user: str) -> Verdict:
        """Count one call of ``user`` if both limits allow it; a refused call is not counted."""
        now = self._clock()
        horizon = now - self.window
        with self._lock:
            while self._all and self._all[0] <= horizon:
                self._all.popleft()
            mine = self._users.get(user)
            if mine is not None:
                while mine and mine[0] <= horizon:
                    mine.popleft()
                if not mine:
                    del self._users[user]
                    mine = None
            if mine is not None and len(mine) >= self.per_user:
                return Verdict(False, mine[0] + self.window - now, f"{self.per_user} per minute")
            if len(self._all) >= self.total:
                return Verdict(
                    False, self._all[0] + self.window - now, f"{self.total} per minute in total"
                )
            if len(self._users) > SWEEP_AT:  # users who stopped calling: forget them
                self._users = {u: q for u, q in self._users.items() if q and q[-1] > horizon}
            self._all.append(now)
            self._users.setdefault(user, deque()).append(now)
            return Verdict(True)
