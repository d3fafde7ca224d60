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
        line = (
            f"/bin/sh -c {shlex.quote(script)} </dev/null; "
            f"printf '\\n{marker} %d\\n' $?; printf '\\n{marker}\\n' >&2\n"
        )
        deadline = time.monotonic() + timeout
        self.channel.sendall(line.encode())
        stdout, status = self._read(self.channel.recv, marker, deadline, limit)
        stderr, _ = self._read(self.channel.recv_stderr, marker, deadline, limit)
        return Output(exit_code=status if status is not None else 255, stdout=stdout, stderr=stderr)

    def _read(
        self, recv: Any, marker: str, deadline: float, limit: int
    ) -> tuple[str, int | None]:
        """Output up to the marker line (and the status on it, if any)."""
        needle = f"\n{marker}".encode()
        buffer = b""
        while True:
            found = buffer.find(needle)
            if found >= 0:
                end = buffer.find(b"\n", found + len(needle))
                if end >= 0:
                    rest = buffer[found + len(needle) : end].strip()
                    text = buffer[:found].decode("utf-8", errors="replace")
                    return text[-limit:], int(rest) if rest.isdigit() else None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ShellTimeout
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
