"""`crystal-runbook runs` over a journal of 10,000 runs (target: <= 200 ms wall).

Builds a journal with 10,000 runs of 3 steps each, then times the command line (`runs`,
newest 20, and `runs --service`), and beside it the bare SQLite query the command makes, as
the floor no tool on this journal can beat.

Run: .venv/bin/python bench/runs_list.py
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
from pathlib import Path

from _timing import measure, row, run_command

from crystal_runbook.engine import journal

RUNS = 10_000


def build(state: Path) -> None:
    j = journal.open_journal(state)
    conn = j._conn  # bulk load through one transaction; the benchmark is about reading
    conn.execute("BEGIN")
    for i in range(RUNS):
        run = journal.RunRecord(
            id=f"{i:012x}",
            runbook="rollback",
            env="production",
            actor="oncall",
            status="ok" if i % 10 else "failed",
            started_at=f"2026-{1 + i % 12:02d}-01T00:00:{i % 60:02d}.000Z",
            service="maia" if i % 3 else "other",
            host="h",
            pid=1,
        )
        conn.execute(
            "INSERT INTO runs (id, runbook, env, service, actor, status, params, started_at, "
            "ended_at, error, host, pid, lock_key, runbook_path, runbook_digest, drill, meta, "
            "runbook_text) VALUES (?, ?, ?, ?, ?, ?, '{}', ?, ?, NULL, 'h', 1, NULL, '', '', 0, "
            "'{}', ?)",
            (
                run.id,
                run.runbook,
                run.env,
                run.service,
                run.actor,
                run.status,
                run.started_at,
                run.started_at,
                "x" * 2000,
            ),
        )
        for s in range(3):
            conn.execute(
                "INSERT INTO steps (run_id, phase, idx, id, uses, status) VALUES (?, 'main', ?, ?, 'wait', 'ok')",
                (run.id, s, f"s{s}"),
            )
    conn.execute("COMMIT")
    j.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / ".crystal"
        build(state)
        env = {**os.environ, "CRYSTAL_STATE_DIR": str(state)}
        cli = str(Path(sys.executable).parent / "crystal-runbook")
        print(f"journal of {RUNS} runs ({(state / 'journal.db').stat().st_size // 1024} KiB)")
        row("crystal-runbook runs", measure(run_command([cli, "runs"], env=env), repeat=15))
        row(
            "crystal-runbook runs --service maia --limit 50",
            measure(
                run_command([cli, "runs", "--service", "maia", "--limit", "50"], env=env), repeat=15
            ),
        )
        row(
            "crystal-runbook runs -o json",
            measure(run_command([cli, "runs", "-o", "json"], env=env), repeat=15),
        )

        def bare() -> object:
            with sqlite3.connect(state / "journal.db") as conn:
                return conn.execute(
                    "SELECT * FROM runs ORDER BY started_at DESC LIMIT 20"
                ).fetchall()

        row("bare SQLite query, in process (floor)", measure(bare, repeat=15))


if __name__ == "__main__":
    main()
