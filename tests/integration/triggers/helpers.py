"""A workspace on disk for trigger integration tests: inventory, triggers and runbooks."""

from __future__ import annotations

import textwrap
from pathlib import Path

from crystal_runbook import service, testing

FAKE_ROLLBACK = testing.FAKE_ROLLBACK_RUNBOOK


def workspace(
    root: Path,
    *,
    metrics: str,
    triggers: str,
    env: str = "sandbox",
    extra_target: str = "",
    runbooks: dict[str, str] | None = None,
) -> service.Workspace:
    """Write the files and return a workspace (with the fake actions) over them."""
    (root / "inventory").mkdir(parents=True, exist_ok=True)
    (root / "runbooks").mkdir(exist_ok=True)
    (root / "inventory" / "services.yaml").write_text(
        f"default_environment: {env}\nservices:\n  maia:\n    environments:\n"
        f"      {env}:\n        metrics: {metrics}\n"
        + textwrap.indent(textwrap.dedent(extra_target), " " * 8)
    )
    (root / "inventory" / "triggers.yaml").write_text(textwrap.dedent(triggers).lstrip())
    for name, text in (runbooks or {"rollback": FAKE_ROLLBACK}).items():
        (root / "runbooks" / f"{name}.yaml").write_text(textwrap.dedent(text).lstrip())
    return service.Workspace(
        state_dir=root / ".crystal",
        inventory_dir=root / "inventory",
        runbooks_dir=root / "runbooks",
        actor="watcher",
        action_modules=("crystal_runbook.testing",),
    )
