"""A sandbox cluster with the shipped runbooks and an inventory pointing at it.

Every test gets its own sandbox (a Kubernetes API emulator on a free loopback port, seeded
with `maia` at revision 2 of 2), an inventory whose `sandbox` and `production` environments
both point at it, the real kubectl, and the installed `crystal-runbook` command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crystal_runbook import sandbox
from tests.conftest import REPO

BIN = Path(sys.executable).parent
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass
class Cluster:
    """The sandbox plus helpers to drive it with our CLI and with kubectl."""

    sb: sandbox.Sandbox
    root: Path

    @property
    def state(self) -> Path:
        return self.root / ".crystal"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CRYSTAL_", "KUBECONFIG"))}
        env.update(
            CRYSTAL_STATE_DIR=str(self.state),
            CRYSTAL_ACTOR="oncall",
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            HOME=str(self.root),
        )
        env.update(extra)  # a test may set its own actor
        return env

    def cli(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "crystal-runbook"), "--runbooks", str(REPO / "runbooks"), *args],
            cwd=self.root,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(BIN / "crystal-runbook"), "--runbooks", str(REPO / "runbooks"), *args],
            cwd=self.root,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def kubectl(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [
                str(BIN / "kubectl"),
                "--kubeconfig",
                str(self.sb.kubeconfig_path),
                "-n",
                "crystal",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            input=stdin,
            env={**self.env(), "KUBECACHEDIR": str(self.root / "kube-cache")},
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {proc.stderr}")
        return proc

    def deployment(self) -> dict[str, Any]:
        return json.loads(self.kubectl("get", "deployment", "maia", "-o", "json").stdout)

    def image(self) -> str:
        return str(self.deployment()["spec"]["template"]["spec"]["containers"][0]["image"])

    def env_var(self, name: str) -> str | None:
        for entry in self.deployment()["spec"]["template"]["spec"]["containers"][0].get("env", []):
            if entry["name"] == name:
                return str(entry.get("value"))
        return None

    def revision(self) -> int:
        return int(
            self.deployment()["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        )

    def mutations(self, since: int = 0, *, exclude_leases: bool = True) -> list[dict[str, Any]]:
        """Mutating requests the sandbox received after the first ``since`` requests."""
        found = [r for r in self.sb.requests()[since:] if r["method"] in MUTATING]
        if exclude_leases:
            found = [r for r in found if "/leases" not in r["path"]]
        return found

    def request_count(self) -> int:
        return len(self.sb.requests())

    def wait_rolled_out(self, timeout: float = 20) -> None:
        self.kubectl("rollout", "status", "deployment/maia", f"--timeout={int(timeout)}s")


TERMINATION = pytest.mark.parametrize(
    "cluster", [None, 1.0], ids=["stop-default", "stop-1s"], indirect=True
)
"""Run a test twice: pods that stop in the sandbox's default time, and pods that take 1 s
to terminate (Terminating for a whole second, as a draining service is), so the product
is checked against the pods a real rollout leaves behind for a while."""


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    running = sandbox.start(tmp_path / ".crystal", ready_delay=0.1)
    running.config.update({"burn_ramp_seconds": 1.0, "backoff_base": 0.2})
    shutdown = getattr(request, "param", None)
    if shutdown is not None:
        running.config.update({"shutdown_seconds": shutdown})
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    block = (
        "        kubernetes: {context: crystal-sandbox, namespace: crystal, deployment: maia, "
        f"kubeconfig: {running.kubeconfig_path}}}\n"
        f"        health_url: {running.health_url()}\n"
    )
    (inventory / "services.yaml").write_text(
        "default_environment: sandbox\nservices:\n  maia:\n    environments:\n"
        f"      sandbox:\n{block}      production:\n{block}"
    )
    try:
        running.settle(10)
        yield Cluster(running, tmp_path)
    finally:
        errors = running.internal_errors
        running.stop()
    assert errors == [], "\n".join(errors)


def wait_until(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")
