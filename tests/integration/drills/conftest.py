"""A sandbox with maia at revision 2, and an inventory, drills.yaml and runbooks for drills.

The inventory's `sandbox` and `production` environments both point at the sandbox (so a
production drill can be tried safely); `metrics: true` adds the scrape source and the shipped
triggers.yaml (for readiness). Drills run through the installed `crystal-runbook`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crystal_runbook import sandbox
from tests.conftest import REPO
from tests.integration.kube.conftest import BIN, Cluster


@dataclass
class Drills(Cluster):
    """The sandbox plus drills.yaml, a runbooks directory of its own and JSON helpers."""

    @property
    def runbooks(self) -> Path:
        return self.root / "runbooks"

    def cli(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "crystal-runbook"), "--runbooks", str(self.runbooks), *args],
            cwd=self.root,
            env=self.env(CRYSTAL_ACTION_MODULES="crystal_runbook.testing", **env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def popen(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(BIN / "crystal-runbook"), "--runbooks", str(self.runbooks), *args],
            cwd=self.root,
            env=self.env(CRYSTAL_ACTION_MODULES="crystal_runbook.testing", **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def json(self, *args: str, code: int = 0, **env: str) -> Any:
        out = self.cli(*args, "-o", "json", **env)
        assert out.returncode == code, f"exit {out.returncode}\n{out.stdout}\n{out.stderr}"
        return json.loads(out.stdout)

    def drills_yaml(self, text: str) -> None:
        (self.root / "inventory" / "drills.yaml").write_text(textwrap.dedent(text).lstrip())

    def template(self) -> dict[str, Any]:
        """What a drill must leave as it found it: images, env, replicas."""
        dep = self.deployment()
        containers = dep["spec"]["template"]["spec"]["containers"]
        return {
            "images": [c["image"] for c in containers],
            "env": [c.get("env") for c in containers],
            "replicas": dep["spec"]["replicas"],
        }

    def drill_runs(self) -> list[dict[str, Any]]:
        return [r for r in self.json("runs", "--limit", "100") if r["runbook"] == "drill"]


def inventory(running: sandbox.Sandbox, root: Path, *, metrics: bool, slack: bool) -> None:
    block = (
        "        kubernetes: {context: crystal-sandbox, namespace: crystal, deployment: maia, "
        f"kubeconfig: '{running.kubeconfig_path}'}}\n"
        f"        health_url: '{running.health_url()}'\n"
    )
    if metrics:
        block += f"        metrics: {{source: scrape, url: '{running.metrics_url()}'}}\n"
    if slack:
        block += "        slack_channel: '#maia-incidents'\n"
    directory = root / "inventory"
    directory.mkdir()
    (directory / "services.yaml").write_text(
        "default_environment: sandbox\nservices:\n  maia:\n    environments:\n"
        f"      sandbox:\n{block}      production:\n{block}"
    )
    if metrics:
        shutil.copy(REPO / "inventory" / "triggers.yaml", directory / "triggers.yaml")
    shutil.copytree(REPO / "runbooks", root / "runbooks")


class Factory:
    """Starts the sandbox of a test, with the inventory it asks for (stopped after the test)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.running: sandbox.Sandbox | None = None

    def __call__(self, *, metrics: bool = False, slack: bool = False) -> Drills:
        assert self.running is None, "one sandbox per test"
        self.running = sandbox.start(self.root / ".crystal", ready_delay=0.1)
        self.running.config.update({"burn_ramp_seconds": 1.0, "backoff_base": 0.2})
        inventory(self.running, self.root, metrics=metrics, slack=slack)
        self.running.settle(10)
        return Drills(self.running, self.root)

    def stop(self) -> list[str]:
        if self.running is None:
            return []
        errors = self.running.internal_errors
        self.running.stop()
        return errors


@pytest.fixture
def make_drills(tmp_path: Path) -> Iterator[Factory]:
    """Call it (optionally with metrics=True, slack=True) to get the test's sandbox."""
    factory = Factory(tmp_path)
    try:
        yield factory
    finally:
        errors = factory.stop()
    assert errors == [], "\n".join(errors)


@pytest.fixture
def drills(make_drills: Factory) -> Drills:
    """The sandbox with a plain inventory (no metrics source, no Slack channel)."""
    return make_drills()
