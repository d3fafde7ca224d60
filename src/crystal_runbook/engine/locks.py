"""Locks: two runs on the same service and environment never overlap.

A run holds its runbook's `lock:` key for its whole life. A second run asking for the same
key gets ``errors.LockHeld`` naming the holder's run id, actor, host and start time (exit 3).
A stale lock is taken over with a warning: its holder process is gone (same host), or its
heartbeat is older than its time-to-live (another host that died).

The seam is ``LockBackend.acquire``; ``SqliteLocks`` keeps locks in the journal database,
which is what one machine needs. The PostgreSQL adapter's ``PostgresLocks`` does the same
in a shared journal database, with the same staleness rule (``is_stale``). A Kubernetes
Lease backend (two engineers on two laptops) implements the same protocol, and a run can
hold both (``hold_all``).
"""

from __future__ import annotations

import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from crystal_runbook import errors
from crystal_runbook.engine import journal as journal_mod

DEFAULT_TTL = 30.0
"""Seconds without a heartbeat after which a lock held from another host counts as stale.
Heartbeats are sent every TTL/3, so a live holder is never mistaken for a dead one."""


@dataclass(frozen=True)
class Holder:
    """Who holds a lock."""

    key: str
    run_id: str
    actor: str
    host: str
    pid: int
    acquired_at: str
    heartbeat_at: str


class Lease(Protocol):
    """A held lock; ``renew`` is called from a heartbeat thread."""

    key: str
    takeover: Holder | None
    """The stale holder this lease replaced, if any (for the warning)."""

    def renew(self) -> None: ...
    def release(self) -> None: ...


class LockBackend(Protocol):
    """Somewhere locks live."""

    def acquire(self, key: str, *, run_id: str, actor: str, ttl: float = DEFAULT_TTL) -> Lease: ...


class LockTable(LockBackend, Protocol):
    """Locks kept beside the journal (SQLite here, PostgreSQL in its adapter)."""

    def holder(self, key: str) -> Holder | None: ...
    def close(self) -> None: ...


def is_stale(
    holder: Holder, *, ttl: float, age: float, host: str, ended: bool = False
) -> bool:
    """A lock is stale when its holder's process on this ``host`` is gone, when the journal
    shows its run ``ended``, or when its heartbeat is ``age`` seconds old, more than ``ttl``."""
    if holder.host == host and not journal_mod.process_alive(holder.pid):
        return True
    return ended or age > ttl


_SCHEMA = """
CREATE TABLE IF NOT EXISTS locks (
    key TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    actor TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    acquired_at TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    ttl REAL NOT NULL
)
"""


class SqliteLocks:
    """Locks in the journal database of one machine (or a shared disk)."""

    def __init__(self, path: Path, *, pid: int | None = None) -> None:
        import os

        self.path = path
        self.host = socket.gethostname()
        self.pid = os.getpid() if pid is None else pid
        self._conn = journal_mod.connect(path)
        journal_mod.retry_busy(lambda: self._conn.execute(_SCHEMA))
        self._mutex = threading.Lock()

    def holder(self, key: str) -> Holder | None:
        with self._mutex:
            row = self._conn.execute(
                "SELECT key, run_id, actor, host, pid, acquired_at, heartbeat_at FROM locks "
                "WHERE key = ?",
                (key,),
            ).fetchone()
        return Holder(*row) if row else None

    def _stale(self, holder: Holder, ttl: float) -> bool:
        age = (
            journal_mod.parse_iso(journal_mod.now_iso())
            - journal_mod.parse_iso(holder.heartbeat_at)
        ).total_seconds()
        return is_stale(
            holder, ttl=ttl, age=age, host=self.host, ended=self._ended(holder.run_id)
        )

    def _ended(self, run_id: str) -> bool:
        """Whether the journal in the same database shows ``run_id`` as ended."""
        try:
            row = self._conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
        except sqlite3.Error:  # locks kept without a journal beside them
            return False
        return row is not None and row[0] != "running"

    def acquire(
        self, key: str, *, run_id: str, actor: str, ttl: float = DEFAULT_TTL
    ) -> _SqliteLease:
        now = journal_mod.now_iso()
        takeover: Holder | None = None
        with self._mutex:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                row = cur.execute(
                    "SELECT key, run_id, actor, host, pid, acquired_at, heartbeat_at, ttl "
                    "FROM locks WHERE key = ?",
                    (key,),
                ).fetchone()
                if row is not None:
                    current = Holder(*row[:7])
                    mine = (current.run_id, current.host, current.pid) == (
                        run_id,
                        self.host,
                        self.pid,
                    )
                    if not mine and not self._stale(current, float(row[7])):
                        raise errors.LockHeld(
                            key,
                            run_id=current.run_id,
                            actor=current.actor,
                            host=current.host,
                            started_at=current.acquired_at,
                        )
                    takeover = None if mine else current
                cur.execute(
                    "INSERT OR REPLACE INTO locks (key, run_id, actor, host, pid, acquired_at, "
                    "heartbeat_at, ttl) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (key, run_id, actor, self.host, self.pid, now, now, ttl),
                )
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")
        return _SqliteLease(self, key, run_id, takeover)

    def _renew(self, key: str, run_id: str) -> None:
        with self._mutex:
            self._conn.execute(
                "UPDATE locks SET heartbeat_at = ? WHERE key = ? AND run_id = ?",
                (journal_mod.now_iso(), key, run_id),
            )

    def _release(self, key: str, run_id: str) -> None:
        with self._mutex:
            self._conn.execute("DELETE FROM locks WHERE key = ? AND run_id = ?", (key, run_id))

    def close(self) -> None:
        with self._mutex:
            self._conn.close()


class _SqliteLease:
    def __init__(self, backend: SqliteLocks, key: str, run_id: str, takeover: Holder | None):
        self.backend = backend
        self.key = key
        self.run_id = run_id
        self.takeover = takeover

    def renew(self) -> None:
        self.backend._renew(self.key, self.run_id)

    def release(self) -> None:
        self.backend._release(self.key, self.run_id)


@contextmanager
def hold_all(
    backends: Sequence[LockBackend],
    key: str,
    *,
    run_id: str,
    actor: str,
    ttl: float = DEFAULT_TTL,
    warn: Callable[[str], None] = lambda _m: None,
    break_lock: Callable[[errors.LockHeld], bool] | None = None,
    taken_over: Callable[[str, str], None] = lambda _run, _why: None,
) -> Iterator[list[Lease]]:
    """Hold ``key`` in every backend for the duration of the block, renewing in the background.

    Acquired in order and released in reverse; if a later backend refuses, the earlier ones
    are released before ``LockHeld`` propagates.

    Args:
        break_lock: asked when a backend that can break locks (``can_break``, e.g. a
            Kubernetes Lease held from another host) refuses: True takes the lock over
            (`--break-lock`), with a warning naming the previous holder and ``actor``.
        taken_over: called with the previous holder's run id and why, whenever a lock is
            taken over (stale or broken), before the block starts: the caller journals
            that run as interrupted (``engine.orphans``).
    """
    with ExitStack() as stack:
        leases: list[Lease] = []
        for backend in backends:
            try:
                lease = backend.acquire(key, run_id=run_id, actor=actor, ttl=ttl)
            except errors.LockHeld as held:
                if not (break_lock and getattr(backend, "can_break", False) and break_lock(held)):
                    raise
                acquire: Callable[..., Lease] = backend.acquire
                lease = acquire(key, run_id=run_id, actor=actor, ttl=ttl, force=True)
                stack.callback(_quiet_release, lease)
                leases.append(lease)
                warn(
                    f"broke lock {key!r} held by run {held.holder_run_id} ({held.holder_actor} "
                    f"on {held.holder_host}, since {held.holder_started_at}): --break-lock by "
                    f"{actor}"
                )
                taken_over(
                    held.holder_run_id,
                    f"its lock {key!r} was broken by run {run_id} (--break-lock by {actor})",
                )
                continue
            stack.callback(_quiet_release, lease)
            leases.append(lease)
            if lease.takeover is not None:
                old = lease.takeover
                warn(
                    f"took over stale lock {key!r} from run {old.run_id} ({old.actor} on "
                    f"{old.host}, pid {old.pid}, last heartbeat {old.heartbeat_at})"
                )
                taken_over(old.run_id, f"its lock {key!r} was taken over by run {run_id}")
        stop = threading.Event()
        thread = threading.Thread(
            target=_heartbeat,
            args=(leases, stop, ttl / 3, warn),
            name=f"lock-heartbeat-{key}",
            daemon=True,
        )
        thread.start()
        stack.callback(thread.join, 5.0)
        stack.callback(stop.set)
        yield leases


def release_left_by(
    backends: Sequence[LockBackend], key: str, *, run_id: str, actor: str
) -> bool:
    """Release ``key`` when a lock table still names ``run_id``, a run that has ended: its
    process was killed after it journalled the end and before it let go of its lock and
    Lease. Nothing waits on such a lock (a stale holder is taken over at once), but it must
    not be left behind either. Returns whether it released one. Never raises ``LockHeld``:
    a lock another run holds now is that run's."""
    left = False
    for backend in backends:
        holder = getattr(backend, "holder", None)
        if holder is not None:
            found = holder(key)
            left = left or (found is not None and found.run_id == run_id)
    if not left:
        return False
    try:
        with hold_all(backends, key, run_id=run_id, actor=actor):
            pass
    except errors.LockHeld:
        return False
    return True


def _quiet_release(lease: Lease) -> None:
    with suppress(Exception):  # a failed release must not hide the run's own outcome
        lease.release()


def _heartbeat(
    leases: list[Lease], stop: threading.Event, every: float, warn: Callable[[str], None]
) -> None:
    while not stop.wait(every):
        for lease in leases:
            try:
                lease.renew()
            except Exception as exc:  # noqa: BLE001 - report and keep renewing the others
                warn(f"could not renew lock {lease.key!r}: {exc}")
