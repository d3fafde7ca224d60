"""The service layer: the one place that wires settings, inventory, engine and sinks.

The CLI, the Slack app and the scheduler are thin shells over it: they parse their input,
call one use-case function here, and turn errors into exit codes or replies. Nothing in this
package knows about terminals or Slack's wire format.

- ``workspace``: the composition root (``Workspace``: journal, registry, inventory, locks).
- ``journals``: which journal (SQLite, or PostgreSQL by ``CRYSTAL_DATABASE_URL``).
- ``runs``: start, plan and resume runbooks; run history.
- ``oncall``: `health` and `logs`.
- ``triggers``: rollback rules evaluated once or watched.
- ``incidents``: incident documents and the outbox.
- ``catalog``: `validate` and `schema`.
- ``drills``: rollback drills: run one, their history; ``drill_schedule``: `drill schedule`
  and `drill due --run`; ``readiness``: the checklist's rollback items proved.
- ``db``: the journal's schema migrations (`db upgrade|downgrade|status`).
- ``rollback``: which rollback runbook a service's environment needs (Kubernetes or hosts).

The names below are loaded on first use (PEP 562), so a light command such as `runs`
imports ``service.journals`` without paying for the executor and every use case.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crystal_runbook.service import (
        catalog,
        db,
        drill_schedule,
        drills,
        incidents,
        journals,
        oncall,
        readiness,
        rollback,
        runs,
        triggers,
    )
    from crystal_runbook.service.workspace import (
        ACTION_MODULES_ENV,
        FALLBACK_ENV,
        Workspace,
        build_registry,
        default_actor,
    )

_FROM_WORKSPACE = frozenset(
    {"ACTION_MODULES_ENV", "FALLBACK_ENV", "Workspace", "build_registry", "default_actor"}
)

__all__ = [
    "ACTION_MODULES_ENV",
    "FALLBACK_ENV",
    "Workspace",
    "build_registry",
    "catalog",
    "db",
    "default_actor",
    "drill_schedule",
    "drills",
    "incidents",
    "journals",
    "oncall",
    "readiness",
    "rollback",
    "runs",
    "triggers",
]


def __getattr__(name: str) -> Any:
    if name in _FROM_WORKSPACE:
        return getattr(importlib.import_module(f"{__name__}.workspace"), name)
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
