"""The embedded journal: SQLite in `<state dir>/journal.db`.

WAL mode, so readers (`runs`, incident documents) never block the run being journalled, and
``synchronous=NORMAL``, so a commit survives the process being killed. One connection per
``SqliteJournal``, serialised by a mutex, because the executor's heartbeat and notifier
threads share it. ``connect`` and ``retry_busy`` are also what the local lock table uses.
"""

from __future__ import annotations

import errno
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from crystal_runbook import errors
from crystal_runbook.engine.journal import common, sqlite_schema
from crystal_runbook.engine.journal.common import RUN_COLUMNS as _RUN_COLUMNS
from crystal_runbook.engine.journal.records import EventRecord, RunRecord, StepRecord
from crystal_runbook.engine.journal.writes import SqlWrites
from crystal_runbook.engine.secrets import Redactor

BUSY_SECONDS = 10.0
"""How long a journal connection waits for another process's write (or first setup)."""
RESERVE_FILE = "journal.reserve"
RESERVE_BYTES = 512 * 1024
"""Disk space kept beside the journal and given back when the disk fills, so a run can still
journal that it stopped (`interrupted`) and release its lock: 512 KiB is about 120 WAL
frames, many times what those last writes take. Recreated when the journal next opens."""


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the database's size limit) is full."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return code == sqlite3.SQLITE_FULL or "disk is full" in str(exc).lower()
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


STATE_DIR_HINT = "check the state directory (--state-dir, $CRYSTAL_STATE_DIR) is writable"


def check_state_dir(state_dir: Path) -> None:
    """Refuse a state directory that cannot hold a journal, before anything reads or writes.

    A state dir that is a file (or sits under one), or a directory this user cannot read,
    would otherwise look like an empty journal ("no runs") or fail deep inside SQLite.

    Raises:
        errors.ConfigurationError: what is wrong with which path, and what to do (exit 2).
    """
    where = "--state-dir or $CRYSTAL_STATE_DIR"
    probe = state_dir
    while True:
        try:
            is_dir = probe.is_dir()
            exists = is_dir or probe.exists()
        except OSError as exc:  # a name too long, a loop of links: say which path
            raise errors.ConfigurationError(
                f"the state directory {state_dir} cannot be used: {exc.strerror or exc}",
                hint=f"give {where} a shorter path",
            ) from None
        if exists and not is_dir:
            which = "is" if probe == state_dir else f"is under {probe}, which is"
            raise errors.ConfigurationError(
                f"the state directory {state_dir} {which} a file, not a directory",
                hint=f"point {where} at a directory, or move the file {probe} aside",
            )
        if exists or probe.parent == probe:
            break
        probe = probe.parent
    journal = state_dir / "journal.db"
    if state_dir.is_dir() and not os.access(state_dir, os.R_OK | os.X_OK):
        raise errors.ConfigurationError(
            f"the state directory {state_dir} cannot be read by this user",
            hint=f"give this user read and search permission on it, or choose another with {where}",
        )
    if journal.exists() and not journal.is_file():
        raise errors.ConfigurationError(
            f"the journal {journal} is not a file (a directory or a device is in its place)",
            hint=f"move {journal} aside (runs start afresh), or choose another with {where}",
        )
    if journal.is_file() and not os.access(journal, os.R_OK):
        raise errors.ConfigurationError(
            f"the journal {journal} cannot be read by this user",
            hint=f"give this user read permission on it, or choose another with {where}",
        )


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the journal database with the settings every user needs.

    Raises:
        errors.ConfigurationError: the database cannot be opened or stays locked.
    """
    check_state_dir(path.parent)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            path, timeout=BUSY_SECONDS, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_SECONDS * 1000)}")
        # Two processes creating the database at once can see SQLITE_BUSY on the switch to WAL
        # without the busy handler being asked; retry it like any other busy write.
        retry_busy(lambda: conn.execute("PRAGMA journal_mode=WAL"))
        # NORMAL in WAL mode: a commit survives the process being killed (kill -9), which is
        # what resume needs; only a power loss can lose the last transactions.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
    except (sqlite3.Error, OSError) as exc:
        raise errors.ConfigurationError(
            f"cannot open the journal {path}: {exc}",
            hint=STATE_DIR_HINT,
        ) from None
    return conn


def retry_busy(fn: Callable[[], object], *, seconds: float = BUSY_SECONDS) -> None:
    """Run ``fn``, retrying while SQLite says the database is locked or busy."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            fn()
            return
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if ("locked" not in text and "busy" not in text) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class SqliteJournal(SqlWrites):
    """The embedded journal in `<state dir>/journal.db`."""

    def __init__(self, path: Path, *, redactor: Redactor | None = None) -> None:
        self.path = path
        self.redactor = redactor or Redactor()
        self._encoder = common.Encoder(self.redactor)
        self._conn = connect(path)
        self._lock = threading.Lock()
        try:
            with self._lock, sqlite_schema.translated(path):
                retry_busy(lambda: sqlite_schema.ensure_current(self._conn, path=path))
        except BaseException:
            self._conn.close()
            raise
        self.host = socket.gethostname()
        self._reserve = path.with_name(RESERVE_FILE)
        self._keep_reserve()

    # -- plumbing ----------------------------------------------------------------------------

    def _keep_reserve(self) -> None:
        """Make sure the space reserve exists (best effort: a full or read-only disk has none)."""
        try:
            if self._reserve.stat().st_size >= RESERVE_BYTES:
                return
        except FileNotFoundError:
            pass
        except OSError:
            return
        try:
            with self._reserve.open("wb") as out:
                out.write(bytes(RESERVE_BYTES))  # real blocks, not a sparse file
        except OSError:
            with suppress(OSError):
                self._reserve.unlink()

    def _full(self, exc: BaseException) -> errors.DiskFull:
        """Give the reserve back (so the run can journal its end) and say what happened."""
        freed = False
        with suppress(OSError):
            self._reserve.unlink()
            freed = True
        note = "" if freed else " (and no space was kept in reserve)"
        return errors.DiskFull(
            f"cannot write the journal {self.path}: the disk is full ({exc}){note}",
            hint=f"free disk space where {self.path.parent} lives (or choose another "
            "--state-dir); a run it stopped continues with `crystal-runbook resume RUN_ID`",
        )

    @contextmanager
    def _tx(self, what: str = "") -> Iterator[sqlite3.Cursor]:
        """One write transaction; a full disk is ``errors.DiskFull``, rolled back."""
        with self._lock:
            cur = self._conn.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                try:
                    yield cur
                    cur.execute("COMMIT")
                except BaseException:
                    with suppress(sqlite3.Error):  # SQLite may have rolled back already
                        cur.execute("ROLLBACK")
                    raise
            except (sqlite3.Error, OSError) as exc:
                if not disk_full(exc):
                    raise
                raise self._full(exc) from None

    # -- reads -------------------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunRecord:
        key = common.checked_run_id(run_id)
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_RUN_COLUMNS}, runbook_text FROM runs WHERE id >= ? AND id < ? LIMIT 2",  # noqa: S608 - constant column lists, values bound  # nosec B608
                (key, key + "\U0010ffff"),
            ).fetchall()
        run = common.run_from_row(common.pick_by_prefix(key, rows))
        run.steps = self._steps(run.id)
        return run

    def _steps(self, run_id: str) -> list[StepRecord]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {common.STEP_COLUMNS} FROM steps "  # noqa: S608 - constant column lists, values bound  # nosec B608
                "WHERE run_id = ? ORDER BY phase = 'on_failure', idx",
                (run_id,),
            ).fetchall()
        return [common.step_from_row(run_id, r) for r in rows]

    def list_runs(
        self, *, service: str | None = None, limit: int = 20, before: str | None = None
    ) -> list[RunRecord]:
        where: list[str] = []
        args: list[Any] = []
        if service:
            where.append("service = ?")
            args.append(service)
        if before is not None:
            where.append("(started_at, id) < (?, ?)")
            args.extend(self._key_of(before))
        query = f"SELECT {_RUN_COLUMNS} FROM runs"  # noqa: S608 - constant column lists, values bound  # nosec B608
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY started_at DESC, id DESC LIMIT ?"
        args.append(common.page_size(limit))
        with self._lock:
            rows = self._conn.execute(query, args).fetchall()
        return [common.run_from_row(r) for r in rows]

    def _key_of(self, run_id: str) -> tuple[str, str]:
        """The keyset key (started_at, id) of the run ``run_id`` names (or prefixes)."""
        key = common.checked_run_id(run_id)
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, started_at FROM runs WHERE id >= ? AND id < ? LIMIT 2",
                (key, key + "\U0010ffff"),
            ).fetchall()
        rid, started_at = common.pick_by_prefix(key, rows)
        return started_at, rid

    def events(self, run_id: str) -> list[EventRecord]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {common.EVENT_COLUMNS} FROM events WHERE run_id = ? ORDER BY seq",  # noqa: S608 - constant column lists, values bound  # nosec B608
                (run_id,),
            ).fetchall()
        return [common.event_from_row(r) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def open_journal(state_dir: Path, *, redactor: Redactor | None = None) -> SqliteJournal:
    """The journal of ``state_dir`` (created on first use)."""
    return SqliteJournal(state_dir / "journal.db", redactor=redactor)
