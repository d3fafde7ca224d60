"""One ansible-playbook run through ansible-runner, isolated under the state directory.

What a run gets, whatever the user's shell looks like:

- `ansible-playbook` from this Python's environment (the venv's ``bin/``), without relying
  on the user's PATH; ANSIBLE_HOME and ansible-runner's artifacts under
  ``<state>/ansible/`` (the last ``KEEP_ARTIFACTS`` runs kept);
- OpenSSH with ControlMaster off (no mux process outlives the run) and the service's
  known_hosts: strict, or `accept-new` in the sandbox environment, as fabric does;
- a guard between ansible-runner and ansible-playbook that sets the parent-death signal,
  so that if crystal-runbook is killed (even with ``kill -9``) the playbook stops too rather
  than changing hosts behind a run that `resume` will continue;
- its events delivered to the calling thread as they happen (the journal lives there),
  and its per-host stats, changed tasks, diffs and failures returned as one value.
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crystal_runbook import errors
from crystal_runbook.hosts.config import HostsConfig

KEEP_ARTIFACTS = 20
"""ansible-runner artifact directories kept under <state>/ansible/artifacts/."""
RESULT_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
    "runner_item_on_failed": "failed",
}
_GUARD = '''"""crystal-runbook's guard: ansible-playbook stops when its parent dies."""
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass  # not Linux: Ctrl-C still cancels the run
if os.getppid() != int(os.environ.get("CRYSTAL_GUARD_PARENT") or 0):
    sys.exit(130)  # the parent is already gone
pidfile = os.environ.get("CRYSTAL_GUARD_PIDFILE")
if pidfile:
    with open(pidfile, "w") as fh:
        fh.write(str(os.getpid()))
target = os.environ["CRYSTAL_ANSIBLE_PLAYBOOK"]
os.execv(target, [target, *sys.argv[1:]])
'''


@dataclass(frozen=True)
class TaskResult:
    """One task on one host, as its event reported it."""

    host: str
    task: str
    status: str  # ok | changed | failed | unreachable | skipped
    message: str = ""
    diff: Any = None


@dataclass(frozen=True)
class PlaybookResult:
    """What a playbook run did, per host."""

    status: str
    rc: int
    check: bool
    stats: Mapping[str, Mapping[str, int]]
    tasks: tuple[TaskResult, ...]
    seconds: float
    artifacts: str
    output_tail: str = ""

    @property
    def changed_hosts(self) -> list[str]:
        return [h for h, s in self.stats.items() if s.get("changed", 0)]

    @property
    def failed_hosts(self) -> dict[str, str]:
        """Host -> the first failure (or unreachable) message."""
        out: dict[str, str] = {}
        for task in self.tasks:
            if task.status in ("failed", "unreachable") and task.host not in out:
                out[task.host] = f"{task.task}: {task.status}: {task.message}"
        for host, s in self.stats.items():
            if (s.get("failures") or s.get("unreachable")) and host not in out:
                out[host] = "failed"
        return out


@dataclass
class _Collector:
    """Turns ansible-runner events into task results and progress lines (any thread)."""

    check: bool
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    tasks: list[TaskResult] = field(default_factory=list)
    stats: dict[str, dict[str, int]] = field(default_factory=dict)

    def __call__(self, event: Mapping[str, Any]) -> bool:
        kind = str(event.get("event", ""))
        data = event.get("event_data") or {}
        if kind == "playbook_on_stats":
            for key, name in (
                ("ok", "ok"),
                ("changed", "changed"),
                ("failures", "failures"),
                ("dark", "unreachable"),
                ("skipped", "skipped"),
            ):
                for host, count in (data.get(key) or {}).items():
                    self.stats.setdefault(host, {})[name] = int(count)
            for host in data.get("processed") or {}:
                self.stats.setdefault(host, {})
            return True
        status = RESULT_EVENTS.get(kind)
        if status is None:
            return True
        res = data.get("res") or {}
        if status == "ok" and res.get("changed"):
            status = "changed"
        message = _message(res) if status in ("failed", "unreachable", "changed") else ""
        result = TaskResult(
            host=str(data.get("host", "?")),
            task=str(data.get("task", "?")),
            status=status,
            message=message,
            diff=res.get("diff"),
        )
        self.tasks.append(result)
        if status in ("changed", "failed", "unreachable"):  # ok and skipped tasks: in the recap
            shown = "would change" if self.check and status == "changed" else status
            detail = f": {message[:200]}" if message and status != "changed" else ""
            self.lines.put(f"{result.host:<16} {shown:<12} {result.task}{detail}")
        return True

    def recap(self) -> None:
        """One line per host with its counts, as ansible-playbook's PLAY RECAP."""
        mode = "check mode " if self.check else ""
        for host, counts in self.stats.items():
            numbers = " ".join(
                f"{k}={counts.get(k, 0)}"
                for k in ("ok", "changed", "failures", "unreachable", "skipped")
            )
            self.lines.put(f"{host:<16} {mode}recap: {numbers}")


def _message(res: Mapping[str, Any]) -> str:
    parts = [str(res.get("msg") or "").strip()]
    stderr = str(res.get("stderr") or "").strip()
    if stderr:
        parts.append(stderr.splitlines()[-1])
    return " ".join(p for p in parts if p)[:500]


def ansible_playbook() -> Path:
    """The `ansible-playbook` beside this Python (the venv's), else the one on PATH.

    Raises:
        errors.ConfigurationError: neither exists.
    """
    import shutil

    beside = Path(sys.executable).parent / "ansible-playbook"
    if beside.exists():
        return beside
    found = shutil.which("ansible-playbook")
    if found:
        return Path(found)
    raise errors.ConfigurationError(
        "ansible-playbook is not installed beside crystal-runbook",
        hint="reinstall crystal-runbook (ansible-core is one of its dependencies)",
    )


def _write_if_changed(path: Path, text: str, mode: int = 0o644) -> None:
    if path.exists() and path.read_text() == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)


def _environment(
    config: HostsConfig, home: Path, guard_pidfile: Path, *, extra: Mapping[str, str]
) -> dict[str, str]:
    strict = "accept-new" if config.auto_add else "yes"
    ssh_args = " ".join(
        [
            "-o ControlMaster=no",
            "-o " + shlex.quote(f"UserKnownHostsFile={config.known_hosts}"),
            "-o GlobalKnownHostsFile=/dev/null",
            f"-o StrictHostKeyChecking={strict}",
        ]
    )
    bindir = str(Path(sys.executable).parent)
    return {
        "PATH": os.pathsep.join([bindir, os.environ.get("PATH") or os.defpath]),
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_SSH_ARGS": ssh_args,
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_PYTHON_INTERPRETER": os.environ.get("ANSIBLE_PYTHON_INTERPRETER", "auto_silent"),
        "CRYSTAL_GUARD_PARENT": str(os.getpid()),
        "CRYSTAL_GUARD_PIDFILE": str(guard_pidfile),
        "CRYSTAL_ANSIBLE_PLAYBOOK": str(ansible_playbook()),
        **extra,
    }


def run_playbook(
    *,
    playbook: Path,
    config: HostsConfig,
    limit: str,
    extravars: Mapping[str, Any],
    check: bool,
    state_dir: Path,
    ident: str,
    forks: int = 10,
    deadline: float | None = None,
    cancelled: threading.Event | None = None,
    progress: Callable[[str], None] = lambda _line: None,
) -> PlaybookResult:
    """Run ``playbook`` on ``limit`` of ``config``'s inventory (``--check --diff`` if ``check``).

    ``progress`` is called in the calling thread with one line per task result.

    Raises:
        errors.ConfigurationError: ansible-playbook or the playbook cannot be found.
        errors.TemporaryActionError: it did not finish before ``deadline``.
        KeyboardInterrupt: after stopping the playbook.
    """
    import ansible_runner

    if not playbook.is_file():
        raise errors.ConfigurationError(
            f"playbook {playbook} does not exist", hint="check `playbook:` of the step"
        )
    base = state_dir / "ansible"
    home = base / "home"
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    guard = base / "bin" / "guard.py"
    _write_if_changed(guard, _GUARD)
    _write_if_changed(
        base / "env" / "settings", json.dumps({"pexpect_timeout": 0.25, "pexpect_use_poll": True})
    )
    artifact_dir = base / "artifacts" / ident
    artifact_dir.mkdir(parents=True, exist_ok=True)
    pidfile = artifact_dir / "guard.pid"
    collector = _Collector(check=check)
    stop = threading.Event()
    started = time.monotonic()
    timeout = None if deadline is None else max(1, int(deadline - time.monotonic()))
    cmdline = " ".join(  # python -I guard.py <ansible-playbook's arguments>
        [
            "-I",
            shlex.quote(str(guard)),
            *(["--check", "--diff"] if check else []),
            shlex.quote(str(playbook.resolve())),
        ]
    )
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["runner"] = ansible_runner.run(
                private_data_dir=str(base),
                ident=ident,
                binary=sys.executable,
                cmdline=cmdline,
                inventory=str(config.inventory),
                limit=limit,
                extravars=dict(extravars),
                forks=forks,
                envvars=_environment(config, home, pidfile, extra={}),
                event_handler=collector,
                cancel_callback=stop.is_set,
                rotate_artifacts=KEEP_ARTIFACTS,
                suppress_env_files=True,
                quiet=True,
                timeout=timeout,
            )
        except Exception as exc:  # noqa: BLE001 - reported to the calling thread below
            outcome["error"] = exc

    worker = threading.Thread(target=target, name="crystal-ansible", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.1)
            _drain(collector, progress)
            if cancelled is not None and cancelled.is_set():
                _stop(pidfile, stop, worker)
    except BaseException:
        _stop(pidfile, stop, worker)
        raise
    collector.recap()
    _drain(collector, progress)
    if "error" in outcome:
        raise errors.ConfigurationError(
            f"ansible-runner could not run {playbook.name}: {outcome['error']}"
        ) from outcome["error"]
    runner = outcome["runner"]
    result = PlaybookResult(
        status=str(runner.status),
        rc=int(runner.rc if runner.rc is not None else 1),
        check=check,
        stats=collector.stats,
        tasks=tuple(collector.tasks),
        seconds=time.monotonic() - started,
        artifacts=str(artifact_dir),
        output_tail=_tail(artifact_dir / "stdout"),
    )
    if result.status == "timeout":
        raise errors.TemporaryActionError(
            f"{playbook.name} did not finish within the step's timeout ({timeout}s)",
            hint="raise the step's `timeout`; the per-host stats so far are in the journal",
            evidence=result.output_tail,
        )
    if result.rc == 127:
        raise errors.ConfigurationError(
            f"ansible-playbook could not be started for {playbook.name}",
            hint="reinstall crystal-runbook (ansible-core is one of its dependencies)",
        )
    return result


def _drain(collector: _Collector, progress: Callable[[str], None]) -> None:
    while True:
        try:
            line = collector.lines.get_nowait()
        except queue.Empty:
            return
        progress(line)


def _stop(pidfile: Path, stop: threading.Event, worker: threading.Thread) -> None:
    """SIGTERM to ansible-playbook (it stops its workers), then ansible-runner's SIGKILL."""
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        pass
    worker.join(5.0)
    stop.set()
    worker.join(5.0)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])
