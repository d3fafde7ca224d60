"""The journal: the single record of every run, step transition and event.

Resume, `runs`, `runs show`, incident documents and drill reports read only the journal
(like kopf's progress storage and ansible-runner's job events). Every transition is committed
before the next one starts: the intent is written before each apply, so a run killed at any
instant leaves a record that says exactly where it was.

The interface is the ``Journal`` protocol, a handful of methods. ``SqliteJournal`` is the
embedded default (`<state dir>/journal.db`, WAL, so readers never block the writer); a
PostgreSQL backend for teams and several `serve` replicas will implement the same protocol.
Records are plain dataclasses so that `runs` does not pay for pydantic.
"""

from __future__ import annotations

import json
import os
import secrets as _random
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from crystal_runbook import errors
from crystal_runbook.engine.secrets import Redactor

RUN_STATUSES = ("running", "ok", "failed", "interrupted")
STEP_STATUSES = (
    "pending",
    "checking",
    "applying",
    "applied",
    "verifying",
    "ok",
    "skipped",
    "failed",
    "interrupted",
)
TERMINAL_STEP = frozenset({"ok", "skipped"})


def now_iso() -> str:
    """UTC now as ISO 8601 with milliseconds and a Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def new_run_id() -> str:
    """12 hex digits: short enough to type at 3 a.m.; `runs show` accepts a unique prefix."""
    return _random.token_hex(6)


@dataclass
class StepRecord:
    """One step of a run as journalled."""

    run_id: str
    phase: str  # "main" or "on_failure"
    index: int
    id: str
    uses: str
    status: str = "pending"
    attempts: int = 0
    changed: bool | None = None
    summary: str = ""
    changes: list[dict[str, Any]] = field(default_factory=list)
    resolved: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    started_at: str | None = None
    ended_at: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The step in the `--output json` contract (design.md section 4)."""
        return {
            "id": self.id,
            "uses": self.uses,
            "status": self.status,
            "attempts": self.attempts,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "outputs": self.outputs,
            "error": self.error,
            "changed": self.changed,
            "summary": self.summary,
            "phase": self.phase,
        }


@dataclass
class RunRecord:
    """One run of a runbook as journalled."""

    id: str
    runbook: str
    env: str
    actor: str
    status: str
    started_at: str
    params: dict[str, Any] = field(default_factory=dict)
    service: str | None = None
    ended_at: str | None = None
    error: str | None = None
    host: str = ""
    pid: int = 0
    lock_key: str | None = None
    runbook_path: str = ""
    runbook_digest: str = ""
    runbook_text: str = ""
    drill: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    steps: list[StepRecord] = field(default_factory=list)

    def as_json(self, *, with_steps: bool = True) -> dict[str, Any]:
        """The run in the `--output json` contract (design.md section 4)."""
        doc: dict[str, Any] = {
            "id": self.id,
            "runbook": self.runbook,
            "env": self.env,
            "service": self.service,
            "actor": self.actor,
            "status": self.status,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "params": self.params,
            "error": self.error,
        }
        if with_steps:
            doc["steps"] = [s.as_json() for s in self.steps]
        return doc


@dataclass(frozen=True)
class EventRecord:
    """One line of a run's history."""

    seq: int
    run_id: str
    step_id: str | None
    at: str
    kind: str
    status: str
    message: str
    data: dict[str, Any]


class Journal(Protocol):
    """What the engine and the shells need from a journal backend."""

    def create_run(self, run: RunRecord) -> None: ...
    def update_run(
        self,
        run: RunRecord,
        *,
        event: str,
        message: str = "",
        data: Mapping[str, Any] | None = None,
    ) -> None: ...
    def save_step(
        self, step: StepRecord, *, message: str = "", data: Mapping[str, Any] | None = None
    ) -> None: ...
    def add_event(
        self,
        run_id: str,
        *,
        step_id: str | None = None,
        kind: str,
        status: str,
        message: str,
        data: Mapping[str, Any] | None = None,
    ) -> None: ...
    def get_run(self, run_id: str) -> RunRecord: ...
    def list_runs(self, *, service: str | None = None, limit: int = 20) -> list[RunRecord]: ...
    def events(self, run_id: str) -> list[EventRecord]: ...
    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    runbook TEXT NOT NULL,
    env TEXT NOT NULL,
    service TEXT,
    actor TEXT NOT NULL,
    status TEXT NOT NULL,
    params TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    error TEXT,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    lock_key TEXT,
    runbook_path TEXT NOT NULL,
    runbook_digest TEXT NOT NULL,
    runbook_text TEXT NOT NULL,
    drill INTEGER NOT NULL DEFAULT 0,
    meta TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at DESC);
CREATE INDEX IF NOT EXISTS runs_service ON runs (service, started_at DESC);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL REFERENCES runs (id),
    phase TEXT NOT NULL,
    idx INTEGER NOT NULL,
    id TEXT NOT NULL,
    uses TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    changed INTEGER,
    summary TEXT NOT NULL DEFAULT '',
    changes TEXT NOT NULL DEFAULT '[]',
    resolved TEXT NOT NULL DEFAULT '{}',
    outputs TEXT NOT NULL DEFAULT '{}',
    evidence TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    started_at TEXT,
    ended_at TEXT,
    PRIMARY KEY (run_id, phase, idx)
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    step_id TEXT,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_run ON events (run_id, seq);
"""

_RUN_COLUMNS = (
    "id, runbook, env, service, actor, status, params, started_at, ended_at, error, host, pid, "
    "lock_key, runbook_path, runbook_digest, drill, meta"
)


BUSY_SECONDS = 10.0
"""How long a journal connection waits for another process's write (or first setup)."""


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the journal database with the settings every user needs.

    Raises:
        errors.ConfigurationError: the database cannot be opened or stays locked.
    """
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
            hint="check the state directory (--state-dir, $CRYSTAL_STATE_DIR) is writable",
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


class SqliteJournal:
    """The embedded journal in `<state dir>/journal.db`."""

    def __init__(self, path: Path, *, redactor: Redactor | None = None) -> None:
        self.path = path
        self.redactor = redactor or Redactor()
        self._conn = connect(path)
        self._lock = threading.Lock()
        with self._lock:
            retry_busy(lambda: self._conn.executescript(_SCHEMA))
        self.host = socket.gethostname()

    # -- plumbing ----------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    def _dump(self, value: Any) -> str:
        return json.dumps(self.redactor.data(value), default=str, separators=(",", ":"))

    def _text(self, value: str | None) -> str | None:
        return None if value is None else self.redactor.text(value)

    def _event(
        self,
        cur: sqlite3.Cursor,
        run_id: str,
        *,
        step_id: str | None,
        kind: str,
        status: str,
        message: str,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        cur.execute(
            "INSERT INTO events (run_id, step_id, at, kind, status, message, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                step_id,
                now_iso(),
                kind,
                status,
                self.redactor.text(message),
                self._dump(dict(data or {})),
            ),
        )

    # -- writes ------------------------------------------------------------------------------

    def create_run(self, run: RunRecord) -> None:
        with self._tx() as cur:
            cur.execute(
                f"INSERT INTO runs ({_RUN_COLUMNS}, runbook_text) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.id,
                    run.runbook,
                    run.env,
                    run.service,
                    self._text(run.actor),
                    run.status,
                    self._dump(run.params),
                    run.started_at,
                    run.ended_at,
                    self._text(run.error),
                    run.host,
                    run.pid,
                    run.lock_key,
                    run.runbook_path,
                    run.runbook_digest,
                    int(run.drill),
                    self._dump(run.meta),
                    run.runbook_text,
                ),
            )
            for step in run.steps:
                self._write_step(cur, step)
            self._event(
                cur,
                run.id,
                step_id=None,
                kind="run",
                status=run.status,
                message=f"run of {run.runbook} started",
                data={"env": run.env, "service": run.service, "actor": run.actor},
            )

    def update_run(
        self,
        run: RunRecord,
        *,
        event: str,
        message: str = "",
        data: Mapping[str, Any] | None = None,
    ) -> None:
        with self._tx() as cur:
            cur.execute(
                "UPDATE runs SET status = ?, ended_at = ?, error = ?, host = ?, pid = ?, meta = ? "
                "WHERE id = ?",
                (
                    run.status,
                    run.ended_at,
                    self._text(run.error),
                    run.host,
                    run.pid,
                    self._dump(run.meta),
                    run.id,
                ),
            )
            self._event(
                cur,
                run.id,
                step_id=None,
                kind="run",
                status=event,
                message=message or event,
                data=data,
            )

    def _write_step(self, cur: sqlite3.Cursor, step: StepRecord) -> None:
        cur.execute(
            "INSERT OR REPLACE INTO steps (run_id, phase, idx, id, uses, status, attempts, "
            "changed, summary, changes, resolved, outputs, evidence, error, started_at, ended_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                step.run_id,
                step.phase,
                step.index,
                step.id,
                step.uses,
                step.status,
                step.attempts,
                None if step.changed is None else int(step.changed),
                self.redactor.text(step.summary),
                self._dump(step.changes),
                self._dump(step.resolved),
                self._dump(step.outputs),
                self._dump(step.evidence),
                self._text(step.error),
                step.started_at,
                step.ended_at,
            ),
        )

    def save_step(
        self, step: StepRecord, *, message: str = "", data: Mapping[str, Any] | None = None
    ) -> None:
        with self._tx() as cur:
            self._write_step(cur, step)
            self._event(
                cur,
                step.run_id,
                step_id=step.id,
                kind="step",
                status=step.status,
                message=message or step.status,
                data=data,
            )

    def add_event(
        self,
        run_id: str,
        *,
        step_id: str | None = None,
        kind: str,
        status: str,
        message: str,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        with self._tx() as cur:
            self._event(
                cur, run_id, step_id=step_id, kind=kind, status=status, message=message, data=data
            )

    # -- reads -------------------------------------------------------------------------------

    def _run_from_row(self, row: tuple[Any, ...]) -> RunRecord:
        (
            rid,
            runbook,
            env,
            service,
            actor,
            status,
            params,
            started_at,
            ended_at,
            error,
            host,
            pid,
            lock_key,
            path,
            digest,
            drill,
            meta,
        ) = row[:17]
        return RunRecord(
            id=rid,
            runbook=runbook,
            env=env,
            service=service,
            actor=actor,
            status=status,
            params=json.loads(params),
            started_at=started_at,
            ended_at=ended_at,
            error=error,
            host=host,
            pid=pid,
            lock_key=lock_key,
            runbook_path=path,
            runbook_digest=digest,
            drill=bool(drill),
            meta=json.loads(meta),
            runbook_text=row[17] if len(row) > 17 else "",
        )

    def get_run(self, run_id: str) -> RunRecord:
        key = run_id.strip()
        if not key or len(key) > 64 or not all(c.isalnum() or c in "-_" for c in key):
            raise errors.RunNotFound(
                f"{run_id[:64]!r} is not a run id", hint="list runs with `crystal-runbook runs`"
            )
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_RUN_COLUMNS}, runbook_text FROM runs WHERE id >= ? AND id < ? LIMIT 2",
                (key, key + "\U0010ffff"),
            ).fetchall()
        if not rows:
            raise errors.RunNotFound(
                f"no run {key!r} in the journal", hint="list runs with `crystal-runbook runs`"
            )
        exact = [r for r in rows if r[0] == key]
        if len(rows) > 1 and not exact:
            raise errors.RunNotFound(
                f"run id prefix {key!r} is ambiguous", hint="give more characters of the id"
            )
        run = self._run_from_row(exact[0] if exact else rows[0])
        run.steps = self._steps(run.id)
        return run

    def _steps(self, run_id: str) -> list[StepRecord]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT phase, idx, id, uses, status, attempts, changed, summary, changes, "
                "resolved, outputs, evidence, error, started_at, ended_at FROM steps "
                "WHERE run_id = ? ORDER BY phase = 'on_failure', idx",
                (run_id,),
            ).fetchall()
        return [
            StepRecord(
                run_id=run_id,
                phase=r[0],
                index=r[1],
                id=r[2],
                uses=r[3],
                status=r[4],
                attempts=r[5],
                changed=None if r[6] is None else bool(r[6]),
                summary=r[7],
                changes=json.loads(r[8]),
                resolved=json.loads(r[9]),
                outputs=json.loads(r[10]),
                evidence=json.loads(r[11]),
                error=r[12],
                started_at=r[13],
                ended_at=r[14],
            )
            for r in rows
        ]

    def list_runs(self, *, service: str | None = None, limit: int = 20) -> list[RunRecord]:
        query = f"SELECT {_RUN_COLUMNS} FROM runs"
        args: list[Any] = []
        if service:
            query += " WHERE service = ?"
            args.append(service)
        query += " ORDER BY started_at DESC, rowid DESC LIMIT ?"
        args.append(max(1, min(limit, 100_000)))
        with self._lock:
            rows = self._conn.execute(query, args).fetchall()
        return [self._run_from_row(r) for r in rows]

    def events(self, run_id: str) -> list[EventRecord]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, run_id, step_id, at, kind, status, message, data FROM events "
                "WHERE run_id = ? ORDER BY seq",
                (run_id,),
            ).fetchall()
        return [
            EventRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7])) for r in rows
        ]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def open_journal(state_dir: Path, *, redactor: Redactor | None = None) -> SqliteJournal:
    """The journal of ``state_dir`` (created on first use)."""
    return SqliteJournal(state_dir / "journal.db", redactor=redactor)


def process_alive(pid: int) -> bool:
    """True if a process with ``pid`` exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
