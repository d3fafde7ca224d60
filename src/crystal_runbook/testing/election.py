"""A Lease in memory and candidates for it, for tests of ``service.leader`` without a cluster.

``SharedLease`` plays the API server's part (one holder, a renew time, compare-and-swap by
construction since every call holds its lock); ``FakeElection`` is one candidate with the same
surface as ``kube.election.LeaseElection``. A test drives time with ``FakeClock`` and makes a
candidate's requests fail with ``FakeElection.failing``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from crystal_runbook import errors


@dataclass
class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class SharedLease:
    """One Lease as the API server keeps it."""

    clock: FakeClock
    duration: float = 15.0
    holder: str = ""
    renewed_at: float = 0.0
    transitions: int = 0
    writes: list[str] = field(default_factory=list)
    """Who wrote, in order (acquire, renew, release)."""
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeElection:
    """One candidate (``identity``) for a ``SharedLease``."""

    def __init__(self, shared: SharedLease, identity: str, *, name: str = "fake-lease") -> None:
        self.shared = shared
        self.identity = identity
        self.name = name
        self.failing = False
        """While True, every request raises a temporary error (the API server is away)."""

    @property
    def holder(self) -> str:
        return self.shared.holder

    @property
    def leading(self) -> bool:
        return self.shared.holder == self.identity

    def _check(self) -> None:
        if self.failing:
            raise errors.TemporaryActionError("read lease: cannot reach the API server (fake)")

    def expires_in(self) -> float:
        if not self.shared.holder:
            return 0.0
        return max(0.0, self.shared.renewed_at + self.shared.duration - self.shared.clock())

    def try_acquire_or_renew(self) -> bool:
        self._check()
        with self.shared.lock:
            if self.shared.holder not in ("", self.identity) and self.expires_in() > 0:
                return False
            if self.shared.holder != self.identity:
                self.shared.transitions += 1
            self.shared.holder = self.identity
            self.shared.renewed_at = self.shared.clock()
            self.shared.writes.append(f"acquire {self.identity}")
            return True

    def renew(self) -> bool:
        self._check()
        with self.shared.lock:
            if self.shared.holder != self.identity:
                return False
            self.shared.renewed_at = self.shared.clock()
            self.shared.writes.append(f"renew {self.identity}")
            return True

    def release(self) -> bool:
        if self.failing:
            return False
        with self.shared.lock:
            if self.shared.holder != self.identity:
                return False
            self.shared.holder = ""
            self.shared.writes.append(f"release {self.identity}")
            return True
