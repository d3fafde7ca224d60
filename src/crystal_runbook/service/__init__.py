"""The service layer: the one place that wires settings, inventory, engine and sinks.

The CLI, the Slack app and the scheduler are thin shells over it: they parse their input,
call one use-case function here, and turn errors into exit codes or replies. Nothing in this
package knows about terminals or Slack's wire format.

- ``workspace``: the composition root (``Workspace``: journal, registry, inventory, locks).
- ``runs``: start, plan and resume runbooks; run history.
- ``oncall``: `health` and `logs`.
- ``triggers``: rollback rules evaluated once or watched.
- ``incidents``: incident documents and the outbox.
- ``catalog``: `validate` and `schema`.
- ``drills``: rollback drills: run one, their history; ``drill_schedule``: `drill schedule`
  and `drill due --run`; ``readiness``: the checklist's rollback items proved.
"""

from crystal_runbook.service import (
    catalog,
    drill_schedule,
    drills,
    incidents,
    oncall,
    readiness,
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

__all__ = [
    "ACTION_MODULES_ENV",
    "FALLBACK_ENV",
    "Workspace",
    "build_registry",
    "catalog",
    "default_actor",
    "drill_schedule",
    "drills",
    "incidents",
    "oncall",
    "readiness",
    "runs",
    "triggers",
]
