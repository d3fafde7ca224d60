"""One PostgreSQL journal database per workspace: a connection pool, and errors translated.

A command opens the database once: a first, direct connection checks that the server
answers and that the schema is the one this crystal-runbook expects (so a wrong password or
a missing `db upgrade` is reported at once, with psycopg's reason, instead of as a pool
timeout); then a small pool serves the journal and the lock heartbeat, which write from
different threads, each connection checked as it is handed out (a database restart costs a
reconnect, not a failed write). A short read keeps the first connection instead (``pooled``
False). Every psycopg error leaves this module as ``errors.ConfigurationError`` naming the
masked URL and what to do; the password is never in it.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg.rows import TupleRow

from crystal_runbook import errors
from crystal_runbook.postgres import conninfo

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

CONNECT_TIMEOUT = 10
"""Seconds to wait for the server when the URL does not say (libpq's connect_timeout)."""
POOL_SIZE = 4
"""Connections per process at most: the run, the lock heartbeat, a notifier, one spare."""
POOL_TIMEOUT = 30.0
"""Seconds a journal write waits for a pooled connection before it is reported."""
APPLICATION_NAME = "crystal-runbook"
"""How the sessions appear in pg_stat_activity."""


def connect_kwargs(url: str) -> dict[str, object]:
    """Defaults for what the URL does not set: a connect timeout and an application name.

    Raises:
        errors.ConfigurationError: the URL cannot be parsed.
    """
    try:
        given = pg_conninfo.conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise errors.ConfigurationError(
            f"CRYSTAL_DATABASE_URL is not a PostgreSQL URL ({conninfo.masked(url)}): "
            f"{_reason(url, exc)}",
            hint="use postgresql://USER:PASSWORD@HOST:PORT/DATABASE",
        ) from None
    extra: dict[str, object] = {}
    if "connect_timeout" not in given:
        extra["connect_timeout"] = CONNECT_TIMEOUT
    if "application_name" not in given:
        extra["application_name"] = APPLICATION_NAME
    return extra


@contextmanager
def translated(url: str, doing: str) -> Iterator[None]:
    """Turn psycopg and pool errors raised inside into ``ConfigurationError``s; the server's
    disk full (SQLSTATE 53100) into ``DiskFull``, as the SQLite journal's, so that a run it
    stops ends interrupted and resumable."""
    try:
        yield
    except psycopg.errors.DiskFull as exc:
        raise errors.DiskFull(
            f"{doing}: the journal database {conninfo.masked(url)} is out of disk space: "
            f"{_reason(url, exc)}",
            hint="free disk space on the database server; a run it stopped continues with "
            "`crystal-runbook resume RUN_ID`",
        ) from None
    except psycopg.OperationalError as exc:
        raise errors.ConfigurationError(
            f"{doing}: cannot reach the journal database {conninfo.masked(url)}: "
            f"{_reason(url, exc)}",
            hint="check CRYSTAL_DATABASE_URL (host, port, user, password) and that the "
            "server is up; unset it to use the local SQLite journal",
        ) from None
    except psycopg.Error as exc:
        raise errors.ConfigurationError(
            f"{doing}: the journal database {conninfo.masked(url)} answered: {_reason(url, exc)}",
            hint="check the schema with `crystal-runbook db status`",
        ) from None
    except Exception as exc:
        pool = sys.modules.get("psycopg_pool")
        if pool is None or not isinstance(exc, pool.PoolTimeout):
            raise
        raise errors.ConfigurationError(
            f"{doing}: no connection to the journal database {conninfo.masked(url)} "
            f"became free ({exc})",
            hint="check the database is up and not out of connections",
        ) from None


def _reason(url: str, exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    for secret in conninfo.passwords(url):
        text = text.replace(secret, "*****")
    return conninfo.masked(text)


def connect(url: str, *, autocommit: bool = True) -> psycopg.Connection[TupleRow]:
    """One direct connection (migrations, and the check before the pool opens).

    Raises:
        errors.ConfigurationError: the server cannot be reached or refuses the login.
    """
    kwargs = connect_kwargs(url)
    with translated(url, "opening the journal"):
        return psycopg.connect(url, autocommit=autocommit, **kwargs)  # type: ignore[arg-type]  # libpq keyword arguments


class Database:
    """One journal database: transactions for the journal and the locks, on a pool or on one
    connection, and the URL in the only form that may be shown.

    ``pooled`` (the default, for runs and `serve`) opens a psycopg pool: the run, its lock
    heartbeat and notifier threads each get a connection, so none waits on another's round
    trip. Without it, the connection that checked the schema serves every transaction under
    a mutex: a short read such as `runs` pays for one login and never imports the pool.
    """

    def __init__(
        self, url: str, conn: psycopg.Connection[TupleRow], *, pooled: bool = True
    ) -> None:
        self.url = url
        self.masked = conninfo.masked(url)
        self._conn: psycopg.Connection[TupleRow] | None = None
        self._mutex = threading.Lock()
        self.pool: ConnectionPool[psycopg.Connection[TupleRow]] | None = None
        if not pooled:
            self._conn = conn
            return
        conn.close()
        from psycopg_pool import ConnectionPool

        self.pool = ConnectionPool(
            url,
            kwargs=connect_kwargs(url),
            min_size=1,
            max_size=POOL_SIZE,
            open=False,
            name="crystal-journal",
            timeout=POOL_TIMEOUT,
            check=ConnectionPool.check_connection,
        )
        with translated(url, "opening the journal"):
            self.pool.open(wait=False)

    @contextmanager
    def transaction(self, doing: str) -> Iterator[psycopg.Cursor[TupleRow]]:
        """A cursor in one transaction: committed when the block ends, rolled back on error."""
        if self.pool is not None:
            with translated(self.url, doing), self.pool.connection() as conn, conn.cursor() as cur:
                yield cur
            return
        assert self._conn is not None  # noqa: S101 - set when there is no pool  # nosec B101
        with (
            self._mutex,
            translated(self.url, doing),
            self._conn.transaction(),
            self._conn.cursor() as cur,
        ):
            yield cur

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
        if self._conn is not None:
            self._conn.close()

    def __repr__(self) -> str:
        return f"Database({self.masked!r})"
