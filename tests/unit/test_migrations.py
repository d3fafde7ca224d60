"""Schema migrations on both backends: numbered, reversible, data kept, applied once."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crystal_runbook import errors, service
from crystal_runbook.engine import journal
from crystal_runbook.engine.journal import migrations, sqlite_schema
from tests.conftest import fresh_postgres_journal
from tests.postgres import Postgres

INDEXES = {
    0: set(),
    1: {"runs_started", "runs_service", "events_run"},
    2: {"runs_newest", "runs_service_newest", "events_run"},
}
"""The indexes each schema version has (beyond primary keys), on both backends."""
TABLES = ("runs", "steps", "events", "locks")


@dataclass
class Database:
    """One empty database of a backend, seen through the migration store and plain SQL."""

    name: str
    state_dir: Path
    url: str | None
    conn: Any  # sqlite3.Connection or psycopg.Connection
    store: migrations.Store
    shipped: list[migrations.Migration]

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.conn.execute(sql).fetchall()]

    def indexes(self) -> set[str]:
        if self.name == "sqlite":
            found = self.rows(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            )
        else:
            found = self.rows(
                "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
                "AND indexname NOT LIKE '%pkey'"
            )
        return {r[0] for r in found}

    def tables(self) -> set[str]:
        if self.name == "sqlite":
            found = self.rows("SELECT name FROM sqlite_master WHERE type = 'table'")
        else:
            found = self.rows("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        return {r[0] for r in found} & set(TABLES)

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every journal table, in a stable order."""
        order = {"runs": "id", "steps": "run_id, phase, idx", "events": "seq", "locks": "key"}
        return {t: self.rows(f"SELECT * FROM {t} ORDER BY {order[t]}") for t in TABLES}  # noqa: S608 - constant names

    def migrate(self, to: int) -> list[migrations.Step]:
        return migrations.migrate(self.store, self.shipped, to=to)

    def version(self) -> int:
        return migrations.version_of(self.store.applied())

    def open_journal(self) -> journal.Journal:
        return service.journals.open_journal(self.state_dir, database_url=self.url)


def _sqlite(state: Path) -> Database:
    path = state / "journal.db"
    conn = journal.connect(path)
    store = sqlite_schema.SqliteSchema(conn, path=path)
    return Database("sqlite", state, None, conn, store, sqlite_schema.shipped())


def _postgres(state: Path, url: str) -> Database:
    import psycopg

    from crystal_runbook.postgres import schema

    conn = psycopg.connect(url, autocommit=True)
    return Database("postgresql", state, url, conn, schema.PostgresSchema(conn), schema.shipped())


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def empty(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty database with no schema at all, on each backend."""
    state = tmp_path / ".crystal"
    if request.param == "sqlite":
        db = _sqlite(state)
    else:
        pg: Postgres = request.getfixturevalue("postgres_server")
        db = _postgres(state, fresh_postgres_journal(pg, migrate=False))
    yield db
    db.conn.close()


def fill(j: journal.Journal, count: int = 5) -> None:
    """Runs with steps and events, as a real history would have."""
    for i in range(count):
        run = journal.RunRecord(
            id=f"run{i:03d}",
            runbook="rollback",
            env="production",
            actor="oncall",
            status="ok",
            started_at=f"2026-05-0{i + 1}T03:00:00.000Z",
            service="maia",
            params={"service": "maia", "reason": f"incident {i}"},
            host="h",
            pid=1,
            steps=[
                journal.StepRecord(
                    run_id=f"run{i:03d}", phase="main", index=s, id=f"s{s}", uses="wait"
                )
                for s in range(2)
            ],
        )
        j.create_run(run)
        run.steps[0].status = "ok"
        j.save_step(run.steps[0], message="done", data={"n": i})


class TestShipped:
    def test_both_backends_ship_the_same_numbered_reversible_versions(self) -> None:
        """Version N means the same schema on SQLite and PostgreSQL; each has up and down."""
        from crystal_runbook.postgres import schema

        lite = sqlite_schema.shipped()
        pg = schema.shipped()
        assert [(m.version, m.name) for m in lite] == [(m.version, m.name) for m in pg]
        assert [m.version for m in lite] == list(range(1, len(lite) + 1))
        assert len(lite) == max(INDEXES)
        assert all(m.up.strip() and m.down.strip() for m in [*lite, *pg])

    def test_a_gap_in_the_numbering_is_refused(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A broken installation (a missing file) is reported, not half-applied."""
        package = tmp_path / "brokenmigrations"
        package.mkdir()
        (package / "__init__.py").write_text("")
        (package / "0001_a.up.sql").write_text("SELECT 1;")
        (package / "0001_a.down.sql").write_text("SELECT 1;")
        (package / "0003_c.up.sql").write_text("SELECT 1;")
        (package / "0003_c.down.sql").write_text("SELECT 1;")
        monkeypatch.syspath_prepend(str(tmp_path))
        with pytest.raises(errors.ConfigurationError, match="incomplete at version 2"):
            migrations.load("brokenmigrations")


class TestUpAndDown:
    def test_every_migration_goes_down_and_up_again_with_data_kept(self, empty: Database) -> None:
        """Down to each version and back to the newest: every row is still there, unchanged."""
        head = len(empty.shipped)
        assert [s.direction for s in empty.migrate(head)] == ["up"] * head
        assert empty.indexes() == INDEXES[head]
        j = empty.open_journal()
        fill(j)
        table = service.journals.open_locks(j)
        table.acquire("maia/production", run_id="run004", actor="oncall")  # held, as in a crash
        table.close()
        j.close()
        before = empty.snapshot()
        assert [len(before[t]) for t in TABLES] == [5, 10, 10, 1]
        for version in range(head - 1, 0, -1):
            steps = empty.migrate(version)
            assert [(s.version, s.direction) for s in steps] == [(version + 1, "down")]
            assert empty.version() == version
            assert empty.indexes() == INDEXES[version]
            assert empty.snapshot() == before, f"data changed going down to {version}"
            assert [(s.version, s.direction) for s in empty.migrate(head)] == [
                (v, "up") for v in range(version + 1, head + 1)
            ]
            assert empty.indexes() == INDEXES[head]
            assert empty.snapshot() == before, f"data changed coming back from {version}"
        j = empty.open_journal()
        assert [r.id for r in j.list_runs(limit=2, before="run003")] == ["run002", "run001"]
        j.close()

    def test_down_to_zero_drops_the_journal_and_up_recreates_it_empty(
        self, empty: Database
    ) -> None:
        """The first migration's down is the only one that loses data: it drops the tables."""
        head = len(empty.shipped)
        empty.migrate(head)
        j = empty.open_journal()
        fill(j, 2)
        j.close()
        empty.migrate(0)
        assert empty.version() == 0
        assert empty.tables() == set()
        empty.migrate(head)
        assert empty.tables() == set(TABLES)
        assert empty.snapshot()["runs"] == []

    def test_upgrading_twice_changes_nothing_the_second_time(self, empty: Database) -> None:
        """`db upgrade` is idempotent."""
        head = len(empty.shipped)
        assert len(empty.migrate(head)) == head
        assert empty.migrate(head) == []
        assert [a.version for a in empty.store.applied()] == list(range(1, head + 1))

    def test_two_upgrades_at_once_apply_each_migration_once(self, empty: Database) -> None:
        """Two processes upgrading the same database: every migration runs exactly once."""
        head = len(empty.shipped)
        other = (
            _sqlite(empty.state_dir) if empty.url is None else _postgres(empty.state_dir, empty.url)
        )
        done: list[list[migrations.Step]] = []
        errors_seen: list[BaseException] = []
        start = threading.Barrier(2)

        def upgrade(db: Database) -> None:
            start.wait()
            try:
                done.append(db.migrate(head))
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors_seen.append(exc)

        threads = [threading.Thread(target=upgrade, args=(db,)) for db in (empty, other)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        other.conn.close()
        assert errors_seen == []
        applied = sorted(s.version for steps in done for s in steps)
        assert applied == list(range(1, head + 1))
        assert empty.version() == head

    def test_an_unknown_target_version_is_refused(self, empty: Database) -> None:
        """`db upgrade --to 99` names the versions this crystal-runbook knows."""
        with pytest.raises(errors.ConfigurationError, match="no schema version 99"):
            empty.migrate(99)
        assert empty.version() == 0


OLD_SCHEMA = """
CREATE TABLE runs (id TEXT PRIMARY KEY, runbook TEXT NOT NULL, env TEXT NOT NULL, service TEXT,
    actor TEXT NOT NULL, status TEXT NOT NULL, params TEXT NOT NULL, started_at TEXT NOT NULL,
    ended_at TEXT, error TEXT, host TEXT NOT NULL, pid INTEGER NOT NULL, lock_key TEXT,
    runbook_path TEXT NOT NULL, runbook_digest TEXT NOT NULL, runbook_text TEXT NOT NULL,
    drill INTEGER NOT NULL DEFAULT 0, meta TEXT NOT NULL DEFAULT '{}');
CREATE INDEX runs_started ON runs (started_at DESC);
CREATE INDEX runs_service ON runs (service, started_at DESC);
CREATE TABLE steps (run_id TEXT NOT NULL REFERENCES runs (id), phase TEXT NOT NULL,
    idx INTEGER NOT NULL, id TEXT NOT NULL, uses TEXT NOT NULL, status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, changed INTEGER, summary TEXT NOT NULL DEFAULT '',
    changes TEXT NOT NULL DEFAULT '[]', resolved TEXT NOT NULL DEFAULT '{}',
    outputs TEXT NOT NULL DEFAULT '{}', evidence TEXT NOT NULL DEFAULT '{}', error TEXT,
    started_at TEXT, ended_at TEXT, PRIMARY KEY (run_id, phase, idx));
CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, step_id TEXT,
    at TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL, message TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}');
CREATE INDEX events_run ON events (run_id, seq);
INSERT INTO runs VALUES ('0123456789ab', 'rollback', 'production', 'maia', 'oncall', 'ok', '{}',
    '2026-01-01T00:00:00.000Z', '2026-01-01T00:01:00.000Z', NULL, 'h', 1, 'maia/production',
    'runbooks/rollback.yaml', 'sha256:x', 'name: rollback', 0, '{}');
INSERT INTO steps (run_id, phase, idx, id, uses, status) VALUES
    ('0123456789ab', 'main', 0, 'undo', 'k8s.rollout_undo', 'ok');
INSERT INTO events (run_id, at, kind, status, message) VALUES
    ('0123456789ab', '2026-01-01T00:00:00.000Z', 'run', 'running', 'run of rollback started');
"""
"""A journal as crystal-runbook wrote it before schema versions (no crystal_schema table)."""


class TestOpening:
    def test_an_unversioned_sqlite_journal_is_adopted_and_upgraded_in_place(
        self, tmp_path: Path
    ) -> None:
        """Opening a journal from before versions keeps its runs and brings it to the newest."""
        state = tmp_path / ".crystal"
        state.mkdir()
        with sqlite3.connect(state / "journal.db") as conn:
            conn.executescript(OLD_SCHEMA)
        j = journal.open_journal(state)
        run = j.get_run("0123")
        assert (run.status, [s.id for s in run.steps]) == ("ok", ["undo"])
        assert [e.message for e in j.events(run.id)] == ["run of rollback started"]
        j.close()
        db = _sqlite(state)
        assert db.version() == len(db.shipped)
        assert db.indexes() == INDEXES[len(db.shipped)]
        db.conn.close()

    def test_a_sqlite_journal_from_a_newer_crystal_runbook_is_refused(self, tmp_path: Path) -> None:
        """A schema newer than this version knows is not touched: upgrade the tool instead."""
        state = tmp_path / ".crystal"
        journal.open_journal(state).close()
        with sqlite3.connect(state / "journal.db") as conn:
            conn.execute("INSERT INTO crystal_schema VALUES (99, 'future', 'x')")
        with pytest.raises(errors.ConfigurationError, match="version 99, newer than"):
            journal.open_journal(state)

    @pytest.mark.integration
    def test_a_postgres_journal_is_never_migrated_implicitly(
        self, postgres_server: Postgres, tmp_path: Path
    ) -> None:
        """Without `db upgrade` the journal refuses to open, saying which command to run."""
        url = fresh_postgres_journal(postgres_server, migrate=False)
        db = _postgres(tmp_path, url)
        with pytest.raises(errors.ConfigurationError) as info:
            db.open_journal()
        assert "has no journal schema yet; this crystal-runbook needs version 2" in str(info.value)
        assert "crystal-runbook db upgrade" in str(info.value)
        assert postgres_server.password not in str(info.value)
        assert db.version() == 0
        db.migrate(1)
        with pytest.raises(errors.ConfigurationError, match="is at schema version 1"):
            db.open_journal()
        db.migrate(2)
        db.conn.execute(
            "INSERT INTO crystal_schema (version, name, applied_at) VALUES (3, 'future', now())"
        )
        with pytest.raises(errors.ConfigurationError, match="version 3, newer than"):
            db.open_journal()
        db.conn.close()
