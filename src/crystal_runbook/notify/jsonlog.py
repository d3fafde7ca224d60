"""JSON log lines (`CRYSTAL_LOG_FORMAT=json`), one object per event, for log shippers."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from crystal_runbook.engine.events import Event

_LEVELS = {
    "failed": "error",
    "refused": "error",
    "interrupted": "warning",
    "warning": "warning",
}


class JsonLogSink:
    """Writes each event as one JSON line (already redacted by the executor)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr

    def __call__(self, event: Event) -> None:
        line: dict[str, Any] = {
            "ts": event.at,
            "level": _LEVELS.get(event.status, "info"),
            "kind": event.kind,
            "run_id": event.run_id,
            "step": event.step_id,
            "uses": event.uses,
            "phase": event.phase,
            "status": event.status,
            "message": event.message,
        }
        if event.data:
            line["data"] = dict(event.data)
        self.stream.write(json.dumps(line, default=str) + "\n")
        self.stream.flush()
