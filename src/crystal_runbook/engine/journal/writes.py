"""The journal's writes, once for every SQL backend.

A run's record is written the same way whatever holds it: one transaction per transition,
the run's row or a step's row plus the event that says what happened, every value through
the ``Encoder`` (so a secret is masked before it reaches a table). Only the transaction and
the parameter style differ between SQLite and PostgreSQL, so a backend subclasses
``SqlWrites``, gives ``PARAM`` and ``_tx``, and inherits the statements: the two backends
cannot drift apart in what they journal.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any, ClassVar

from crystal_runbook.engine.journal import common
from crystal_runbook.engine.journal.records import RunRecord, StepRecord
from crystal_runbook.engine.secrets import Redactor

_INSERT_RUN = (
    f"INSERT INTO runs ({common.RUN_COLUMNS}, runbook_text) "  # noqa: S608 - constant column lists, values bound  # nosec B608
    f"VALUES ({', '.join(['?'] * 18)})"
)
_UPDATE_RUN = (
    "UPDATE runs SET status = ?, ended_at = ?, error = ?, host = ?, pid = ?, meta = ? "
    "WHERE id = ?"
)
# an upsert on the primary key (SQLite 3.24+ and PostgreSQL share the syntax); a step is
# written again at each of its transitions
_UPSERT_STEP = (
    f"INSERT INTO steps (run_id, {common.STEP_COLUMNS}) VALUES ({', '.join(['?'] * 16)}) "  # noqa: S608 - constant column lists, values bound  # nosec B608
    "ON CONFLICT (run_id, phase, idx) DO UPDATE SET id = excluded.id, "
    "uses = excluded.uses, status = excluded.status, attempts = excluded.attempts, "
    "changed = excluded.changed, summary = excluded.summary, "
    "changes = excluded.changes, resolved = excluded.resolved, "
    "outputs = excluded.outputs, evidence = excluded.evidence, error = excluded.error, "
    "started_at = excluded.started_at, ended_at = excluded.ended_at"
)
_INSERT_EVENT = (
    "INSERT INTO events (run_id, step_id, at, kind, status, message, data) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


class SqlWrites:
    """``create_run``, ``update_run``, ``save_step`` and ``add_event`` over a DB-API cursor."""

    PARAM: ClassVar[str] = "?"
    """The driver's placeholder: ``?`` (sqlite3) or ``%s`` (psycopg)."""

    redactor: Redactor
    _encoder: common.Encoder

    def _tx(self, what: str) -> AbstractContextManager[Any]:
        """One write transaction, committed on leaving; ``what`` names it in errors."""
        raise NotImplementedError

    def _sql(self, statement: str) -> str:
        return statement if self.PARAM == "?" else statement.replace("?", self.PARAM)

    def _event(
        self,
        cur: Any,
        run_id: str,
        *,
        step_id: str | None,
        kind: str,
        status: str,
        message: str,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        cur.execute(
            self._sql(_INSERT_EVENT),
            (
                run_id,
                step_id,
                common.now_iso(),
                kind,
                status,
                self.redactor.text(message),
                self._encoder.dump(dict(data or {})),
            ),
        )

    def create_run(self, run: RunRecord) -> None:
        enc = self._encoder
        with self._tx(f"journalling run {run.id}") as cur:
            cur.execute(
                self._sql(_INSERT_RUN),
                (
                    run.id,
                    run.runbook,
                    run.env,
                    run.service,
                    enc.text(run.actor),
                    run.status,
                    enc.dump(run.params),
                    run.started_at,
                    run.ended_at,
                    enc.text(run.error),
                    run.host,
                    run.pid,
                    run.lock_key,
                    run.runbook_path,
                    run.runbook_digest,
                    bool(run.drill),
                    enc.dump(run.meta),
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
        enc = self._encoder
        with self._tx(f"journalling run {run.id}") as cur:
            cur.execute(
                self._sql(_UPDATE_RUN),
                (
                    run.status,
                    run.ended_at,
                    enc.text(run.error),
                    run.host,
                    run.pid,
                    enc.dump(run.meta),
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

    def _write_step(self, cur: Any, step: StepRecord) -> None:
        enc = self._encoder
        cur.execute(
            self._sql(_UPSERT_STEP),
            (
                step.run_id,
                step.phase,
                step.index,
                step.id,
                step.uses,
                step.status,
                step.attempts,
                step.changed,
                self.redactor.text(step.summary),
                enc.dump(step.changes),
                enc.dump(step.resolved),
                enc.dump(step.outputs),
                enc.dump(step.evidence),
                enc.text(step.error),
                step.started_at,
                step.ended_at,
            ),
        )

    def save_step(
        self, step: StepRecord, *, message: str = "", data: Mapping[str, Any] | None = None
    ) -> None:
        with self._tx(f"journalling step {step.id} of run {step.run_id}") as cur:
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
        with self._tx(f"journalling an event of run {run_id}") as cur:
            self._event(
                cur, run_id, step_id=step_id, kind=kind, status=status, message=message, data=data
            )
