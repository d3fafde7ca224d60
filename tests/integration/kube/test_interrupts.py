"""Ctrl-C and SIGTERM end every long command quietly, through a real process, on the sandbox."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.kube.conftest import Cluster

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


class Running:
    """A process whose stdout and stderr lines are collected as they come."""

    def __init__(self, argv: list[str], *, cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append(line.rstrip("\n"))

    def wait_for(self, what: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if what():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.proc.kill()
        self.close()
        raise AssertionError(
            "not reached; stdout:\n" + "\n".join(self.out) + "\nstderr:\n" + "\n".join(self.err)
        )

    def stop(self, signum: int) -> int:
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout=30)
        self.close()
        return code

    def close(self) -> None:
        self.proc.wait(timeout=30)
        for reader in self.readers:
            reader.join(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def assert_quiet(stderr: list[str], *, allowed: int = 1) -> None:
    """No traceback from any thread; at most ``allowed`` line."""
    text = "\n".join(stderr)
    assert "Traceback" not in text, text
    assert "Exception in thread" not in text, text
    assert len(stderr) <= allowed, text


def assert_json_lines_then_quiet(stderr: list[str]) -> None:
    """Progress as JSON log lines (CRYSTAL_LOG_FORMAT=json), plus at most one other line."""
    text = "\n".join(stderr)
    assert "Traceback" not in text, text
    other = []
    for line in stderr:
        try:
            json.loads(line)
        except ValueError:
            other.append(line)
    assert len(other) <= 1, text


def step_status(lines: list[str], step: str, status: str) -> bool:
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("step") == step and event.get("status") == status:
            return True
    return False


@pytest.fixture
def metered(cluster: Cluster) -> Cluster:
    """The cluster's inventory with a metrics source and the shipped triggers (for watch)."""
    inventory = cluster.root / "inventory"
    text = (inventory / "services.yaml").read_text()
    (inventory / "services.yaml").write_text(
        text.replace(
            "        health_url:",
            f"        metrics: {{source: scrape, url: {cluster.sb.metrics_url()}}}\n"
            "        health_url:",
        )
    )
    (inventory / "triggers.yaml").write_text((REPO / "inventory" / "triggers.yaml").read_text())
    return cluster


def start(cluster: Cluster, *args: str, **env: str) -> Running:
    return Running(
        [str(BIN / "crystal-runbook"), "--runbooks", str(REPO / "runbooks"), *args],
        cwd=cluster.root,
        env=cluster.env(**env),
    )


class TestStoppedByTheUser:
    @pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
    def test_logs_follow_of_three_pods(self, cluster: Cluster, signum: int) -> None:
        """`logs -f` with three pods: exit 0, no traceback from any reader thread."""
        running = start(cluster, "logs", "maia", "-f", "--tail", "1")
        running.wait_for(lambda: len({line.split()[0] for line in running.out}) >= 3)
        assert running.stop(signum) == 0
        assert_quiet(running.err, allowed=0)

    @pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
    def test_watch(self, metered: Cluster, signum: int) -> None:
        """`watch` between two evaluations: exit 0, one line ("watch stopped")."""
        running = start(metered, "watch", "maia", "--interval", "1s")
        running.wait_for(lambda: any("maia/sandbox" in line for line in running.out))
        assert running.stop(signum) == 0
        assert_quiet(running.err)
        assert running.err == ["watch stopped"]

    @pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
    def test_sandbox_up_in_the_foreground(self, tmp_path: Path, signum: int) -> None:
        """`sandbox up` (foreground): exit 0, nothing on stderr, its port closed."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRYSTAL_")}
        running = Running(
            [str(BIN / "crystal-runbook"), "--state-dir", str(tmp_path), "sandbox", "up",
             "--port", "0"],
            cwd=tmp_path,
            env=env,
        )
        running.wait_for(lambda: any("Press Ctrl-C" in line for line in running.out))
        assert running.stop(signum) == 0
        assert_quiet(running.err, allowed=0)
        assert not (tmp_path / "sandbox" / "endpoint.json").exists()


def importing(lines: list[str]) -> bool:
    """Whether the command line is past its entry module and importing the CLI (-X importtime
    prints a line as each import ends)."""
    return any(line.endswith("| crystal_runbook.process") for line in lines)


class TestInterruptedWhileStarting:
    @pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
    def test_a_rollback_stopped_while_it_imports_says_interrupted(
        self, cluster: Cluster, signum: int
    ) -> None:
        """Ctrl-C before the command runs (a slow start on a loaded machine): exit 130, one
        line, no KeyboardInterrupt traceback, nothing journalled or changed."""
        before = cluster.request_count()
        running = start(cluster, "rollback", "maia", PYTHONPROFILEIMPORTTIME="1")
        deadline = time.monotonic() + 60
        while not importing(running.err) and time.monotonic() < deadline:
            time.sleep(0.002)
        assert importing(running.err), running.err
        code = running.stop(signum)
        said = [line for line in running.err if not line.startswith("import time:")]
        assert code == 130, said
        assert_quiet(said)
        assert said == ["interrupted"]
        assert cluster.mutations(before, exclude_leases=False) == []
        assert json.loads(cluster.cli("runs", "-o", "json").stdout) == []


class TestInterruptedRuns:
    @pytest.mark.parametrize(
        ("args", "step"),
        [(["rollback", "maia"], "undo"), (["scale", "maia", "--replicas", "6"], "scale")],
        ids=["rollback", "scale"],
    )
    def test_sigint_while_verifying_is_exit_130_and_resumable(
        self, cluster: Cluster, args: list[str], step: str
    ) -> None:
        """Ctrl-C while the rollout is verified: exit 130, journal `interrupted`, no traceback."""
        cluster.sb.ready_delay = 5.0
        running = start(cluster, *args, CRYSTAL_LOG_FORMAT="json")
        running.wait_for(lambda: step_status(running.err, step, "verifying"))
        assert running.stop(signal.SIGINT) == 130
        assert_json_lines_then_quiet(running.err)
        assert any("crystal-runbook resume" in line for line in running.out)
        runs = json.loads(cluster.cli("runs", "-o", "json").stdout)
        assert runs[0]["status"] == "interrupted"
        cluster.sb.ready_delay = 0.1
        resumed = cluster.cli("resume", runs[0]["id"])
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
