"""Which journal a workspace uses: SQLite in its state dir, or PostgreSQL by URL.

``CRYSTAL_DATABASE_URL`` (a secret, never printed but masked) puts the journal and the run
locks in a shared PostgreSQL database, for a team or several `serve` replicas; without it
the journal is `<state dir>/journal.db`, the embedded default. The composition root
(``workspace.Workspace``) and the light `runs` command both choose through here, so the
rule exists once. Importing this module imports no database client: psycopg is loaded
only when a URL is set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from crystal_runbook.engine import journal as journal_mod
from crystal_runbook.engine import locks as locks_mod
from crystal_runbook.engine.secrets import Redactor

DATABASE_URL_ENV = "CRYSTAL_DATABASE_URL"
"""The PostgreSQL journal's URL; unset or empty means the SQLite journal in the state dir."""
SQLITE_FILE = "journal.db"


def database_url(environ: Mapping[str, str] | None = None) -> str | None:
    """The journal database URL from the environment, or None for the embedded journal."""
    env = os.environ if environ is None else environ
    return env.get(DATABASE_URL_ENV, "").strip() or None


def open_journal(
    state_dir: Path,
    *,
    database_url: str | None,
    redactor: Redactor | None = None,
    pooled: bool = True,
) -> journal_mod.Journal:
    """The journal: PostgreSQL at ``database_url`` if given, else SQLite in ``state_dir``.

    ``pooled=False`` is for a short single-threaded read (`runs`): PostgreSQL then serves it
    on one connection instead of opening a pool.

    Raises:
        errors.ConfigurationError: the journal cannot be opened (unreachable database,
            schema not upgraded, unwritable state dir).
    """
    if database_url:
        from crystal_runbook.postgres import journal as pg_journal

        return pg_journal.open_journal(database_url, redactor=redactor, pooled=pooled)
    return journal_mod.open_journal(state_dir, redactor=redactor)


def open_locks(journal: journal_mod.Journal) -> locks_mod.LockTable:
    """The lock table beside ``journal``, sharing its database (and its pool)."""
    if isinstance(journal, journal_mod.SqliteJournal):
        return locks_mod.SqliteLocks(journal.path)
    from crystal_runbook.postgres import journal as pg_journal
    from crystal_runbook.postgres import locks as pg_locks

    if not isinstance(journal, pg_journal.PostgresJournal):
        raise TypeError(f"no lock table for a {type(journal).__name__}")
    return pg_locks.PostgresLocks(journal.db)


def journal_exists(state_dir: Path, *, database_url: str | None) -> bool:
    """False only for an embedded journal that was never written (reading must not create it).

    Raises:
        errors.ConfigurationError: the state dir is a file, under one, or unreadable: an
            error (exit 2), never an empty history.
    """
    if database_url:
        return True
    journal_mod.check_state_dir(state_dir)
    return (state_dir / SQLITE_FILE).exists()


def describe(state_dir: Path, *, database_url: str | None) -> str:
    """Where the journal is, fit to print: the SQLite path, or the URL with its password masked."""
    if database_url:
        from crystal_runbook.postgres import conninfo

        return conninfo.masked(database_url)
    return str(state_dir / SQLITE_FILE)
