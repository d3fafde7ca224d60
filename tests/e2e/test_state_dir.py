"""The shipped inventory follows --state-dir and works from any working directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


class Elsewhere:
    """The installed command run from an empty directory with a state dir somewhere else."""

    def __init__(self, cwd: Path, state: Path) -> None:
        self.cwd = cwd
        self.state = state

    def __call__(
        self, *args: str, timeout: float = 120, via_env: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """The command with ``--state-dir``, or with ``$CRYSTAL_STATE_DIR`` when ``via_env``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CRYSTAL_", "KUBECONFIG"))}
        env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", CRYSTAL_ACTOR="oncall")
        state: list[str] = []
        if via_env:
            env["CRYSTAL_STATE_DIR"] = str(self.state)
        else:
            state = ["--state-dir", str(self.state)]
        return subprocess.run(
            [str(BIN / "crystal-runbook"), *state, *args],
            cwd=self.cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture
def elsewhere(tmp_path: Path) -> Iterator[Elsewhere]:
    cwd = tmp_path / "somewhere" / "else"
    cwd.mkdir(parents=True)
    run = Elsewhere(cwd, tmp_path / "state")
    try:
        yield run
    finally:
        run("sandbox", "down")


class TestShippedSandboxEnvironment:
    def test_up_on_a_free_port_then_rollback_health_logs_watch_from_elsewhere(
        self, elsewhere: Elsewhere
    ) -> None:
        """`sandbox up --port 0`, then the on-call commands with only --state-dir (or
        $CRYSTAL_STATE_DIR): all work."""
        up = elsewhere("sandbox", "up", "--detach", "--port", "0", "--ready-delay", "0.1")
        assert up.returncode == 0, up.stderr
        endpoint = json.loads((elsewhere.state / "sandbox" / "endpoint.json").read_text())
        assert endpoint["port"] != 17443
        rolled = elsewhere("rollback", "maia", "--env", "sandbox", "--yes", "-o", "json")
        assert rolled.returncode == 0, rolled.stderr
        run = json.loads(rolled.stdout)
        assert run["status"] == "ok"
        undo = next(s for s in run["steps"] if s["id"] == "undo")
        assert (undo["outputs"]["from_revision"], undo["outputs"]["to_revision"]) == (2, 1)
        health = elsewhere("health", "maia", "-o", "json")
        assert health.returncode == 0, health.stderr
        report = json.loads(health.stdout)
        assert report["healthy"] is True
        assert f":{endpoint['port']}/" in report["checks"][0]["detail"]
        from_env = elsewhere("health", "maia", "-o", "json", via_env=True)  # $CRYSTAL_STATE_DIR
        assert from_env.returncode == 0, from_env.stderr
        assert f":{endpoint['port']}/" in json.loads(from_env.stdout)["checks"][0]["detail"]
        logs = elsewhere("logs", "maia", "--tail", "1")
        assert logs.returncode == 0, logs.stderr
        assert len({line.split()[0] for line in logs.stdout.splitlines()}) == 3  # three pods
        watched = elsewhere("watch", "maia", "--once", "-o", "json")
        assert watched.returncode == 0, watched.stdout + watched.stderr
        assert {r["name"] for r in json.loads(watched.stdout)["rules"]} >= {"error-rate"}
        # everything went to the state dir: nothing was written where the commands ran
        assert list(elsewhere.cwd.iterdir()) == []
        assert (elsewhere.state / "journal.db").exists()
        assert list((elsewhere.state / "incidents").glob(f"*-maia-{run['id']}.md"))

    def test_without_a_running_sandbox_the_error_says_how_to_start_one(
        self, elsewhere: Elsewhere
    ) -> None:
        """No endpoint.json: exit 2 naming the state dir and the command that starts it."""
        out = elsewhere("rollback", "maia", "--yes")
        assert out.returncode == 2
        assert f"no sandbox runs for the state directory {elsewhere.state}" in out.stderr
        assert f"crystal-runbook --state-dir {elsewhere.state} sandbox up --detach" in out.stderr
        assert json.loads(elsewhere("runs", "-o", "json").stdout) == []
