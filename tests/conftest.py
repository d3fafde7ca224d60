"""Fixtures shared by every test layer: a workspace with its own state dir and runbooks.

Journal and lock tests take ``journal_backend``, which runs them twice: on the embedded
SQLite journal and on PostgreSQL (one real server for the session, started on first use,
with a fresh schema per test; that half is marked `integration`).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from crystal_runbook import service, testing
from crystal_runbook.engine import journal as journal_mod
from crystal_runbook.engine import locks as locks_mod
from crystal_runbook.engine.secrets import Redactor
from tests.postgres import Postgres, start_postgres_server

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@dataclass
class Cli:
    """Runs the installed `crystal-runbook` console script in a temporary workspace."""

    root: Path

    @property
    def state(self) -> Path:
        return self.root / ".crystal"

    @property
    def runbooks(self) -> Path:
        return self.root / "runbooks"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRYSTAL_")}
        env.update(
            CRYSTAL_STATE_DIR=str(self.state),
            CRYSTAL_ACTION_MODULES="crystal_runbook.testing",
            CRYSTAL_ACTOR="tester",
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        )
        env.update(extra)
        return env

    def argv(self, *args: str) -> list[str]:
        return [str(BIN / "crystal-runbook"), *args]

    def __call__(
        self, *args: str, timeout: float = 60, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            cwd=self.root,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def popen(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            cwd=self.root,
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
        return path


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "inventory").mkdir()
    return Cli(tmp_path)


@pytest.fixture
def write_runbook(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write ``runbooks/<name>.yaml`` from an indented literal."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / "runbooks" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[service.Workspace]:
    """An in-process service layer with the fake actions and a recording sink."""
    (tmp_path / "runbooks").mkdir(exist_ok=True)
    (tmp_path / "inventory").mkdir(exist_ok=True)
    ws = service.Workspace(
        state_dir=tmp_path / ".crystal",
        inventory_dir=tmp_path / "inventory",
        runbooks_dir=tmp_path / "runbooks",
        actor="tester",
        sink=testing.RecordingSink(),
        action_modules=("crystal_runbook.testing",),
        database_url=None,
    )
    yield ws
    ws.close()


# -- the journal on both backends ------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """One PostgreSQL 15 for the session, with a `journal` database owned by `crystal`."""
    pg = start_postgres_server()
    try:
        pg.psql("CREATE DATABASE journal OWNER crystal")
        yield pg
    finally:
        pg.stop()


_SCHEMAS = itertools.count()


def fresh_postgres_journal(pg: Postgres, *, migrate: bool = True) -> str:
    """The URL of a new, empty schema in the `journal` database (migrated to the newest
    version by the product's own runner unless ``migrate`` is False)."""
    import psycopg

    from crystal_runbook.engine.journal import migrations
    from crystal_runbook.postgres import schema

    name = f"t{os.getpid()}_{next(_SCHEMAS)}"
    url = pg.dsn(database="journal", search_path=name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
        if migrate:
            shipped = schema.shipped()
            migrations.migrate(schema.PostgresSchema(conn), shipped, to=len(shipped))
    return url


@dataclass
class JournalBackend:
    """One journal backend under test: how to open its journal and its lock table."""

    name: str  # "sqlite", "postgresql" or "postgresql-1conn"
    state_dir: Path
    database_url: str | None = None
    pooled: bool = True
    journals: list[journal_mod.Journal] = field(default_factory=list)
    tables: list[locks_mod.LockTable] = field(default_factory=list)
    """What the test opened; closed after it (lock tables first, then journals)."""

    def open(self, *, redactor: Redactor | None = None) -> journal_mod.Journal:
        journal = service.journals.open_journal(
            self.state_dir, database_url=self.database_url, redactor=redactor, pooled=self.pooled
        )
        self.journals.append(journal)
        return journal

    def close_all(self) -> None:
        for table in self.tables:
            table.close()
        for journal in self.journals:
            journal.close()
        self.tables.clear()
        self.journals.clear()

    def locks(
        self, journal: journal_mod.Journal, *, pid: int | None = None, host: str | None = None
    ) -> locks_mod.LockTable:
        """A lock table on ``journal``'s database, as another process (``pid``) or host."""
        table: locks_mod.LockTable
        if isinstance(journal, journal_mod.SqliteJournal):
            table = locks_mod.SqliteLocks(journal.path, pid=pid)
            if host is not None:
                table.host = host
        else:
            from crystal_runbook.postgres import journal as pg_journal
            from crystal_runbook.postgres import locks as pg_locks

            assert isinstance(journal, pg_journal.PostgresJournal)
            table = pg_locks.PostgresLocks(journal.db, pid=pid, host=host)
        self.tables.append(table)
        return table

    def env(self) -> dict[str, str]:
        """Environment for the console script: the database URL when there is one."""
        return {"CRYSTAL_DATABASE_URL": self.database_url} if self.database_url else {}

    def stored_text(self) -> str:
        """Everything the journal's tables hold, as text (to look for leaked secrets)."""
        if self.database_url is None:
            import sqlite3

            with sqlite3.connect(self.state_dir / "journal.db") as conn:
                tables = ("runs", "steps", "events", "locks")
                return "\n".join(
                    repr(row)
                    for t in tables
                    for row in conn.execute(f"SELECT * FROM {t}")  # noqa: S608 - constant table names
                )
        import psycopg

        with psycopg.connect(self.database_url) as conn:
            return "\n".join(
                str(row[0])
                for t in ("runs", "steps", "events", "locks")
                for row in conn.execute(f"SELECT t::text FROM {t} t")  # noqa: S608 - constant table names
            )


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.integration),
        pytest.param("postgresql-1conn", marks=pytest.mark.integration),
    ]
)
def journal_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JournalBackend]:
    """The embedded SQLite journal, then the PostgreSQL one (a fresh schema each test) with
    its pool, and on one connection as `runs` opens it."""
    state = tmp_path / ".crystal"
    if request.param == "sqlite":
        backend = JournalBackend("sqlite", state)
    else:
        pg: Postgres = request.getfixturevalue("postgres_server")
        url = fresh_postgres_journal(pg)
        backend = JournalBackend(request.param, state, url, pooled=request.param == "postgresql")
    yield backend
    backend.close_all()


@pytest.fixture
def backend_workspace(
    journal_backend: JournalBackend, tmp_path: Path
) -> Iterator[service.Workspace]:
    """``workspace`` with its journal and locks on ``journal_backend``."""
    (tmp_path / "runbooks").mkdir(exist_ok=True)
    (tmp_path / "inventory").mkdir(exist_ok=True)
    ws = service.Workspace(
        state_dir=journal_backend.state_dir,
        inventory_dir=tmp_path / "inventory",
        runbooks_dir=tmp_path / "runbooks",
        actor="tester",
        sink=testing.RecordingSink(),
        action_modules=("crystal_runbook.testing",),
        database_url=journal_backend.database_url,
    )
    yield ws
    ws.close()


_WORKERS_PLANTED: set[str] = set()
"""Secrets the pytest-xdist workers generated at run time (their ``secretscan.plant``)."""


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist, in the controller: a worker ended; keep the secrets it planted."""
    output = getattr(node, "workeroutput", None) or {}
    _WORKERS_PLANTED.update(output.get("planted_secrets", ()))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The secret scan of everything this run made the product write (tests/secretscan.py):
    journals, logs, incident documents and outbox entries under the run's temporary
    directory must hold none of the tokens and passwords the tests planted; a finding fails
    the session. Under pytest-xdist each worker hands the secrets it generated to the
    controller, which scans every worker's directory (they are inside its own)."""
    from tests import secretscan

    if hasattr(session.config, "workerinput"):  # a pytest-xdist worker
        session.config.workeroutput["planted_secrets"] = sorted(secretscan.generated())  # type: ignore[attr-defined]  # set by pytest-xdist
        return
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None or getattr(factory, "_basetemp", None) is None:
        return  # nothing was written to a temporary directory
    planted = secretscan.planted() | _WORKERS_PLANTED
    findings = secretscan.outputs(factory.getbasetemp(), planted)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    for finding in findings:
        line = f"secret scan: {finding}"
        if reporter is not None:
            reporter.write_line(line, red=True)
        else:
            print(line, file=sys.stderr)
    if findings:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
