"""The practice service on each host, and the inventory that points at the hosts.

Each host holds the Capistrano layout that `playbooks/rollback.yml` expects, with a bad
release live, and two small shell scripts standing in for the service's restart and health
check. The restart counter (``restarts``) and log (``restarts.log``) let tests and people see
exactly which hosts a run changed, and how often.
"""

from __future__ import annotations

import getpass
import os
import pwd
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

RELEASES = ("1.4.0", "1.4.1", "1.4.2")
BAD_RELEASE = "1.4.2"
SERVICE = "maia"

RESTART = """#!/bin/sh
# The practice service's restart: counts restarts and logs the release it restarted into.
here=$(cd "$(dirname "$0")/.." && pwd)
n=$(cat "$here/restarts" 2>/dev/null || echo 0)
echo $((n + 1)) > "$here/restarts"
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $(readlink "$here/{service}/current")" >> "$here/restarts.log"
"""

HEALTH = """#!/bin/sh
# Healthy when the service runs the release `current` points at and that build is not bad.
app="$(cd "$(dirname "$0")/.." && pwd)/{service}"
release=$(basename "$(readlink "$app/current")")
running=$(cat "$app/.crystal-running" 2>/dev/null)
if [ "$running" != "$release" ]; then
    echo "unhealthy: current is $release but the service runs ${{running:-nothing}}" >&2
    exit 1
fi
if [ -e "$app/releases/$release/BAD" ]; then
    echo "unhealthy: release $release is a bad build" >&2
    exit 1
fi
echo "healthy: $release"
"""


def write_service(host_dir: Path, *, service: str = SERVICE) -> Path:
    """The release tree (bad release live), scripts and counters of one host; its app root."""
    app = host_dir / service
    for release in RELEASES:
        tree = app / "releases" / release
        tree.mkdir(parents=True, exist_ok=True)
        (tree / "VERSION").write_text(release + "\n")
    (app / "releases" / BAD_RELEASE / "BAD").write_text("this build burns users\n")
    current = app / "current"
    current.unlink(missing_ok=True)
    current.symlink_to(f"releases/{BAD_RELEASE}")
    (app / ".crystal-running").write_text(BAD_RELEASE + "\n")
    bindir = host_dir / "bin"
    bindir.mkdir(exist_ok=True)
    for name, text in (("restart", RESTART), ("health", HEALTH)):
        script = bindir / name
        script.write_text(text.format(service=service))
        script.chmod(0o755)
    (host_dir / "restarts").write_text("0\n")
    (host_dir / "restarts.log").write_text("")
    (host_dir / "tmp").mkdir(exist_ok=True)
    return app


def inventory_text(
    hosts: Sequence[tuple[str, int, Path]], *, group: str, client_key: Path, service: str = SERVICE
) -> str:
    """`hosts.ini` for ``(name, port, host_dir)`` of each practice host."""
    user = _user()
    lines = [
        "# Practice hosts of crystal-runbook: real sshd processes on loopback, as "
        f"{user} (`crystal-runbook sandbox hosts down` stops them).",
        "# app_root, restart_command and health_command are the variables of "
        "playbooks/rollback.yml.",
        f"[{group}]",
    ]
    for name, port, host_dir in hosts:
        restart = shlex.quote(str(host_dir / "bin" / "restart"))
        health = shlex.quote(str(host_dir / "bin" / "health"))
        variables = {
            "ansible_host": "127.0.0.1",
            "ansible_port": str(port),
            "app_root": str(host_dir / service),
            "restart_command": restart,
            "health_command": health,
            "ansible_remote_tmp": str(host_dir / "tmp"),
        }
        lines.append(" ".join([name, *(f"{k}={shlex.quote(v)}" for k, v in variables.items())]))
    lines += [
        "",
        f"[{group}:vars]",
        f"ansible_user={shlex.quote(user)}",
        f"ansible_ssh_private_key_file={shlex.quote(str(client_key))}",
        f"ansible_python_interpreter={shlex.quote(sys.executable)}",
        "",
    ]
    return "\n".join(lines)


def known_hosts_line(port: int, public_key_file: Path) -> str:
    kind, key = public_key_file.read_text().split()[:2]
    return f"[127.0.0.1]:{port} {kind} {key}"


def _user() -> str:
    """The login name of this process's user (sshd authenticates that user)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # no passwd entry in some containers
        return getpass.getuser()
