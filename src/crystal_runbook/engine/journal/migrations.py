"""Versioned, reversible schema migrations: numbered SQL files and a small runner.

Each backend ships its migrations as package data, two files per version::

    0001_journal.up.sql     0001_journal.down.sql
    0002_runs_newest.up.sql 0002_runs_newest.down.sql

Version numbers mean the same schema on every backend (version 2 is "runs listed by a
keyset index" on SQLite and on PostgreSQL alike), so `db status` reads the same everywhere.
The runner knows no database: a backend gives it a ``Store`` that reads the applied
versions and applies one migration atomically (DDL and the version row in one
transaction), refusing when the version is no longer the one it expected. Two processes
upgrading at once therefore never apply a migration twice; the loser re-plans and finds
nothing to do.

A small runner rather than a migration framework: the SQL of each backend stays plain and
reviewable, the SQLite journal upgrades itself on open in a few milliseconds, and `runs`
pays no framework import.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from crystal_runbook import errors

_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.(?P<way>up|down)\.sql$")
_MAX_STEPS = 1000
"""Bound on plan-apply rounds: each round moves the version, so this is never reached."""


@dataclass(frozen=True)
class Migration:
    """One schema version: the SQL that reaches it from the one before, and back."""

    version: int
    name: str
    up: str
    down: str


@dataclass(frozen=True)
class Applied:
    """A version recorded in the database, and when it was applied."""

    version: int
    name: str
    applied_at: str


@dataclass(frozen=True)
class Step:
    """One migration applied by ``migrate``: which, and in which direction."""

    version: int
    name: str
    direction: str  # "up" or "down"


@dataclass(frozen=True)
class Status:
    """Where a database stands against the migrations this crystal-runbook ships."""

    version: int
    head: int
    applied: list[Applied]
    pending: list[Migration]

    @property
    def current(self) -> bool:
        return self.version == self.head


class Store(Protocol):
    """A database's schema, as the runner needs it."""

    def applied(self) -> list[Applied]:
        """The recorded versions, oldest first (empty for a database without the schema)."""
        ...

    def apply(self, migration: Migration, *, up: bool, expect: int) -> bool:
        """Run ``migration`` up or down in one transaction, with its version row.

        Returns False, changing nothing, when the database's version is not ``expect``
        (another process migrated meanwhile).
        """
        ...


def load(package: str) -> list[Migration]:
    """The migrations shipped in ``package`` (a directory of SQL files), in order.

    Raises:
        errors.ConfigurationError: a version is missing a file or the numbering has gaps;
            a broken installation, caught by the tests before it ships.
    """
    return list(_load(package))


@functools.cache
def _load(package: str) -> tuple[Migration, ...]:
    found: dict[int, dict[str, str]] = {}
    names: dict[int, str] = {}
    for entry in _directory(package).iterdir():
        match = _FILE.match(entry.name)
        if not match:
            continue
        version = int(match["version"])
        names[version] = match["name"]
        found.setdefault(version, {})[match["way"]] = entry.read_text(encoding="utf-8")
    migrations = []
    for expected, version in enumerate(sorted(found), start=1):
        files = found[version]
        if version != expected or set(files) != {"up", "down"}:
            raise errors.ConfigurationError(
                f"schema migrations in {package} are incomplete at version {expected}",
                hint="reinstall crystal-runbook",
            )
        migrations.append(Migration(version, names[version], files["up"], files["down"]))
    return tuple(migrations)


def _directory(package: str) -> Path:
    """Where the package's SQL files are: beside its ``__init__`` (shipped as package data).

    Plain files rather than ``importlib.resources``, whose import alone costs more than
    reading the files, on the path of every `runs`.
    """
    module = importlib.import_module(package)
    if module.__file__ is None:
        raise errors.ConfigurationError(f"schema migrations package {package} has no files")
    return Path(module.__file__).parent


def version_of(applied: Sequence[Applied]) -> int:
    return max((a.version for a in applied), default=0)


def status(store: Store, migrations: Sequence[Migration]) -> Status:
    applied = store.applied()
    version = version_of(applied)
    return Status(
        version=version,
        head=len(migrations),
        applied=applied,
        pending=[m for m in migrations if m.version > version],
    )


def migrate(store: Store, migrations: Sequence[Migration], *, to: int) -> list[Step]:
    """Bring the schema to version ``to`` (0 removes it), one migration per transaction.

    Returns the steps this call applied (none when already there).

    Raises:
        errors.ConfigurationError: ``to`` is not a version this crystal-runbook knows, or
            the database is at a version newer than it knows.
    """
    head = len(migrations)
    if not 0 <= to <= head:
        raise errors.ConfigurationError(
            f"there is no schema version {to}: this crystal-runbook knows versions 0 to {head}"
        )
    done: list[Step] = []
    for _ in range(_MAX_STEPS):
        current = version_of(store.applied())
        if current > head:
            raise newer_than_known(current, head)
        if current == to:
            return done
        up = current < to
        migration = migrations[current] if up else migrations[current - 1]
        if store.apply(migration, up=up, expect=current):
            done.append(Step(migration.version, migration.name, "up" if up else "down"))
    raise errors.ConfigurationError("schema migration did not settle; is another one running?")


def newer_than_known(version: int, head: int) -> errors.ConfigurationError:
    return errors.ConfigurationError(
        f"the journal's schema is at version {version}, newer than this crystal-runbook "
        f"knows ({head})",
        hint="upgrade crystal-runbook, or run `crystal-runbook db downgrade` with the newer one",
    )
