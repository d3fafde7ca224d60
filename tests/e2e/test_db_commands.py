"""`db status|upgrade|downgrade` and `runs --before` through the console script, both backends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from crystal_runbook import service
from crystal_runbook.engine import journal
from tests.conftest import Cli, fresh_postgres_journal
from tests.postgres import Postgres


@dataclass
class Unmigrated:
    """A journal location with no schema yet, and what may never be printed about it."""

    backend: str
    env: dict[str, str]
    secret: str | None = None

    def run(self, cli: Cli, *args: str) -> tuple[int, str, str]:
        out = cli(*args, **self.env)
        if self.secret is not None:
            assert self.secret not in out.stdout + out.stderr
        return out.returncode, out.stdout, out.stderr


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def unmigrated(request: pytest.FixtureRequest) -> Iterator[Unmigrated]:
    if request.param == "sqlite":
        yield Unmigrated("sqlite", {})
        return
    pg: Postgres = request.getfixturevalue("postgres_server")
    url = fresh_postgres_journal(pg, migrate=False)
    yield Unmigrated("postgresql", {"CRYSTAL_DATABASE_URL": url}, secret=pg.password)


def test_status_upgrade_downgrade_round_trip(cli: Cli, unmigrated: Unmigrated) -> None:
    """Status changes nothing; upgrade is idempotent; downgrade asks, then reverts one version."""
    code, out, _ = unmigrated.run(cli, "db", "status")
    assert code == 0
    assert "schema version 0 of 2 (2 pending)" in out
    assert "0001 journal" in out
    assert "0002 runs_newest" in out
    if unmigrated.backend == "sqlite":
        assert not (cli.state / "journal.db").exists()  # status created nothing
    else:
        assert "postgresql://crystal:*****@127.0.0.1:" in out

    code, out, err = unmigrated.run(cli, "db", "upgrade")
    assert code == 0, err
    assert "applied 0001 journal" in err
    assert "applied 0002 runs_newest" in err
    assert "schema version 2 of 2 (up to date)" in out

    code, out, err = unmigrated.run(cli, "db", "upgrade")
    assert code == 0
    assert "nothing to do" in err

    code, out, err = unmigrated.run(cli, "db", "downgrade")
    assert code == 4
    assert "needs confirmation" in err
    assert "--yes" in err
    code, out, _ = unmigrated.run(cli, "db", "status", "-o", "json")
    assert json.loads(out)["version"] == 2

    code, out, err = unmigrated.run(cli, "db", "downgrade", "--yes")
    assert code == 0, err
    assert "reverted 0002 runs_newest" in err
    doc = json.loads(unmigrated.run(cli, "db", "status", "-o", "json")[1])
    assert (doc["backend"], doc["version"], doc["head"], doc["current"]) == (
        unmigrated.backend,
        1,
        2,
        False,
    )
    assert [m["applied_at"] is None for m in doc["migrations"]] == [False, True]

    code, out, err = unmigrated.run(cli, "runs")
    if unmigrated.backend == "sqlite":  # the embedded journal upgrades itself on use
        assert code == 0, err
        assert json.loads(unmigrated.run(cli, "db", "status", "-o", "json")[1])["version"] == 2
    else:  # a shared journal moves only on `db upgrade`
        assert code == 2
        assert "is at schema version 1; this crystal-runbook needs version 2" in err
        assert "crystal-runbook db upgrade" in err
        assert unmigrated.run(cli, "db", "upgrade", "--to", "2")[0] == 0
    assert unmigrated.run(cli, "runs")[0] == 0


def test_downgrade_to_zero_says_every_run_is_deleted(cli: Cli, unmigrated: Unmigrated) -> None:
    """The confirmation question names what is lost; --to above the version is refused."""
    assert unmigrated.run(cli, "db", "upgrade", "--to", "1")[0] == 0
    code, _, err = unmigrated.run(cli, "db", "upgrade", "--to", "0")
    assert code == 2
    assert "db downgrade --to 0" in err
    code, _, err = unmigrated.run(cli, "db", "downgrade", "--to", "2", "--yes")
    assert code == 2
    assert "below 2" in err
    code, out, err = unmigrated.run(cli, "db", "downgrade", "--to", "0", "--yes")
    assert code == 0, err
    assert "schema version 0 of 2" in out


def test_runs_pages_with_before(cli: Cli, unmigrated: Unmigrated) -> None:
    """`runs --limit N --before LAST` continues where the previous page stopped."""
    assert unmigrated.run(cli, "db", "upgrade")[0] == 0
    j = service.journals.open_journal(
        cli.state, database_url=unmigrated.env.get("CRYSTAL_DATABASE_URL")
    )
    for i in range(5):  # two share a start time: the id orders them
        started = f"2026-02-0{min(i, 3) + 1}T00:00:00.000Z"
        j.create_run(
            journal.RunRecord(f"run{i}", "quick", "local", "tester", "ok", started, host="h")
        )
    j.close()
    everything = [r["id"] for r in json.loads(unmigrated.run(cli, "runs", "-o", "json")[1])]
    assert everything == ["run4", "run3", "run2", "run1", "run0"]
    code, _out, err = unmigrated.run(cli, "runs", "--limit", "2")
    assert code == 0
    assert f"older runs: crystal-runbook runs --limit 2 --before {everything[1]}" in err
    pages = []
    before: list[str] = []
    while True:
        page = json.loads(unmigrated.run(cli, "runs", "--limit", "2", *before, "-o", "json")[1])
        if not page:
            break
        pages.append([r["id"] for r in page])
        before = ["--before", page[-1]["id"]]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [rid for p in pages for rid in p] == everything
    code, _, err = unmigrated.run(cli, "runs", "--before", "nosuchrun")
    assert code == 2
    assert "no run 'nosuchrun'" in err
