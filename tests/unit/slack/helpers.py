"""A workspace with a service that has a Slack channel, and runbooks that notify."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from crystal_runbook import service, testing
from crystal_runbook.notify import outbox as outbox_mod

SLACK_ENV = ("SLACK_BOT_TOKEN", "SLACK_BOT_TOKEN_FILE", "SLACK_API_URL")

SERVICES = """
default_environment: sandbox
services:
  maia:
    environments:
      sandbox:
        slack_channel: "#maia-incidents"
      staging:
        slack_channel: "#nowhere"
      quiet: {}
"""

ANNOUNCE = """
apiVersion: crystal-runbook/v1
kind: Runbook
name: announce
params:
  service: {type: string, required: true}
  reason: {type: string, default: "practice"}
steps:
  - id: announce
    uses: slack.notify
    with: {text: "Rollback of {{ service.name }} in {{ env }} started by {{ run.actor }}: {{ params.reason }}"}
    timeout: 5s
  - id: work
    uses: fake.set
    with: {key: a, value: "1"}
  - id: summary
    uses: slack.notify
    with: {text: "Rollback of {{ service.name }} done", reply_to: announce}
    timeout: 5s
"""


def clear_slack_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Slack settings from the machine running the tests."""
    for name in SLACK_ENV:
        monkeypatch.delenv(name, raising=False)


def make_workspace(root: Path, *, env: str | None = None) -> service.Workspace:
    """A workspace under ``root`` with `maia` (sandbox: #maia-incidents) and `announce`."""
    (root / "inventory").mkdir(parents=True, exist_ok=True)
    (root / "runbooks").mkdir(exist_ok=True)
    (root / "inventory" / "services.yaml").write_text(SERVICES.lstrip())
    (root / "runbooks" / "announce.yaml").write_text(ANNOUNCE.lstrip())
    return service.Workspace(
        state_dir=root / ".crystal",
        inventory_dir=root / "inventory",
        runbooks_dir=root / "runbooks",
        env=env,
        actor="tester",
        sink=testing.RecordingSink(),
        action_modules=("crystal_runbook.testing",),
    )


def write_runbook(root: Path, name: str, text: str) -> None:
    (root / "runbooks").mkdir(parents=True, exist_ok=True)
    (root / "runbooks" / f"{name}.yaml").write_text(textwrap.dedent(text).lstrip())


def outbox_files(root: Path) -> dict[str, Any]:
    """Every JSON file under the outbox (waiting and sent), by path relative to it."""
    base = root / ".crystal" / outbox_mod.DIRNAME
    return {
        str(p.relative_to(base)): json.loads(p.read_text()) for p in sorted(base.rglob("*.json"))
    }


def step_outputs(ws: service.Workspace, run_id: str, step_id: str) -> dict[str, Any]:
    """The outputs the journal holds for one step of a run."""
    run = service.runs.show(ws, run_id)
    return dict(next(s for s in run.steps if s.id == step_id).outputs)
