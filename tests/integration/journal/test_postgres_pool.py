"""The PostgreSQL journal's pool survives what a shared database does: restarts, failovers."""

from __future__ import annotations

from pathlib import Path

import pytest

from crystal_runbook import service
from crystal_runbook.engine import journal
from tests.conftest import fresh_postgres_journal
from tests.postgres import Postgres

pytestmark = pytest.mark.integration


def test_writes_go_on_after_the_server_drops_every_connection(
    postgres_server: Postgres, tmp_path: Path
) -> None:
    """Connections killed under the pool (a restart, a failover): the next write reconnects."""
    url = fresh_postgres_journal(postgres_server)
    j = service.journals.open_journal(tmp_path, database_url=url)
    try:
        j.create_run(journal.RunRecord("before", "rollback", "prod", "a", "ok", journal.now_iso()))
        killed = postgres_server.psql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = 'journal' AND application_name = 'crystal-runbook'"
        )
        assert int(killed.strip()) >= 1
        j.create_run(journal.RunRecord("after", "rollback", "prod", "a", "ok", journal.now_iso()))
        assert [r.id for r in j.list_runs()] == ["after", "before"]
    finally:
        j.close()
