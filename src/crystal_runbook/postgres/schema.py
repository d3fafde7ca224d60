"""The PostgreSQL journal's schema version, moved only by `crystal-runbook db`.

Unlike the embedded journal, a shared database is never migrated implicitly: several
replicas and laptops may run different crystal-runbook versions against it, so the
schema moves when an operator says so (`db upgrade`, e.g. from a deploy job), and a
process that finds another version refuses with the command to run. Each migration runs
in one transaction under an advisory lock, so two upgrades started at once apply each
migration exactly once.
"""

from __future__ import annotations

from datetime import datetime

import psycopg
from psycopg.rows import TupleRow

from crystal_runbook import errors
from crystal_runbook.engine.journal import common, migrations

PACKAGE = "crystal_runbook.postgres.sql"
ADVISORY_LOCK = 0x63727973_7461_6C31 & 0x7FFF_FFFF_FFFF_FFFF
"""The advisory lock key migrations hold ('crystal1' in ASCII, as a positive bigint)."""
_TABLE = (
    "CREATE TABLE IF NOT EXISTS crystal_schema ("
    "version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)"
)

Conn = psycopg.Connection[TupleRow]


def shipped() -> list[migrations.Migration]:
    """The PostgreSQL migrations this crystal-runbook ships."""
    return migrations.load(PACKAGE)


class PostgresSchema:
    """``migrations.Store`` over one autocommit connection."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    def applied(self) -> list[migrations.Applied]:
        (table,) = self.conn.execute("SELECT to_regclass('crystal_schema')").fetchone() or (None,)
        if table is None:
            return []
        rows = self.conn.execute(
            "SELECT version, name, applied_at FROM crystal_schema ORDER BY version"
        ).fetchall()
        return [migrations.Applied(int(v), str(n), _text(at)) for v, n, at in rows]

    def apply(self, migration: migrations.Migration, *, up: bool, expect: int) -> bool:
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK,))
            self.conn.execute(_TABLE)
            row = self.conn.execute("SELECT COALESCE(MAX(version), 0) FROM crystal_schema")
            if (row.fetchone() or (0,))[0] != expect:
                return False
            # several statements in one call: allowed when no parameters are passed
            self.conn.execute(migration.up if up else migration.down)
            if up:
                self.conn.execute(
                    "INSERT INTO crystal_schema (version, name, applied_at) VALUES (%s, %s, now())",
                    (migration.version, migration.name),
                )
            else:
                self.conn.execute(
                    "DELETE FROM crystal_schema WHERE version = %s", (migration.version,)
                )
        return True


def check_current(conn: Conn, *, masked_url: str) -> None:
    """Refuse a journal database whose schema is not the one this crystal-runbook ships.

    Raises:
        errors.ConfigurationError: no schema yet, an older one, or a newer one.
    """
    head = len(shipped())
    version = migrations.version_of(PostgresSchema(conn).applied())
    if version == head:
        return
    if version > head:
        raise migrations.newer_than_known(version, head)
    what = "has no journal schema yet" if version == 0 else f"is at schema version {version}"
    raise errors.ConfigurationError(
        f"the journal database {masked_url} {what}; this crystal-runbook needs version {head}",
        hint="run `crystal-runbook db upgrade` (with the same CRYSTAL_DATABASE_URL)",
    )


def _text(value: object) -> str:
    return common.iso(value) if isinstance(value, datetime) else str(value)
