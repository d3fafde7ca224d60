"""The detached sandbox: a background process found again through its PID file.

``crystal-runbook sandbox up --detach`` runs ``python -m crystal_runbook.sandbox --detach``,
which forks: the child starts the sandbox in a new session and, once it answers, tells the
parent over a pipe; the parent prints the URL and exits, so the command returns only when
the cluster is usable and the child is left to init (no zombie, no process tied to the
terminal). The child writes ``<state>/sandbox/pid`` and ``endpoint.json`` and removes them
when SIGTERM or SIGINT stops it. ``stop()`` sends SIGTERM to the PID in the file, after
checking that the process really is a sandbox (a recycled PID is left alone), and waits
until the process is gone and its port is closed.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess  # fixed argument lists, never a shell  # nosec B404
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crystal_runbook.sandbox import faults as faults_mod
from crystal_runbook.sandbox import lifecycle

PIDFILE = "pid"
ENDPOINT = "endpoint.json"
LOGFILE = "sandbox.log"


class DaemonError(RuntimeError):
    """The detached sandbox could not be started or stopped; the message says why."""


def pid_path(state_dir: Path) -> Path:
    return lifecycle.sandbox_dir(state_dir) / PIDFILE


def endpoint_path(state_dir: Path) -> Path:
    return lifecycle.sandbox_dir(state_dir) / ENDPOINT


def read_pid(state_dir: Path) -> int | None:
    """The PID in the PID file, or None when there is no readable file."""
    try:
        return int(pid_path(state_dir).read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def read_endpoint(state_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(endpoint_path(state_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and has not exited (a zombie counts as exited)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    with contextlib.suppress(OSError, IndexError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def is_sandbox_process(pid: int) -> bool:
    """Whether ``pid`` is alive and (where /proc exists) runs crystal-runbook's sandbox."""
    if not alive(pid):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            return False
        return any(b"crystal_runbook" in a or a.endswith(b"crystal-runbook") for a in args)
    return True


def running(state_dir: Path) -> int | None:
    """The PID of the live sandbox of this state directory, or None."""
    pid = read_pid(state_dir)
    if pid is not None and is_sandbox_process(pid):
        return pid
    return None


def write_files(state_dir: Path, sandbox: lifecycle.Sandbox) -> None:
    """Write the PID file and endpoint.json for a sandbox served by this process."""
    directory = lifecycle.sandbox_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    endpoint = {
        "pid": os.getpid(),
        "url": sandbox.url,
        "port": sandbox.port,
        "kubeconfig": str(sandbox.kubeconfig_path),
        "context": lifecycle.CONTEXT,
        "namespace": lifecycle.NAMESPACE,
        "health_url": sandbox.health_url(),
        "metrics_url": sandbox.metrics_url(),
    }
    lifecycle._write_atomic(endpoint_path(state_dir), json.dumps(endpoint, indent=2) + "\n")
    lifecycle._write_atomic(pid_path(state_dir), f"{os.getpid()}\n")


def remove_files(state_dir: Path) -> None:
    """Remove the PID file and endpoint.json if they belong to this process."""
    if read_pid(state_dir) == os.getpid():
        for path in (pid_path(state_dir), endpoint_path(state_dir)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def serve_until_signalled(
    state_dir: Path, sandbox: lifecycle.Sandbox, *, ready_fd: int | None = None
) -> None:
    """Serve ``sandbox`` in this process until SIGTERM or SIGINT, then stop it cleanly."""
    done = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        done.set()

    old_term = signal.signal(signal.SIGTERM, on_signal)
    old_int = signal.signal(signal.SIGINT, on_signal)
    try:
        if fetch_status(sandbox.url) is None:  # answer over HTTP before saying "ready"
            raise DaemonError(f"the sandbox at {sandbox.url} does not answer")
        write_files(state_dir, sandbox)
        if ready_fd is not None:
            os.write(ready_fd, f"ready {sandbox.url}\n".encode())
            os.close(ready_fd)
        while not done.wait(3600):
            pass
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)
        sandbox.stop()
        remove_files(state_dir)


def command(
    state_dir: Path,
    *,
    port: int,
    ready_delay: float,
    seed: bool,
    fault_specs: Sequence[str] = (),
    detach: bool = False,
) -> list[str]:
    """The argv that runs a sandbox process (``python -m crystal_runbook.sandbox ...``)."""
    argv = [
        sys.executable,
        "-m",
        "crystal_runbook.sandbox",
        "--state-dir",
        str(state_dir),
        "--port",
        str(port),
        "--ready-delay",
        str(ready_delay),
    ]
    if not seed:
        argv.append("--no-seed")
    for spec in fault_specs:
        argv += ["--fault", spec]
    if detach:
        argv.append("--detach")
    return argv


def spawn(
    state_dir: Path,
    *,
    port: int,
    ready_delay: float = 0.5,
    seed: bool = True,
    fault_specs: Sequence[str] = (),
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Start a detached sandbox and return its endpoint once it answers.

    Raises:
        DaemonError: one is already running for this state directory, or it failed to start
            (the message carries the end of its log).
    """
    for spec in fault_specs:
        faults_mod.Fault.parse(spec)  # fail here, with the spec's own message
    pid = running(state_dir)
    if pid is not None:
        raise DaemonError(
            f"a sandbox is already running for {state_dir} (pid {pid}); "
            "stop it with `crystal-runbook sandbox down`"
        )
    directory = lifecycle.sandbox_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / LOGFILE
    argv = command(
        state_dir,
        port=port,
        ready_delay=ready_delay,
        seed=seed,
        fault_specs=fault_specs,
        detach=True,
    )
    with log_path.open("ab") as log_file:
        try:
            result = subprocess.run(  # a fixed argument list of our own, no shell  # nosec B603
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log_file,
                timeout=timeout,
                check=False,
                close_fds=True,
            )
        except subprocess.TimeoutExpired as exc:
            raise DaemonError(
                f"the sandbox did not start within {timeout:g}s; see {log_path}"
            ) from exc
    if result.returncode != 0:
        tail = _tail(log_path)
        raise DaemonError(
            f"the sandbox failed to start (exit {result.returncode}); "
            f"last lines of {log_path}:\n{tail}"
        )
    endpoint = read_endpoint(state_dir)
    if endpoint is None:
        raise DaemonError(f"the sandbox started but wrote no {endpoint_path(state_dir)}")
    return endpoint


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def stop(state_dir: Path, *, timeout: float = 10.0) -> int | None:
    """Stop the detached sandbox of ``state_dir``; returns its PID, or None if none ran.

    Waits until the process has exited and its port no longer accepts connections; sends
    SIGKILL if SIGTERM has not worked within ``timeout`` seconds.
    """
    pid = read_pid(state_dir)
    endpoint = read_endpoint(state_dir) or {}
    if pid is None or not is_sandbox_process(pid):
        for path in (pid_path(state_dir), endpoint_path(state_dir)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return None
    os.kill(pid, signal.SIGTERM)
    if not _wait_exit(pid, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_exit(pid, timeout)
    port = endpoint.get("port")
    if isinstance(port, int):
        port_deadline = time.monotonic() + timeout
        while port_open("127.0.0.1", port) and time.monotonic() < port_deadline:
            time.sleep(0.02)
    for path in (pid_path(state_dir), endpoint_path(state_dir)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return pid


def _wait_exit(pid: int, timeout: float) -> bool:
    """Wait for ``pid`` to exit: woken by its pidfd where Linux has one, else by polling."""
    deadline = time.monotonic() + timeout
    fd: int | None = None
    with contextlib.suppress(OSError, AttributeError):
        fd = os.pidfd_open(pid)
    try:
        while alive(pid):
            _reap(pid)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if fd is not None:
                select.select([fd], [], [], remaining)
                _reap(pid)
                if not alive(pid):
                    return True
                time.sleep(0.005)  # exited but not yet reaped by its parent (init)
            else:
                time.sleep(0.02)
        return True
    finally:
        if fd is not None:
            os.close(fd)


def _reap(pid: int) -> None:
    """Collect the exit status if the sandbox happens to be our own child."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def fetch_status(url: str, *, timeout: float = 2.0) -> dict[str, Any] | None:
    """``GET <url>/_sandbox/status``, or None when it does not answer."""
    try:
        with urllib.request.urlopen(f"{url}/_sandbox/status", timeout=timeout) as resp:  # noqa: S310 - our own loopback URL  # nosec B310
            data = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
