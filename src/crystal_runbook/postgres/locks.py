"""``PostgresLocks``: run locks shared by every machine that uses the journal database.

Rows with a heartbeat, as in the SQLite journal, rather than advisory locks: the holder's
run, actor, host and start time must be readable by the run that is refused (exit 3 names
them), and a lock must outlive a dropped connection as long as its holder is alive.
Staleness is judged on the database server's clock (``now() - heartbeat_at``), so two
machines whose clocks disagree never take over a live lock; a holder on this host whose
process is gone, or whose run the journal shows as ended, is stale at once, as with SQLite.

Acquiring is one transaction: insert the row, or lock the existing one (``FOR UPDATE``),
decide, and replace it only if it is ours or stale. Two takeovers of one stale lock
serialise on the row: the second sees the first's fresh heartbeat and is refused.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from crystal_runbook import errors
from crystal_runbook.engine import locks as locks_mod
from crystal_runbook.engine.journal import common
from crystal_runbook.postgres import database

_MAX_ROUNDS = 5
"""Attempts when a holder's row disappears between the insert and the read (it released)."""
_HOLDER = "key, run_id, actor, host, pid, acquired_at, heartbeat_at"


class PostgresLocks:
    """Locks in the journal database (``locks_mod.LockTable``)."""

    def __init__(
        self, db: database.Database, *, pid: int | None = None, host: str | None = None
    ) -> None:
        self.db = db
        self.host = socket.gethostname() if host is None else host
        self.pid = os.getpid() if pid is None else pid

    def holder(self, key: str) -> locks_mod.Holder | None:
        with self.db.transaction(f"reading lock {key!r}") as cur:
            cur.execute(f"SELECT {_HOLDER} FROM locks WHERE key = %s", (key,))  # noqa: S608 - constant column lists, values bound  # nosec B608
            row = cur.fetchone()
        return None if row is None else _holder(row)

    def acquire(
        self, key: str, *, run_id: str, actor: str, ttl: float = locks_mod.DEFAULT_TTL
    ) -> _PostgresLease:
        for _ in range(_MAX_ROUNDS):
            with self.db.transaction(f"taking lock {key!r}") as cur:
                cur.execute(
                    "INSERT INTO locks (key, run_id, actor, host, pid, acquired_at, "
                    "heartbeat_at, ttl) VALUES (%s, %s, %s, %s, %s, now(), now(), %s) "
                    "ON CONFLICT (key) DO NOTHING RETURNING key",
                    (key, run_id, actor, self.host, self.pid, ttl),
                )
                if cur.fetchone() is not None:
                    return _PostgresLease(self, key, run_id, None)
                cur.execute(
                    f"SELECT {_HOLDER}, ttl, EXTRACT(EPOCH FROM now() - heartbeat_at) "  # noqa: S608 - constant column lists, values bound  # nosec B608
                    "FROM locks WHERE key = %s FOR UPDATE",
                    (key,),
                )
                row = cur.fetchone()
                if row is None:
                    continue  # released between the two statements: try again
                current = _holder(row)
                mine = (current.run_id, current.host, current.pid) == (run_id, self.host, self.pid)
                cur.execute("SELECT status FROM runs WHERE id = %s", (current.run_id,))
                status = cur.fetchone()
                stale = locks_mod.is_stale(
                    current,
                    ttl=float(row[7]),
                    age=float(row[8]),
                    host=self.host,
                    ended=status is not None and status[0] != "running",
                )
                if not mine and not stale:
                    raise errors.LockHeld(
                        key,
                        run_id=current.run_id,
                        actor=current.actor,
                        host=current.host,
                        started_at=current.acquired_at,
                    )
                cur.execute(
                    "UPDATE locks SET run_id = %s, actor = %s, host = %s, pid = %s, "
                    "acquired_at = now(), heartbeat_at = now(), ttl = %s WHERE key = %s",
                    (run_id, actor, self.host, self.pid, ttl, key),
                )
                return _PostgresLease(self, key, run_id, None if mine else current)
        raise errors.ConfigurationError(
            f"lock {key!r} changed hands {_MAX_ROUNDS} times while it was being taken",
            hint="try again",
        )

    def _renew(self, key: str, run_id: str) -> None:
        with self.db.transaction(f"renewing lock {key!r}") as cur:
            cur.execute(
                "UPDATE locks SET heartbeat_at = now() WHERE key = %s AND run_id = %s",
                (key, run_id),
            )

    def _release(self, key: str, run_id: str) -> None:
        with self.db.transaction(f"releasing lock {key!r}") as cur:
            cur.execute("DELETE FROM locks WHERE key = %s AND run_id = %s", (key, run_id))

    def close(self) -> None:
        """Nothing to close: the pool belongs to the journal."""


class _PostgresLease:
    def __init__(
        self, backend: PostgresLocks, key: str, run_id: str, takeover: locks_mod.Holder | None
    ) -> None:
        self.backend = backend
        self.key = key
        self.run_id = run_id
        self.takeover = takeover

    def renew(self) -> None:
        self.backend._renew(self.key, self.run_id)

    def release(self) -> None:
        self.backend._release(self.key, self.run_id)


def _holder(row: tuple[Any, ...]) -> locks_mod.Holder:
    key, run_id, actor, host, pid, acquired_at, heartbeat_at = row[:7]
    return locks_mod.Holder(
        key=key,
        run_id=run_id,
        actor=actor,
        host=host,
        pid=int(pid),
        acquired_at=common.iso(acquired_at),
        heartbeat_at=common.iso(heartbeat_at),
    )
