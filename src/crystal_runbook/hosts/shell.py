"""One long-lived shell per host, so that a step's check, command and verify cost one SSH session.

sshd sets up every new session (exec request) at a price: a fork, the user's environment,
the login shell. On a busy machine that is half a second per command per host, paid three
times per step. Instead each host gets one session running ``sh``, and each command runs in
it as ``/bin/sh -c '<command>'`` (POSIX sh, as Ansible's `shell` module runs commands; the
login shell's rc files, which a bash started by sshd reads for every command, are read once
per host): its own process, so `exit`, `cd`, `set -e` or a syntax error in one command never
leaks into the next, with stdin from /dev/null.

After the command, the shell prints a random marker with the exit status on stdout and the
same marker on stderr; everything before the markers is the command's output (its last
``limit`` characters are kept). A timeout or a closed channel leaves the shell unusable: the
caller drops it and the next command opens a new one.

A command that outlives its time must not go on changing the host behind the run's back
(the step may be retried, or the run resumed, while it still works). So each command runs in
a session and process group of its own (``setsid``, where the host has it), the shell prints
its process id (under the marker) as it starts, and ``stop_command`` ends the whole group
over a new session on the same connection: SIGTERM, then SIGKILL after ``STOP_GRACE``. Closing
the SSH channel alone would not: without a terminal, sshd sends no hang-up to what runs.
"""

from __future__ import annotations

import contextlib
import secrets
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class ShellGone(Exception):
    """The shell's channel closed before the command's marker came back."""


class ShellTimeout(Exception):
    """The command did not finish within its time."""

    def __init__(self, pid: int | None) -> None:
        super().__init__(pid)
        self.pid = pid
        """The command's process (and process group) on the host, if it was seen."""


STOP_GRACE = 2.0
"""Seconds between SIGTERM and SIGKILL when a command that ran over its time is stopped."""


@dataclass(frozen=True)
class Output:
    """What one command did: exit status and the tail of its output."""

    exit_code: int
    stdout: str
    stderr: str


class Shell:
    """``sh`` on one host over one SSH channel; one command at a time."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.pid: int | None = None
        """The running (or last) command's process id on the host, once the shell said it."""
        channel.exec_command("exec /bin/sh")

    def run(
        self,
        command: str,
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        limit: int = 4000,
    ) -> Output:
        """Run ``command`` (with ``env`` exported first) and wait for its exit status.

        Raises:
            ShellTimeout: not finished within ``timeout`` seconds.
            ShellGone: the channel closed (the host or its sshd went away).
        """
        script = command
        if env:
            exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
            script = f"export {exports}\n{command}"
        marker = secrets.token_hex(16)
        quoted = shlex.quote(script)
        line = (
            f"if command -v setsid >/dev/null 2>&1; then setsid /bin/sh -c {quoted} </dev/null & "
            f"else /bin/sh -c {quoted} </dev/null & fi; crystal_pid=$!; "
            f"printf '\\n{marker} pid %d\\n' $crystal_pid; wait $crystal_pid; "
            f"printf '\\n{marker} %d\\n' $?; printf '\\n{marker}\\n' >&2\n"
        )
        deadline = time.monotonic() + timeout
        self.pid = None
        self.channel.sendall(line.encode())
        stdout, status = self._read(self.channel.recv, marker, deadline, limit, stdout=True)
        stderr, _ = self._read(self.channel.recv_stderr, marker, deadline, limit)
        return Output(exit_code=status if status is not None else 255, stdout=stdout, stderr=stderr)

    def _read(
        self, recv: Any, marker: str, deadline: float, limit: int, *, stdout: bool = False
    ) -> tuple[str, int | None]:
        """Output up to the marker line (and the status on it, if any). On stdout, the line
        with the command's process id is taken out (into ``pid``) as it comes."""
        needle = f"\n{marker}".encode()
        pid_line = f"\n{marker} pid ".encode()
        buffer = b""
        while True:
            if stdout and self.pid is None:
                start = buffer.find(pid_line)
                end = buffer.find(b"\n", start + len(pid_line)) if start >= 0 else -1
                if end >= 0:
                    number = buffer[start + len(pid_line) : end].strip()
                    self.pid = int(number) if number.isdigit() else 0
                    buffer = buffer[:start] + buffer[end + 1 :]
            found = buffer.find(needle)
            if stdout and self.pid is None and found >= 0 and buffer.startswith(pid_line, found):
                found = -1  # the pid line, not yet whole
            if found >= 0:
                end = buffer.find(b"\n", found + len(needle))
                if end >= 0:
                    rest = buffer[found + len(needle) : end].strip()
                    text = buffer[:found].decode("utf-8", errors="replace")
                    return text[-limit:], int(rest) if rest.isdigit() else None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ShellTimeout(self.pid or None)
            self.channel.settimeout(min(remaining, 1.0))
            try:
                chunk = recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise ShellGone
            buffer += chunk
            if len(buffer) > 4 * limit + len(needle) + 64:  # keep the tail only
                buffer = buffer[-(2 * limit + len(needle) + 64) :]

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a broken channel is closed either way
            self.channel.close()


def stop_command(session: Any, pid: int, *, timeout: float = STOP_GRACE + 3.0) -> bool:
    """End the process group ``pid`` (a command that ran over its time) through ``session``,
    a new SSH session on the host: SIGTERM, then SIGKILL to what is left after
    ``STOP_GRACE``. True when the host says nothing of it is left (on a host without
    ``setsid`` the group is the long-lived shell's: only the command's own shell is signalled,
    and what it started may live on). The session is closed either way."""
    rounds = max(1, round(STOP_GRACE / 0.1))
    alive = f"{{ kill -0 -- -{pid} || kill -0 {pid}; }} 2>/dev/null"
    script = (
        f"kill -TERM -- -{pid} 2>/dev/null || kill -TERM {pid} 2>/dev/null; i=0; "
        f"while {alive} && [ $i -lt {rounds} ]; do sleep 0.1; i=$((i+1)); done; "
        f"kill -KILL -- -{pid} 2>/dev/null || kill -KILL {pid} 2>/dev/null; sleep 0.2; "
        f"! {alive}"
    )
    try:
        session.settimeout(timeout)
        session.exec_command(script)
        deadline = time.monotonic() + timeout
        while not session.exit_status_ready():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return bool(session.recv_exit_status() == 0)
    except Exception:  # noqa: BLE001 - best effort: the host may be gone; the caller says so
        return False
    finally:
        with contextlib.suppress(Exception):
            session.close()
