"""``PostgresJournal``: the ``Journal`` protocol on a shared PostgreSQL database.

The same records, the same redaction and the same guarantees as the SQLite journal: each
transition is one transaction, committed before the method returns, and every value
written passes through the workspace's ``Redactor`` (``common.Encoder``). Runs are listed
newest first by (started_at, id), the key of `runs --before`, on an index that ends in id.
"""

from __future__ import annotations

import socket
from contextlib import AbstractContextManager
from typing import Any

import psycopg

from crystal_runbook.engine.journal import common
from crystal_runbook.engine.journal.records import EventRecord, RunRecord
from crystal_runbook.engine.journal.writes import SqlWrites
from crystal_runbook.engine.secrets import Redactor
from crystal_runbook.postgres import conninfo, database, schema


class PostgresJournal(SqlWrites):
    """The journal in the database of ``CRYSTAL_DATABASE_URL``."""

    PARAM = "%s"

    def __init__(self, db: database.Database, *, redactor: Redactor | None = None) -> None:
        self.db = db
        self.redactor = redactor or Redactor()
        self._encoder = common.Encoder(self.redactor)
        self.host = socket.gethostname()

    # -- writes: ``SqlWrites``, in the database's own transactions -------------------------

    def _tx(self, what: str) -> AbstractContextManager[psycopg.Cursor[Any]]:
        return self.db.transaction(what)

    # -- reads -------------------------------------------------------------------------------

    def _matching(self, cur: psycopg.Cursor[Any], key: str, columns: str) -> tuple[Any, ...]:
        """The row of the run ``key`` names exactly or as a unique prefix."""
        pattern = key.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"
        cur.execute(
            f"SELECT {columns} FROM runs WHERE id LIKE %s ORDER BY id LIMIT 2",  # noqa: S608 - constant column lists, values bound  # nosec B608
            (pattern,),
        )
        return common.pick_by_prefix(key, cur.fetchall())

    def get_run(self, run_id: str) -> RunRecord:
        key = common.checked_run_id(run_id)
        with self.db.transaction(f"reading run {key}") as cur:
            run = common.run_from_row(
                self._matching(cur, key, f"{common.RUN_COLUMNS}, runbook_text")
            )
            cur.execute(
                f"SELECT {common.STEP_COLUMNS} FROM steps "  # noqa: S608 - constant column lists, values bound  # nosec B608
                "WHERE run_id = %s ORDER BY phase = 'on_failure', idx",
                (run.id,),
            )
            run.steps = [common.step_from_row(run.id, r) for r in cur.fetchall()]
        return run

    def list_runs(
        self, *, service: str | None = None, limit: int = 20, before: str | None = None
    ) -> list[RunRecord]:
        where: list[str] = []
        args: list[Any] = []
        with self.db.transaction("listing runs") as cur:
            if service:
                where.append("service = %s")
                args.append(service)
            if before is not None:
                rid, started_at = self._matching(
                    cur, common.checked_run_id(before), "id, started_at"
                )
                where.append("(started_at, id) < (%s, %s)")
                args += [started_at, rid]
            query = f"SELECT {common.RUN_COLUMNS} FROM runs"  # noqa: S608 - constant column lists, values bound  # nosec B608
            if where:
                query += " WHERE " + " AND ".join(where)
            query += " ORDER BY started_at DESC, id DESC LIMIT %s"
            args.append(common.page_size(limit))
            cur.execute(query, args)
            rows = cur.fetchall()
        return [common.run_from_row(r) for r in rows]

    def events(self, run_id: str) -> list[EventRecord]:
        with self.db.transaction(f"reading the events of run {run_id}") as cur:
            cur.execute(
                f"SELECT {common.EVENT_COLUMNS} FROM events WHERE run_id = %s ORDER BY seq",  # noqa: S608 - constant column lists, values bound  # nosec B608
                (run_id,),
            )
            return [common.event_from_row(r) for r in cur.fetchall()]

    def close(self) -> None:
        self.db.close()


def open_journal(
    url: str, *, redactor: Redactor | None = None, pooled: bool = True
) -> PostgresJournal:
    """The journal in the PostgreSQL database at ``url``, its schema checked.

    ``pooled``: a connection pool for the run's threads (else one connection; see
    ``database.Database``). The URL's password is added to ``redactor``, so it is masked
    wherever it might appear.

    Raises:
        errors.ConfigurationError: the database cannot be reached, or its schema is not the
            one this crystal-runbook needs (`crystal-runbook db upgrade`).
    """
    redactor = redactor or Redactor()
    for secret in conninfo.passwords(url):
        redactor.add(secret)
    conn = database.connect(url)
    try:
        with database.translated(url, "opening the journal"):
            schema.check_current(conn, masked_url=conninfo.masked(url))
    except BaseException:
        conn.close()
        raise
    return PostgresJournal(database.Database(url, conn, pooled=pooled), redactor=redactor)
