"""What the journal holds: run, step and event records, and the ``Journal`` protocol.

Records are plain dataclasses so that `runs` does not pay for pydantic. Every backend
(the embedded SQLite one here, the PostgreSQL adapter outside the engine) takes and returns
exactly these, so the executor, resume, `runs` and incident documents never know which
backend they talk to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

RUN_STATUSES = ("running", "ok", "failed", "interrupted", "refused")
"""``refused``: a step's check refused before anything was applied (nothing changed)."""
STEP_STATUSES = (
    "pending",
    "checking",
    "applying",
    "applied",
    "verifying",
    "ok",
    "skipped",
    "failed",
    "interrupted",
    "refused",
)
TERMINAL_STEP = frozenset({"ok", "skipped"})


@dataclass
class StepRecord:
    """One step of a run as journalled."""

    run_id: str
    phase: str  # "main" or "on_failure"
    index: int
    id: str
    uses: str
    status: str = "pending"
    attempts: int = 0
    changed: bool | None = None
    summary: str = ""
    changes: list[dict[str, Any]] = field(default_factory=list)
    resolved: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    started_at: str | None = None
    ended_at: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The step in the `--output json` contract (design.md section 4)."""
        return {
            "id": self.id,
            "uses": self.uses,
            "status": self.status,
            "attempts": self.attempts,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "outputs": self.outputs,
            "error": self.error,
            "changed": self.changed,
            "summary": self.summary,
            "phase": self.phase,
        }


@dataclass
class RunRecord:
    """One run of a runbook as journalled."""

    id: str
    runbook: str
    env: str
    actor: str
    status: str
    started_at: str
    params: dict[str, Any] = field(default_factory=dict)
    service: str | None = None
    ended_at: str | None = None
    error: str | None = None
    host: str = ""
    pid: int = 0
    lock_key: str | None = None
    runbook_path: str = ""
    runbook_digest: str = ""
    runbook_text: str = ""
    drill: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    steps: list[StepRecord] = field(default_factory=list)

    def as_json(self, *, with_steps: bool = True) -> dict[str, Any]:
        """The run in the `--output json` contract (design.md section 4)."""
        doc: dict[str, Any] = {
            "id": self.id,
            "runbook": self.runbook,
            "env": self.env,
            "service": self.service,
            "actor": self.actor,
            "status": self.status,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "params": self.params,
            "error": self.error,
        }
        if with_steps:
            doc["steps"] = [s.as_json() for s in self.steps]
        return doc


@dataclass(frozen=True)
class EventRecord:
    """One line of a run's history."""

    seq: int
    run_id: str
    step_id: str | None
    at: str
    kind: str
    status: str
    message: str
    data: dict[str, Any]


class Journal(Protocol):
    """What the engine and the shells need from a journal backend."""

    def create_run(self, run: RunRecord) -> None: ...
    def update_run(
        self,
        run: RunRecord,
        *,
        event: str,
        message: str = "",
        data: Mapping[str, Any] | None = None,
    ) -> None: ...
    def save_step(
        self, step: StepRecord, *, message: str = "", data: Mapping[str, Any] | None = None
    ) -> None: ...
    def add_event(
        self,
        run_id: str,
        *,
        step_id: str | None = None,
        kind: str,
        status: str,
        message: str,
        data: Mapping[str, Any] | None = None,
    ) -> None: ...
    def get_run(self, run_id: str) -> RunRecord: ...
    def list_runs(
        self, *, service: str | None = None, limit: int = 20, before: str | None = None
    ) -> list[RunRecord]:
        """Runs newest first (by start time, then id); ``before`` names the run after which
        the page starts (keyset pagination: `runs --limit N --before RUN_ID`)."""
        ...

    def events(self, run_id: str) -> list[EventRecord]: ...
    def close(self) -> None: ...
