"""A long journal history, bulk-loaded, for the scale test and bench/runs_list.py.

Seven rollback runs every five minutes through 2025 (100,000 runs by default), two steps
each, a third of them for another service; the same history on both backends.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from crystal_runbook.engine.journal.common import iso

RUNS = 100_000


def run_id(n: int) -> str:
    return f"{n:012x}"


def started(n: int) -> str:
    """Seven runs every five minutes through 2025, as the PostgreSQL load does."""
    return iso(datetime(2025, 1, 1, tzinfo=UTC) + (n // 7) * timedelta(minutes=5))


def load_sqlite(path: Path, runs: int = RUNS) -> None:
    """``runs`` runs of two steps each into the SQLite journal at ``path`` (at the newest schema)."""
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO runs (id, runbook, env, service, actor, status, params, started_at, "
            "ended_at, error, host, pid, lock_key, runbook_path, runbook_digest, runbook_text, "
            "drill, meta) VALUES (?, 'rollback', 'production', ?, 'oncall', ?, '{}', ?, ?, NULL, "
            "'h', 1, NULL, 'runbooks/rollback.yaml', 'sha256:x', ?, 0, '{}')",
            (
                (
                    run_id(n),
                    "other" if n % 3 == 0 else "maia",
                    "failed" if n % 10 == 0 else "ok",
                    started(n),
                    started(n),
                    "x" * 200,
                )
                for n in range(runs)
            ),
        )
        conn.executemany(
            "INSERT INTO steps (run_id, phase, idx, id, uses, status) "
            "VALUES (?, 'main', ?, ?, 'wait', 'ok')",
            ((run_id(n), s, f"s{s}") for n in range(runs) for s in range(2)),
        )


def load_postgres(url: str, runs: int = RUNS) -> None:
    """The same history into the PostgreSQL journal at ``url`` (at the newest schema)."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO runs (id, runbook, env, service, actor, status, params, started_at, "
            "ended_at, error, host, pid, lock_key, runbook_path, runbook_digest, runbook_text, "
            "drill, meta) "
            "SELECT lpad(to_hex(n), 12, '0'), 'rollback', 'production', "
            "CASE WHEN n %% 3 = 0 THEN 'other' ELSE 'maia' END, 'oncall', "
            "CASE WHEN n %% 10 = 0 THEN 'failed' ELSE 'ok' END, '{}', "
            "timestamptz '2025-01-01 00:00Z' + (n / 7) * interval '5 minutes', "
            "timestamptz '2025-01-01 00:01Z' + (n / 7) * interval '5 minutes', NULL, 'h', 1, "
            "NULL, 'runbooks/rollback.yaml', 'sha256:x', repeat('x', 200), false, '{}' "
            "FROM generate_series(0, %s) AS n",
            (runs - 1,),
        )
        conn.execute(
            "INSERT INTO steps (run_id, phase, idx, id, uses, status) "
            "SELECT lpad(to_hex(n), 12, '0'), 'main', s, 's' || s, 'wait', 'ok' "
            "FROM generate_series(0, %s) AS n, generate_series(0, 1) AS s",
            (runs - 1,),
        )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE runs")  # what autovacuum does after a bulk load
