"""The journal: the single record of every run, step transition and event.

Resume, `runs`, `runs show`, incident documents and drill reports read only the journal
(like kopf's progress storage and ansible-runner's job events). Every transition is committed
before the next one starts: the intent is written before each apply, so a run killed at any
instant leaves a record that says exactly where it was.

The interface is the ``Journal`` protocol, a handful of methods over plain records:

- ``records``: ``RunRecord``, ``StepRecord``, ``EventRecord`` and the ``Journal`` protocol.
- ``common``: what every backend shares (clock, run ids, rows to records, the redacting
  encoder every write passes through).
- ``sqlite``: ``SqliteJournal``, the embedded default (`<state dir>/journal.db`, WAL, so
  readers never block the writer).

A PostgreSQL backend for teams and several `serve` replicas implements the same protocol
outside the engine (the engine never imports a database client library). Callers use this
package's names (``journal.open_journal``, ``journal.RunRecord``), not its modules.
"""

from crystal_runbook.engine.journal.common import (
    new_run_id,
    now_iso,
    parse_iso,
    process_alive,
)
from crystal_runbook.engine.journal.records import (
    RUN_STATUSES,
    STEP_STATUSES,
    TERMINAL_STEP,
    EventRecord,
    Journal,
    RunRecord,
    StepRecord,
)
from crystal_runbook.engine.journal.sqlite import (
    BUSY_SECONDS,
    SqliteJournal,
    check_state_dir,
    connect,
    open_journal,
    retry_busy,
)

__all__ = [
    "BUSY_SECONDS",
    "RUN_STATUSES",
    "STEP_STATUSES",
    "TERMINAL_STEP",
    "EventRecord",
    "Journal",
    "RunRecord",
    "SqliteJournal",
    "StepRecord",
    "check_state_dir",
    "connect",
    "new_run_id",
    "now_iso",
    "open_journal",
    "parse_iso",
    "process_alive",
    "retry_busy",
]
