"""`crystal-runbook runs` over a long history, on SQLite and on PostgreSQL (target: <= 200 ms).

Builds a journal of 100,000 runs (two steps each; see tests/integration/journal/bulk.py) on
each backend, then times, in alternating rounds, the command line (`runs`, a `--service`
page, a page deep in the history with `--before`) against the database's own client asking
the same first page (`sqlite3`, `psql`: the peer, paying process start and a connection
like we do), what `runs` does once Python and the CLI are loaded (open the journal, list a
page, close: the figure tests/integration/journal/test_scale.py holds under 200 ms), and
the bare query in this process (the floor no tool can beat). Medians.
A `runs --before` page costs the same wherever it starts: the keyset index makes every
page an index range scan.

Run: .venv/bin/python bench/runs_list.py [--runs 100000] [--backend sqlite|postgresql|both]
(PostgreSQL 15 is started on a free port in a temporary directory, as the tests do.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import run_command, summary
from tests.integration.journal.bulk import load_postgres, load_sqlite, run_id
from tests.postgres import start_postgres_server

from crystal_runbook.engine import journal
from crystal_runbook.service import journals

FIRST_PAGE = "SELECT * FROM runs ORDER BY started_at DESC, id DESC LIMIT 20"
CLI = str(Path(sys.executable).parent / "crystal-runbook")


def alternate(cases: dict[str, Callable[[], object]], rounds: int) -> None:
    """Each case once per round, in turn, after one warm-up round; then medians side by side."""
    for fn in cases.values():
        fn()
    times: dict[str, list[float]] = {label: [] for label in cases}
    for _ in range(rounds):
        for label, fn in cases.items():
            started = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - started)
    for label, taken in times.items():
        print(f"  {label:<52} {summary(taken)}")


def cli_cases(env: dict[str, str], runs: int) -> dict[str, Callable[[], object]]:
    deep = run_id(runs // 2)
    return {
        "crystal-runbook runs": run_command([CLI, "runs"], env=env),
        "crystal-runbook runs --service maia --limit 50": run_command(
            [CLI, "runs", "--service", "maia", "--limit", "50"], env=env
        ),
        f"crystal-runbook runs --before {deep} (middle)": run_command(
            [CLI, "runs", "--before", deep], env=env
        ),
    }


def in_process(state: Path, url: str | None) -> Callable[[], object]:
    """What `runs` does after the interpreter and the CLI are loaded (the scale test's figure)."""

    def call() -> object:
        j = journals.open_journal(state, database_url=url, pooled=False)
        try:
            return j.list_runs(limit=20)
        finally:
            j.close()

    return call


def bench_sqlite(runs: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / ".crystal"
        journal.open_journal(state).close()
        db = state / "journal.db"
        load_sqlite(db, runs)
        env = {**os.environ, "CRYSTAL_STATE_DIR": str(state)}
        env.pop("CRYSTAL_DATABASE_URL", None)
        print(f"SQLite journal of {runs} runs ({db.stat().st_size // 1024} KiB)")
        cases = cli_cases(env, runs)
        if shutil.which("sqlite3"):
            cases["peer: sqlite3 journal.db (the same first page)"] = run_command(
                ["sqlite3", str(db), FIRST_PAGE]
            )

        def bare() -> object:
            with sqlite3.connect(db) as conn:
                return conn.execute(FIRST_PAGE).fetchall()

        cases["crystal-runbook's journal: open, page, close"] = in_process(state, None)
        cases["floor: the bare query, in process"] = bare
        alternate(cases, rounds)


def bench_postgres(runs: int, rounds: int) -> None:
    import psycopg

    pg = start_postgres_server()
    tmp = tempfile.mkdtemp()
    try:
        pg.psql("CREATE DATABASE journal OWNER crystal")
        url = pg.dsn(database="journal")
        env = {**os.environ, "CRYSTAL_DATABASE_URL": url}
        subprocess.run([CLI, "db", "upgrade"], env=env, check=True, capture_output=True)
        load_postgres(url, runs)
        with psycopg.connect(url) as conn:
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        print(f"PostgreSQL 15 journal of {runs} runs ({(size or (0,))[0] // 1024} KiB)")
        cases = cli_cases(env, runs)
        cases["peer: psql URL -c (the same first page)"] = run_command(
            ["psql", url, "-Atc", FIRST_PAGE]
        )

        def bare() -> object:
            with psycopg.connect(url) as conn:
                return conn.execute(FIRST_PAGE).fetchall()

        cases["crystal-runbook's journal: open, page, close"] = in_process(Path(tmp), url)
        cases["floor: connect and the bare query, in process"] = bare
        alternate(cases, rounds)
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.backend in ("sqlite", "both"):
        bench_sqlite(args.runs, args.rounds)
    if args.backend in ("postgresql", "both"):
        bench_postgres(args.runs, args.rounds)
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
