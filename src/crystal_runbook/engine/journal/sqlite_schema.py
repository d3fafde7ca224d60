"""The SQLite journal's schema version: read it, move it, one migration per transaction.

The embedded journal upgrades itself when it is opened (``ensure_current``): one machine,
one user, nothing else reads the file with an older crystal-runbook. `crystal-runbook db`
uses the same ``SqliteSchema`` store to show the version or to go back to an older one.
The version table is ``crystal_schema``; a journal from before versions has none, and
migration 1 (all ``IF NOT EXISTS``) adopts it unchanged.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from crystal_runbook import errors
from crystal_runbook.engine.journal import common, migrations

PACKAGE = "crystal_runbook.engine.journal.sql"
_TABLE = (
    "CREATE TABLE IF NOT EXISTS crystal_schema ("
    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
)


def shipped() -> list[migrations.Migration]:
    """The SQLite migrations this crystal-runbook ships."""
    return migrations.load(PACKAGE)


class SqliteSchema:
    """``migrations.Store`` over one SQLite connection in autocommit mode."""

    def __init__(self, conn: sqlite3.Connection, *, path: Path) -> None:
        self.conn = conn
        self.path = path

    def applied(self) -> list[migrations.Applied]:
        found = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'crystal_schema'"
        ).fetchone()
        if found is None:
            return []
        rows = self.conn.execute(
            "SELECT version, name, applied_at FROM crystal_schema ORDER BY version"
        ).fetchall()
        return [migrations.Applied(int(v), str(n), str(at)) for v, n, at in rows]

    def apply(self, migration: migrations.Migration, *, up: bool, expect: int) -> bool:
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")  # the write lock first: the version read below holds
        try:
            cur.execute(_TABLE)
            current = cur.execute("SELECT COALESCE(MAX(version), 0) FROM crystal_schema")
            if current.fetchone()[0] != expect:
                cur.execute("ROLLBACK")
                return False
            for statement in statements(migration.up if up else migration.down):
                cur.execute(statement)
            if up:
                cur.execute(
                    "INSERT INTO crystal_schema (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, common.now_iso()),
                )
            else:
                cur.execute("DELETE FROM crystal_schema WHERE version = ?", (migration.version,))
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")
        return True


def ensure_current(conn: sqlite3.Connection, *, path: Path) -> None:
    """Upgrade the journal at ``path`` to the newest schema (a read when it already is).

    Raises:
        errors.ConfigurationError: the journal was written by a newer crystal-runbook.
    """
    store = SqliteSchema(conn, path=path)
    shipped_now = shipped()
    version = migrations.version_of(store.applied())
    if version == len(shipped_now):
        return
    if version > len(shipped_now):
        raise migrations.newer_than_known(version, len(shipped_now))
    migrations.migrate(store, shipped_now, to=len(shipped_now))


def statements(script: str) -> Iterator[str]:
    """The statements of an SQL script one by one (``executescript`` would commit first)."""
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \t\r\n;"):
                yield buffer
            buffer = ""


@contextmanager
def translated(path: Path) -> Iterator[None]:
    """SQLite errors during a migration as ``ConfigurationError`` naming the journal."""
    try:
        yield
    except sqlite3.Error as exc:
        raise errors.ConfigurationError(
            f"cannot migrate the journal {path}: {exc}",
            hint="check the state directory (--state-dir, $CRYSTAL_STATE_DIR) is writable",
        ) from None
