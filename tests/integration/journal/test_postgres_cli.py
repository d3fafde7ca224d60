"""Runs through the console script with the journal and the locks in a real PostgreSQL."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable

import psycopg
import pytest

from crystal_runbook.testing import actions as fakes
from tests.conftest import Cli, fresh_postgres_journal
from tests.postgres import Postgres

pytestmark = pytest.mark.integration

SLOW = """\
apiVersion: crystal-runbook/v1
kind: Runbook
name: slow
lock: "slow/{{{{ env }}}}"
steps:
  - {{id: first, uses: fake.set, with: {{key: first, value: "1"}}}}
  - id: middle
    uses: fake.set
    with: {{key: middle, value: "2", {slow}}}
  - {{id: last, uses: fake.set, with: {{key: last, value: "3"}}}}
"""


@pytest.fixture
def url(postgres_server: Postgres) -> str:
    return fresh_postgres_journal(postgres_server)


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def step_status(url: str, step: str) -> str | None:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT status FROM steps WHERE id = %s", (step,)).fetchone()
    return None if row is None else str(row[0])


def test_two_concurrent_runs_with_one_lock_exactly_one_runs(cli: Cli, url: str) -> None:
    """The second run exits 3 naming the holder; nothing is written to the state dir's SQLite."""
    cli.write("runbooks/slow.yaml", SLOW.format(slow="verify_delay: 2"))
    first = cli.popen("run", "slow", CRYSTAL_DATABASE_URL=url)
    second = cli.popen("run", "slow", CRYSTAL_DATABASE_URL=url)
    results = [p.communicate(timeout=60) for p in (first, second)]
    codes = sorted([first.returncode, second.returncode])
    assert codes == [0, 3], "\n--- next process ---\n".join(err for _, err in results)
    loser = results[[first.returncode, second.returncode].index(3)][1]
    assert "lock 'slow/local' is held by run" in loser
    assert "actor tester on" in loser
    runs = json.loads(cli("runs", "-o", "json", CRYSTAL_DATABASE_URL=url).stdout)
    assert len(runs) == 1
    assert runs[0]["status"] == "ok"
    assert runs[0]["id"] in loser  # the message names the run that holds the lock
    assert not (cli.state / "journal.db").exists()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM locks").fetchone() == (0,)


def test_kill_9_then_resume_takes_over_the_stale_lock(cli: Cli, url: str) -> None:
    """A killed run's lock row stays; resume on the same host sees its dead pid and takes over."""
    cli.write("runbooks/slow.yaml", SLOW.format(slow="apply_delay: 3"))
    proc = cli.popen("run", "slow", CRYSTAL_DATABASE_URL=url)
    try:
        wait_for(lambda: step_status(url, "middle") == "applying")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    runs = json.loads(cli("runs", "-o", "json", CRYSTAL_DATABASE_URL=url).stdout)
    assert [r["status"] for r in runs] == ["interrupted"]  # killed: its process is gone
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT run_id FROM locks").fetchall() == [(runs[0]["id"],)]
    resumed = cli("resume", runs[0]["id"], CRYSTAL_DATABASE_URL=url)
    assert resumed.returncode == 0, resumed.stderr
    assert f"took over stale lock 'slow/local' from run {runs[0]['id']}" in resumed.stderr
    shown = json.loads(
        cli("runs", "show", runs[0]["id"], "-o", "json", CRYSTAL_DATABASE_URL=url).stdout
    )
    assert [s["status"] for s in shown["steps"]] == ["ok", "ok", "ok"]
    assert sorted(line.split()[0] for line in fakes.applies(cli.state)) == [
        "first=1",
        "last=3",
        "middle=2",
    ]


def test_a_wrong_password_is_a_clear_error_that_does_not_show_it(
    cli: Cli, postgres_server: Postgres, url: str
) -> None:
    """Exit 2, the masked URL, psycopg's reason, and nothing run or journalled."""
    cli.write("runbooks/slow.yaml", SLOW.format(slow="check_delay: 0"))
    wrong = url.replace(postgres_server.password, "not-the-Pa55word")
    out = cli("run", "slow", CRYSTAL_DATABASE_URL=wrong)
    assert out.returncode == 2
    assert "not-the-Pa55word" not in out.stdout + out.stderr
    assert "cannot reach the journal database postgresql://crystal:*****@127.0.0.1" in out.stderr
    assert "password authentication failed" in out.stderr
    assert not (cli.state / "fake-applies.log").exists()
