"""`crystal-runbook db status|upgrade|downgrade`: the journal's schema version.

The embedded SQLite journal upgrades itself when opened, so these commands matter mostly
for a PostgreSQL journal (``CRYSTAL_DATABASE_URL``), which is only ever migrated on an
operator's word. Both backends ship the same numbered, reversible migrations; this module
picks the backend's store and runs ``engine.journal.migrations`` over it. A downgrade
drops indexes or tables and may drop data, so it asks for confirmation like a production
runbook does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from crystal_runbook import errors
from crystal_runbook.engine import journal as journal_mod
from crystal_runbook.engine.journal import migrations, sqlite_schema
from crystal_runbook.service import journals
from crystal_runbook.service.workspace import Workspace


@dataclass(frozen=True)
class Report:
    """Where the journal's schema stands, and what this command changed."""

    backend: str  # "sqlite" or "postgresql"
    where: str  # the SQLite path, or the URL with its password masked
    status: migrations.Status
    steps: list[migrations.Step] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        applied = {a.version: a.applied_at for a in self.status.applied}
        return {
            "backend": self.backend,
            "journal": self.where,
            "version": self.status.version,
            "head": self.status.head,
            "current": self.status.current,
            "migrations": [
                {"version": v, "name": n, "applied_at": applied.get(v)} for v, n in self.names
            ],
            "changed": [
                {"version": s.version, "name": s.name, "direction": s.direction} for s in self.steps
            ],
        }

    @property
    def names(self) -> list[tuple[int, str]]:
        """Every version this crystal-runbook ships, with its name."""
        known = {a.version: a.name for a in self.status.applied}
        known.update({m.version: m.name for m in self.status.pending})
        return sorted(known.items())


@dataclass(frozen=True)
class _Target:
    backend: str
    where: str
    store: migrations.Store
    shipped: list[migrations.Migration]


@contextmanager
def _target(ws: Workspace, *, create: bool) -> Iterator[_Target | None]:
    """The journal's migration store; None for an embedded journal never created."""
    url = ws.database_url
    where = journals.describe(ws.state_dir, database_url=url)
    if url:
        from crystal_runbook.postgres import database, schema

        with database.connect(url) as conn, database.translated(url, "migrating the journal"):
            yield _Target("postgresql", where, schema.PostgresSchema(conn), schema.shipped())
        return
    path = ws.state_dir / journals.SQLITE_FILE
    if not create and not path.exists():
        yield None
        return
    sqlite = journal_mod.connect(path)
    try:
        with sqlite_schema.translated(path):
            store = sqlite_schema.SqliteSchema(sqlite, path=path)
            yield _Target("sqlite", where, store, sqlite_schema.shipped())
    finally:
        sqlite.close()


def status(ws: Workspace) -> Report:
    """The journal's schema version, what is applied and what is pending. Changes nothing."""
    with _target(ws, create=False) as target:
        if target is None:  # no embedded journal yet: everything is pending, nothing created
            shipped = sqlite_schema.shipped()
            where = journals.describe(ws.state_dir, database_url=None)
            return Report("sqlite", where, migrations.Status(0, len(shipped), [], shipped))
        return Report(target.backend, target.where, migrations.status(target.store, target.shipped))


def upgrade(ws: Workspace, *, to: int | None = None) -> Report:
    """Apply the pending migrations (up to ``to``, default all). A second call does nothing.

    Raises:
        errors.ConfigurationError: ``to`` is below the current version (use ``downgrade``),
            or the database cannot be reached.
    """
    with _target(ws, create=True) as target:
        assert target is not None  # noqa: S101 - create=True always gives a target  # nosec B101
        before = migrations.status(target.store, target.shipped)
        goal = before.head if to is None else to
        if goal < before.version:
            raise errors.ConfigurationError(
                f"the journal is at schema version {before.version}, above {goal}",
                hint=f"use `crystal-runbook db downgrade --to {goal}` to go back",
            )
        steps = migrations.migrate(target.store, target.shipped, to=goal)
        return Report(
            target.backend,
            target.where,
            migrations.status(target.store, target.shipped),
            steps,
        )


def downgrade(
    ws: Workspace,
    *,
    to: int | None = None,
    assume_yes: bool = False,
    confirm: Callable[[str], bool] | None = None,
) -> Report:
    """Revert migrations down to version ``to`` (default: one below the current one).

    Raises:
        errors.ConfirmationRequired: neither ``assume_yes`` nor ``confirm`` said yes
            (exit 4); nothing was changed.
        errors.ConfigurationError: ``to`` is above the current version, or unknown.
    """
    with _target(ws, create=False) as target:
        if target is None:
            return status(ws)
        before = migrations.status(target.store, target.shipped)
        goal = max(before.version - 1, 0) if to is None else to
        if goal > before.version:
            raise errors.ConfigurationError(
                f"the journal is at schema version {before.version}, below {goal}",
                hint=f"use `crystal-runbook db upgrade --to {goal}`",
            )
        if goal < before.version and not assume_yes:
            undone = [m for m in target.shipped if goal < m.version <= before.version]
            names = ", ".join(f"{m.version:04d} {m.name}" for m in reversed(undone))
            loses = " and deletes every run in the journal" if goal == 0 else ""
            question = (
                f"downgrade the journal {target.where} from schema version {before.version} "
                f"to {goal} (reverts {names}{loses})? type yes"
            )
            if confirm is None or not confirm(question):
                raise errors.ConfirmationRequired(
                    f"downgrading the journal schema to version {goal} needs confirmation",
                    hint="add --yes",
                )
        steps = migrations.migrate(target.store, target.shipped, to=goal)
        return Report(
            target.backend,
            target.where,
            migrations.status(target.store, target.shipped),
            steps,
        )
