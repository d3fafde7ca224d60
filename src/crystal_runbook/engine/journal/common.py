"""Helpers every journal backend shares: clock, run ids, and turning rows into records.

The row helpers accept what either backend returns (ISO text or ``datetime`` for times,
JSON text or already-decoded values for documents), so a backend only chooses its SQL.
``Encoder`` is the one place where what is written passes through the ``Redactor``: a
backend that writes through it cannot forget to mask a secret.
"""

from __future__ import annotations

import json
import os
import secrets as _random
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from crystal_runbook import errors
from crystal_runbook.engine.journal.records import EventRecord, RunRecord, StepRecord
from crystal_runbook.engine.secrets import Redactor

RUN_COLUMNS = (
    "id, runbook, env, service, actor, status, params, started_at, ended_at, error, host, pid, "
    "lock_key, runbook_path, runbook_digest, drill, meta"
)
"""The columns of ``runs`` that `runs` lists, in the order ``run_from_row`` reads them."""
STEP_COLUMNS = (
    "phase, idx, id, uses, status, attempts, changed, summary, changes, resolved, outputs, "
    "evidence, error, started_at, ended_at"
)
"""The columns of ``steps`` in the order ``step_from_row`` reads them."""
EVENT_COLUMNS = "seq, run_id, step_id, at, kind, status, message, data"
"""The columns of ``events`` in the order ``event_from_row`` reads them."""


def now_iso() -> str:
    """UTC now as ISO 8601 with milliseconds and a Z."""
    return iso(datetime.now(UTC))


def iso(value: datetime) -> str:
    """``value`` as the journal writes times: UTC, milliseconds, a Z."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def new_run_id() -> str:
    """12 hex digits: short enough to type at 3 a.m.; `runs show` accepts a unique prefix."""
    return _random.token_hex(6)


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


class Encoder:
    """Values on their way into the journal, masked by the redactor."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor

    def dump(self, value: Any) -> str:
        """A document (params, outputs, evidence…) as compact JSON, secrets masked."""
        return json.dumps(self.redactor.data(value), default=str, separators=(",", ":"))

    def text(self, value: str | None) -> str | None:
        """A free text (error, actor…) with secrets masked; None stays None."""
        return None if value is None else self.redactor.text(value)


MAX_PAGE = 100_000
"""The most runs one `list_runs` call returns."""


def page_size(limit: int) -> int:
    """``limit`` clamped to 1..MAX_PAGE."""
    return max(1, min(limit, MAX_PAGE))


def checked_run_id(run_id: str) -> str:
    """``run_id`` stripped, or ``RunNotFound`` if it cannot be an id or a prefix of one."""
    key = run_id.strip()
    if not key or len(key) > 64 or not all(c.isalnum() or c in "-_" for c in key):
        raise errors.RunNotFound(
            f"{run_id[:64]!r} is not a run id", hint="list runs with `crystal-runbook runs`"
        )
    return key


def pick_by_prefix(key: str, rows: Sequence[tuple[Any, ...]]) -> tuple[Any, ...]:
    """The row whose id (first column) is ``key``, else the only one it prefixes.

    ``rows`` are at most two rows whose id starts with ``key``.
    """
    if not rows:
        raise errors.RunNotFound(
            f"no run {key!r} in the journal", hint="list runs with `crystal-runbook runs`"
        )
    exact = [r for r in rows if r[0] == key]
    if len(rows) > 1 and not exact:
        raise errors.RunNotFound(
            f"run id prefix {key!r} is ambiguous", hint="give more characters of the id"
        )
    return exact[0] if exact else rows[0]


def _time(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return iso(value)
    return str(value)


def _doc(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def run_from_row(row: Sequence[Any]) -> RunRecord:
    """A run from the ``RUN_COLUMNS`` of a row, plus ``runbook_text`` if it follows them."""
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
        params=_doc(params),
        started_at=_time(started_at) or "",
        ended_at=_time(ended_at),
        error=error,
        host=host,
        pid=pid,
        lock_key=lock_key,
        runbook_path=path,
        runbook_digest=digest,
        drill=bool(drill),
        meta=_doc(meta),
        runbook_text=row[17] if len(row) > 17 else "",
    )


def step_from_row(run_id: str, r: Sequence[Any]) -> StepRecord:
    """A step from the ``STEP_COLUMNS`` of a row."""
    return StepRecord(
        run_id=run_id,
        phase=r[0],
        index=r[1],
        id=r[2],
        uses=r[3],
        status=r[4],
        attempts=r[5],
        changed=None if r[6] is None else bool(r[6]),
        summary=r[7],
        changes=_doc(r[8]),
        resolved=_doc(r[9]),
        outputs=_doc(r[10]),
        evidence=_doc(r[11]),
        error=r[12],
        started_at=_time(r[13]),
        ended_at=_time(r[14]),
    )


def event_from_row(r: Sequence[Any]) -> EventRecord:
    """An event from the ``EVENT_COLUMNS`` of a row."""
    return EventRecord(r[0], r[1], r[2], _time(r[3]) or "", r[4], r[5], r[6], _doc(r[7]))
