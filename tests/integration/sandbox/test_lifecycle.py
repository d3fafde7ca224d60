"""Starting and stopping: in-process, detached through the CLI, and in the foreground."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from crystal_runbook import sandbox
from crystal_runbook.sandbox import daemon

from .conftest import KUBECTL, sandbox_threads

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

CLI = [sys.executable, "-m", "crystal_runbook"]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def process_exists(pid: int) -> bool:
    return daemon.alive(pid)


def cli(
    state: Path, *args: str, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*CLI, "--state-dir", str(state), "sandbox", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"sandbox {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def kubectl(kubeconfig: Path, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "KUBECACHEDIR": str(cache),
        "HOME": str(cache),
    }
    return subprocess.run(
        [str(KUBECTL), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


class TestInProcess:
    """start() and stop() in this process."""

    def test_start_is_fast_and_stop_leaves_nothing(self, tmp_path: Path) -> None:
        """Ready in well under 0.5 s; after stop no thread and no listening port remain."""
        started = time.monotonic()
        with sandbox.start(tmp_path, ready_delay=0.1) as sb:
            elapsed = time.monotonic() - started
            port = sb.port
            assert port_open(port)
            assert sb.kubeconfig_path == tmp_path / "sandbox" / "kubeconfig"
            text = sb.kubeconfig_path.read_text()
            assert f"server: {sb.url}" in text
            assert "current-context: crystal-sandbox" in text
            assert "namespace: crystal" in text
            pod_ports = [s.port for s in sb.controllers.kubelet.pods.values()]
            assert len(pod_ports) == 3
            assert all(p is not None and port_open(p) for p in pod_ports)
        assert elapsed < 0.5
        assert not port_open(port)
        assert not any(port_open(p) for p in pod_ports if p is not None)
        assert sandbox_threads() == []

    def test_stop_ends_open_watches_and_follows(self, tmp_path: Path) -> None:
        """A watch and a log follow in progress end when the sandbox stops."""
        import urllib.request

        sb = sandbox.start(tmp_path, ready_delay=0.1)
        pod = next(iter(sb.controllers.kubelet.pods.values())).name
        streams = [
            f"{sb.url}/api/v1/namespaces/crystal/pods?watch=true",
            f"{sb.url}/api/v1/namespaces/crystal/pods/{pod}/log?follow=true",
        ]
        ended: list[str] = []

        def read(url: str) -> None:
            with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 - loopback test server
                while resp.read(1024):
                    pass
            ended.append(url)

        threads = [threading.Thread(target=read, args=(u,)) for u in streams]
        for t in threads:
            t.start()
        time.sleep(0.3)
        started = time.monotonic()
        sb.stop()
        for t in threads:
            t.join(10)
        assert sorted(ended) == sorted(streams)
        assert time.monotonic() - started < 2
        assert sandbox_threads() == []

    def test_request_log_lines(self, tmp_path: Path) -> None:
        """requests.jsonl has one JSON line per request with the documented fields."""
        import urllib.request

        with (
            sandbox.start(tmp_path) as sb,
            urllib.request.urlopen(f"{sb.url}/api/v1/namespaces/crystal/pods?limit=1") as resp,  # noqa: S310 - loopback test server
        ):
            resp.read()
        lines = [
            json.loads(x)
            for x in (tmp_path / "sandbox" / "requests.jsonl").read_text().splitlines()
        ]
        assert len(lines) == 1
        entry = lines[0]
        assert set(entry) == {
            "time",
            "method",
            "path",
            "query",
            "status",
            "duration_ms",
            "user_agent",
        }
        assert (entry["method"], entry["path"], entry["query"], entry["status"]) == (
            "GET",
            "/api/v1/namespaces/crystal/pods",
            "limit=1",
            200,
        )
        assert entry["user_agent"].startswith("Python-urllib/")

    def test_a_client_killed_mid_connection_prints_no_traceback(
        self, tmp_path: Path, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """A connection reset by its client (a `kill -9`ed CLI) is not reported as an error."""
        with sandbox.start(tmp_path, ready_delay=0.1) as sb:
            for _ in range(3):
                sock = socket.create_connection(("127.0.0.1", sb.port))
                sock.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
                sock.recv(65536)
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                sock.close()  # RST: the server's next read on the keep-alive connection fails
            time.sleep(0.5)
            assert sb.internal_errors == []
        err = capfd.readouterr().err
        assert "Traceback" not in err
        assert "ConnectionResetError" not in err

    def test_port_in_use_is_an_error(self, tmp_path: Path) -> None:
        """Starting on a taken port raises OSError and leaves no thread behind."""
        with sandbox.start(tmp_path / "a") as first, pytest.raises(OSError, match="in use"):
            sandbox.start(tmp_path / "b", port=first.port)
        assert sandbox_threads() == []


class TestCli:
    """crystal-runbook sandbox up --detach / status / down, and the foreground mode."""

    def test_detached_up_undo_status_down(self, tmp_path: Path) -> None:
        """The issue's done-when: up --detach, kubectl rollout undo + status, down leaves nothing."""
        state = tmp_path / "state"
        out = cli(state, "up", "--detach", "--port", "0", "--ready-delay", "0.1").stdout
        assert "sandbox running at http://127.0.0.1:" in out
        endpoint = json.loads((state / "sandbox" / "endpoint.json").read_text())
        pid = int((state / "sandbox" / "pid").read_text())
        assert pid == endpoint["pid"]
        assert process_exists(pid)
        assert port_open(endpoint["port"])
        try:
            kubeconfig = state / "sandbox" / "kubeconfig"
            cache = tmp_path / "cache"
            undo = kubectl(kubeconfig, cache, "-n", "crystal", "rollout", "undo", "deployment/maia")
            assert undo.returncode == 0, undo.stderr
            rollout = kubectl(
                kubeconfig,
                cache,
                "-n",
                "crystal",
                "rollout",
                "status",
                "deployment/maia",
                "--timeout=30s",
            )
            assert rollout.returncode == 0, rollout.stderr
            image = kubectl(
                kubeconfig,
                cache,
                "get",
                "deploy",
                "maia",
                "-o",
                "jsonpath={.spec.template.spec.containers[0].image}",
            ).stdout
            assert image == "registry.local/maia:1.4.2"
            status = json.loads(cli(state, "status", "--output", "json").stdout)
            assert status["running"] is True
            # its uptime is the sandbox's own; the seeded pods' head start is said, not hidden
            assert status["seeded_pods_head_start_seconds"] == 60.0
            shown = cli(state, "status").stdout
            assert "its seeded pods were started 60s before it" in shown, shown
            assert status["pid"] == pid
            assert status["deployments"] == [
                {
                    "namespace": "crystal",
                    "name": "maia",
                    "revision": "3",
                    "replicas": 3,
                    "ready": 3,
                    "image": "registry.local/maia:1.4.2",
                }
            ]
            again = cli(state, "up", "--detach", "--port", "0", check=False)
            assert again.returncode == 1
            assert "already running" in again.stderr
        finally:
            down = cli(state, "down")
        assert f"sandbox stopped (pid {pid})" in down.stdout
        assert not process_exists(pid)
        assert not port_open(endpoint["port"])
        assert not (state / "sandbox" / "pid").exists()
        requests = (state / "sandbox" / "requests.jsonl").read_text().splitlines()
        assert any('"PATCH"' in line and "/deployments/maia" in line for line in requests)
        gone = cli(state, "status", check=False)
        assert gone.returncode == 1
        assert "not running" in gone.stdout
        assert "no sandbox was running" in cli(state, "down").stdout

    def test_detached_with_faults_and_bad_spec(self, tmp_path: Path) -> None:
        """Fault flags reach the detached sandbox; a bad spec is refused with exit 2."""
        state = tmp_path / "state"
        bad = cli(state, "up", "--detach", "--fault", "200", check=False)
        assert bad.returncode == 2
        assert "4xx or 5xx" in bad.stderr
        cli(
            state,
            "up",
            "--detach",
            "--port",
            "0",
            "--throttle-rate",
            "1",
            "--fault-path",
            "^/version$",
        )
        try:
            info = json.loads(cli(state, "status", "--output", "json").stdout)
            assert [(f["status"], f["fraction"], f["path"]) for f in info["faults"]] == [
                (429, 1.0, "^/version$")
            ]
        finally:
            cli(state, "down")

    def test_foreground_up_stops_on_sigterm(self, tmp_path: Path) -> None:
        """Without --detach the command serves until SIGTERM, then cleans up and exits 0."""
        state = tmp_path / "state"
        proc = subprocess.Popen(
            [*CLI, "--state-dir", str(state), "sandbox", "up", "--port", "0", "--output", "json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            lines = [proc.stdout.readline() for _ in range(8)]
            endpoint = json.loads("".join(lines[: lines.index("}\n") + 1]))
            assert port_open(endpoint["port"])
            status = json.loads(cli(state, "status", "--output", "json").stdout)
            assert status["pid"] == proc.pid
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert not port_open(endpoint["port"])
        assert not (state / "sandbox" / "pid").exists()
