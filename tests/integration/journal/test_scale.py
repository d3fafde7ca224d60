"""`runs` over 100,000 journalled runs answers in under 200 ms, on both backends.

The journal is bulk-loaded (as a year of a busy team's history would be), then the whole
of what `runs` does after Python starts is timed: open the journal (for PostgreSQL: connect,
check the schema, open the pool), list a page, close. The first page, a `--service` page
and a page deep in the history (`--before`) all go through the keyset index with no sort
(PostgreSQL on one connection, as `runs` opens it);
the query plans are checked too, so a lost index fails here even on a fast machine.
"""

from __future__ import annotations

import sqlite3
import statistics
import time
from collections.abc import Callable
from typing import Any

import pytest

from crystal_runbook.engine import journal
from tests.conftest import JournalBackend
from tests.integration.journal.bulk import RUNS, load_postgres, load_sqlite, run_id

pytestmark = pytest.mark.slow

BUDGET = 0.200  # seconds, the figure


def plan(backend: JournalBackend, where: str, args: tuple[Any, ...]) -> str:
    """The query plan of a `runs` page, as text."""
    query = f"SELECT id FROM runs {where} ORDER BY started_at DESC, id DESC LIMIT 20"  # noqa: S608 - constant test SQL
    if backend.database_url is None:
        with sqlite3.connect(backend.state_dir / "journal.db") as conn:
            rows = conn.execute(f"EXPLAIN QUERY PLAN {query}", args).fetchall()
        return "\n".join(str(r[-1]) for r in rows)
    import psycopg

    with psycopg.connect(backend.database_url) as conn:
        sql = query.replace("?", "%s")
        return "\n".join(str(r[0]) for r in conn.execute(f"EXPLAIN {sql}", args).fetchall())


def timed(fn: Callable[[], object], repeat: int = 7) -> float:
    """Median seconds of ``repeat`` calls after one warm-up."""
    fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


@pytest.mark.parametrize(
    "journal_backend",
    ["sqlite", pytest.param("postgresql-1conn", marks=pytest.mark.integration)],
    indirect=True,
)
def test_runs_over_100000_runs_answers_in_under_200_ms(journal_backend: JournalBackend) -> None:
    """Open, list a page (first, by service, deep with --before), close: each under 200 ms."""
    if journal_backend.database_url is None:
        journal_backend.open()  # creates the schema at the newest version
        load_sqlite(journal_backend.state_dir / "journal.db")
    else:
        load_postgres(journal_backend.database_url)
    deep = run_id(RUNS // 2)

    def page(**kwargs: Any) -> Callable[[], list[journal.RunRecord]]:
        def call() -> list[journal.RunRecord]:
            j = journal_backend.open()
            try:
                return j.list_runs(limit=20, **kwargs)
            finally:
                j.close()
                journal_backend.journals.remove(j)

        return call

    first = page()()
    assert len(first) == 20
    assert first[0].id == run_id(RUNS - 1)
    deep_page = page(before=deep)()
    assert deep_page[0].started_at <= page()()[0].started_at
    assert deep not in [r.id for r in deep_page]
    assert all(r.service == "maia" for r in page(service="maia", before=deep)())

    figures = {
        "first page": timed(page()),
        "--service maia": timed(page(service="maia")),
        "--before (middle of the history)": timed(page(before=deep)),
        "--service maia --before": timed(page(service="maia", before=deep)),
    }
    slow = {k: round(v * 1000, 1) for k, v in figures.items() if v >= BUDGET}
    assert not slow, f"over {BUDGET * 1000:.0f} ms (median of 7): {slow}"

    mark = "?" if journal_backend.database_url is None else "%s"
    started = first[5].started_at
    for where, args in (
        ("", ()),
        (f"WHERE service = {mark}", ("maia",)),
        (f"WHERE (started_at, id) < ({mark}, {mark})", (started, first[5].id)),
        (
            f"WHERE service = {mark} AND (started_at, id) < ({mark}, {mark})",
            ("maia", started, first[5].id),
        ),
    ):
        text = plan(journal_backend, where, args)
        assert "runs_newest" in text or "runs_service_newest" in text, text
        assert "TEMP B-TREE" not in text, text  # SQLite sorting
        assert "Sort" not in text, text  # PostgreSQL sorting
        assert "Seq Scan" not in text, text
