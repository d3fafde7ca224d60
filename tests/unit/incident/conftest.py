"""A workspace whose `rollback` runbook runs the fake rollback actions, and Markdown helpers."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

from crystal_runbook import service, testing
from tests.conftest import REPO
from tests.unit.incident import fakes

SCHEMA = json.loads((REPO / "docs" / "incident-schema.json").read_text())

ROLLBACK = """
apiVersion: crystal-runbook/v1
kind: Runbook
name: rollback
params:
  service: {type: string, required: true}
  reason: {type: string, default: ""}
  to_revision: {type: integer, default: 0}
  fail: {type: boolean, default: false}
lock: "{{ service.name }}/{{ env }}"
steps:
  - id: undo
    name: Roll back to the previous release in legacy mode
    uses: k8s.rollout_undo
    with: {to_revision: "{{ params.to_revision }}", set_env: {CRYSTAL_MODE: legacy}, fail_verify: "{{ params.fail }}"}
    retry: {attempts: 2, delay: 10ms}
  - id: legacy-mode
    uses: k8s.set_env
    with: {env: {CRYSTAL_MODE: legacy}}
  - id: errors-ceased
    uses: metrics.check
    with: {rule: error-rate, value: 0.004, threshold: 0.05}
  - id: performance-restored
    uses: metrics.check
    with: {rule: latency-p99, value: 0.25, threshold: 2}
  - id: document
    uses: incident.write
on_failure:
  - id: document-failure
    uses: incident.write
"""

INVENTORY = """
default_environment: sandbox
services:
  maia:
    environments:
      sandbox:
        health_url: http://127.0.0.1:9/health
        dashboards: {grafana: "https://grafana.example/d/maia"}
"""


def write_workspace(root: Path, runbook: str = ROLLBACK) -> None:
    (root / "runbooks").mkdir(parents=True, exist_ok=True)
    (root / "inventory").mkdir(parents=True, exist_ok=True)
    (root / "runbooks" / "rollback.yaml").write_text(textwrap.dedent(runbook).lstrip())
    (root / "inventory" / "services.yaml").write_text(textwrap.dedent(INVENTORY).lstrip())


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[service.Workspace]:
    """A workspace with the fake rollback actions registered over the real names."""
    write_workspace(tmp_path)
    workspace = service.Workspace(
        state_dir=tmp_path / ".crystal",
        inventory_dir=tmp_path / "inventory",
        runbooks_dir=tmp_path / "runbooks",
        env="sandbox",
        actor="oncall",
        sink=testing.RecordingSink(),
        action_modules=("crystal_runbook.testing",),
    )
    for action in fakes.ACTIONS:
        workspace.registry.register(action)
    yield workspace
    workspace.close()


def iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def trigger_evidence(*, seconds_ago: float = 2.0, window: int = 10) -> dict[str, Any]:
    """What `watch` journals in `meta.trigger` when error-rate fires (values once a second)."""
    detected = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    pending = detected - timedelta(seconds=window)
    history = [[iso(pending - timedelta(seconds=3 - i)), 0.01] for i in range(3)] + [
        [iso(pending + timedelta(seconds=i)), 0.06 + 0.01 * i] for i in range(window + 1)
    ]
    rule = {
        "name": "error-rate",
        "state": "firing",
        "value": history[-1][1],
        "threshold": 0.05,
        "since": iso(detected),
        "op": ">",
        "for_seconds": float(window),
        "pending_since": iso(pending),
        "kind": "threshold",
        "source": "scrape",
        "action": "rollback",
        "severity": "critical",
        "message": "",
        "description": "Error rate > 5 % for > 2 minutes (checklist).",
        "query": 'sum(rate(http_request_errors_total{job="maia"}[1m]))',
        "defined_at": "inventory/triggers.yaml:20",
        "series": [{"labels": {}, "value": history[-1][1]}],
        "history": history,
    }
    other = {**rule, "name": "latency-p99", "state": "pending", "value": 2.4, "threshold": 2.0}
    return {
        "service": "maia",
        "env": "sandbox",
        "detected_at": iso(detected),
        "rules": [rule],
        "all_rules": [
            {k: v for k, v in rule.items() if k not in ("history", "series")},
            {k: v for k, v in other.items() if k not in ("history", "series")},
        ],
        "watch": {"interval_seconds": 1.0, "auto_rollback": True},
    }


@dataclass
class Section:
    """A `##` section of a Markdown document: its heading and its tokens."""

    title: str
    tokens: list[Token]

    def tables(self) -> list[list[list[str]]]:
        """Each table as rows of cell texts (header row first)."""
        found: list[list[list[str]]] = []
        row: list[str] | None = None
        for i, tok in enumerate(self.tokens):
            if tok.type == "table_open":
                found.append([])
            elif tok.type == "tr_open":
                row = []
            elif tok.type in ("th_open", "td_open") and row is not None:
                row.append(
                    self.tokens[i + 1].content if self.tokens[i + 1].type == "inline" else ""
                )
            elif tok.type == "tr_close" and row is not None:
                found[-1].append(row)
                row = None
        return found

    def text(self) -> str:
        return "\n".join(t.content for t in self.tokens if t.type == "inline")


def parse(markdown: str) -> tuple[str, dict[str, Section]]:
    """(the H1 title, the H2 sections by title) of ``markdown``, parsed by markdown-it-py."""
    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    title = ""
    sections: dict[str, Section] = {}
    current: Section | None = None
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open" and tok.tag in ("h1", "h2"):
            heading = tokens[i + 1].content
            if tok.tag == "h1":
                title = heading
                current = None
            else:
                current = Section(heading, [])
                sections[heading] = current
        elif current is not None:
            current.tokens.append(tok)
    return title, sections
