"""One OpenSSH server on a loopback port, started and stopped by its PID file.

The configuration is the smallest that lets the current user in with one key and nothing
else: loopback only, no passwords, no PAM (so no root is needed), our own host key, PID file
and authorized_keys. As root, sshd also needs its privilege-separation directory
``/run/sshd``, which Debian creates only when the service starts; it is created here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess  # fixed argument lists, never a shell  # nosec B404
import time
from pathlib import Path

from crystal_runbook import errors

SSHD_PATHS = ("/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd")
START_TIMEOUT = 10.0
"""Seconds for sshd to answer on its port (it takes about 0.03 s)."""


def sshd_binary() -> Path:
    """Debian's sshd (package openssh-server).

    Raises:
        errors.ConfigurationError: not installed.
    """
    for candidate in SSHD_PATHS:
        if os.access(candidate, os.X_OK):
            return Path(candidate)
    raise errors.ConfigurationError(
        "OpenSSH's sshd is not installed",
        hint="install it: sudo apt-get install openssh-server (no service needs to run)",
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config_text(*, port: int, directory: Path, authorized_keys: Path, pidfile: Path) -> str:
    return "\n".join(
        [
            "# Practice host of crystal-runbook (`crystal-runbook sandbox hosts up`).",
            f"Port {port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {directory / 'ssh_host_ed25519_key'}",
            f"PidFile {pidfile}",
            f"AuthorizedKeysFile {authorized_keys}",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "UseDNS no",
            "PrintMotd no",
            "MaxStartups 100:30:200",
            "Subsystem sftp internal-sftp",
            "",
        ]
    )


def generate_key(path: Path, comment: str) -> None:
    """A new ed25519 key pair at ``path`` and ``path.pub``.

    Raises:
        errors.ConfigurationError: ssh-keygen is missing or failed.
    """
    for old in (path, path.with_name(path.name + ".pub")):
        old.unlink(missing_ok=True)
    try:
        # a fixed argument list, no shell; ssh-keygen from PATH, as an operator runs it
        subprocess.run(  # nosec B603 B607
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            check=True,
            capture_output=True,
            timeout=30,
        )
    except FileNotFoundError:
        raise errors.ConfigurationError(
            "ssh-keygen is not installed", hint="sudo apt-get install openssh-client"
        ) from None
    except subprocess.CalledProcessError as exc:
        raise errors.ConfigurationError(
            f"ssh-keygen failed: {exc.stderr.decode(errors='replace').strip()}"
        ) from None


def start(config: Path, log: Path, pidfile: Path) -> int | None:
    """Start sshd as a daemon (it detaches and outlives this process); its PID once it listens.

    None when it could not listen (the port was taken meanwhile): try another port.

    Raises:
        errors.ConfigurationError: sshd rejected its configuration or did not start in time.
    """
    if os.geteuid() == 0:
        with contextlib.suppress(OSError):
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    pidfile.unlink(missing_ok=True)
    log.write_text("")
    done = subprocess.run(  # a fixed argument list of our own, no shell  # nosec B603
        [str(sshd_binary()), "-E", str(log), "-f", str(config)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=START_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).decode(errors="replace").strip()
        raise errors.ConfigurationError(
            f"sshd refused to start: {detail or log.read_text().strip()}", hint=f"see {log}"
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text().strip())
            if is_ours(pid, config):
                return pid
        text = log.read_text(errors="replace")
        if "Cannot bind" in text or "fatal" in text.lower():
            return None
        time.sleep(0.02)
    raise errors.ConfigurationError(
        f"sshd did not start within {START_TIMEOUT:g}s", hint=f"see {log}"
    )


def is_ours(pid: int, config: Path | None) -> bool:
    """Whether ``pid`` is a live sshd started with ``config`` (a recycled PID is not)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return config is None  # no /proc: trust the PID file only for our own children
    text = b" ".join(cmdline)  # sshd retitles itself: "sshd: /usr/sbin/sshd -E ... [listener]"
    if not text.startswith(b"sshd") and not cmdline[0].endswith(b"/sshd"):
        return False
    return config is None or str(config).encode() in text


def stop_pid(pid: int, *, config: Path | None, timeout: float = 5.0) -> bool:
    """SIGTERM (then SIGKILL) the sshd ``pid`` if it is ours; True if it was running."""
    if not is_ours(pid, config):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
        if not is_ours(pid, config):
            return True
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True
