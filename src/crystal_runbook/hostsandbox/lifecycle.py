"""Start and stop the practice hosts of one state directory.

``up`` builds every host from scratch (keys, release tree, sshd_config), starts the sshd
processes on free loopback ports (another port is tried when one is taken meanwhile), and
only then writes `hosts.ini` and `known_hosts`: the inventory never names a host that does
not answer. ``down`` stops every sshd whose PID file is there.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from crystal_runbook import errors
from crystal_runbook.hostsandbox import layout, sshd

DEFAULT_COUNT = 5
MAX_COUNT = 50
GROUP = "maia_vms"
PORT_TRIES = 5


@dataclass(frozen=True)
class PracticeHost:
    name: str
    port: int
    pid: int
    directory: Path


@dataclass(frozen=True)
class PracticeHosts:
    hosts: tuple[PracticeHost, ...]
    inventory: Path
    known_hosts: Path
    client_key: Path

    def as_json(self) -> dict[str, object]:
        return {
            "inventory": str(self.inventory),
            "known_hosts": str(self.known_hosts),
            "client_key": str(self.client_key),
            "group": GROUP,
            "hosts": [
                {"name": h.name, "port": h.port, "pid": h.pid, "directory": str(h.directory)}
                for h in self.hosts
            ],
        }


def base_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "sandbox"


def hosts_dir(state_dir: Path) -> Path:
    return base_dir(state_dir) / "hosts"


def running(state_dir: Path) -> list[PracticeHost]:
    """The practice hosts of ``state_dir`` whose sshd is alive."""
    out = []
    root = hosts_dir(state_dir)
    for pidfile in sorted(root.glob("*/sshd.pid")):
        directory = pidfile.parent
        try:
            pid = int(pidfile.read_text().strip())
            port = int((directory / "port").read_text().strip())
        except (OSError, ValueError):
            continue
        if sshd.is_ours(pid, directory / "sshd_config"):
            out.append(PracticeHost(directory.name, port, pid, directory))
    return out


def up(state_dir: Path, *, count: int = DEFAULT_COUNT) -> PracticeHosts:
    """Start ``count`` practice hosts and write `hosts.ini` and `known_hosts`.

    Raises:
        errors.InputError: a bad count, or hosts of this state directory already run.
        errors.ConfigurationError: sshd or ssh-keygen missing, or sshd would not start.
    """
    if not 1 <= count <= MAX_COUNT:
        raise errors.ParamError(f"--count must be between 1 and {MAX_COUNT}, not {count}")
    alive = running(state_dir)
    if alive:
        raise errors.InputError(
            f"{len(alive)} practice host(s) already run for {state_dir}",
            hint="crystal-runbook sandbox hosts down, then up again",
        )
    sshd.sshd_binary()
    root = hosts_dir(state_dir)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    client_key = root / "client_ed25519"
    sshd.generate_key(client_key, "crystal-runbook practice client")
    authorized = root / "authorized_keys"
    authorized.write_text(client_key.with_name(client_key.name + ".pub").read_text())
    started: list[PracticeHost] = []
    try:
        for i in range(1, count + 1):
            started.append(_start_host(root / f"vm{i}", authorized))
    except BaseException:
        for host in started:
            sshd.stop_pid(host.pid, config=host.directory / "sshd_config")
        raise
    inventory = base_dir(state_dir) / "hosts.ini"
    inventory.write_text(
        layout.inventory_text(
            [(h.name, h.port, h.directory) for h in started], group=GROUP, client_key=client_key
        )
    )
    known_hosts = base_dir(state_dir) / "known_hosts"
    known_hosts.write_text(
        "".join(
            layout.known_hosts_line(h.port, h.directory / "ssh_host_ed25519_key.pub") + "\n"
            for h in started
        )
    )
    return PracticeHosts(tuple(started), inventory, known_hosts, client_key)


def _start_host(directory: Path, authorized_keys: Path) -> PracticeHost:
    directory.mkdir(parents=True)
    sshd.generate_key(directory / "ssh_host_ed25519_key", f"crystal-runbook {directory.name}")
    layout.write_service(directory)
    config = directory / "sshd_config"
    log = directory / "sshd.log"
    pidfile = directory / "sshd.pid"
    for _ in range(PORT_TRIES):
        port = sshd.free_port()
        config.write_text(
            sshd.config_text(
                port=port, directory=directory, authorized_keys=authorized_keys, pidfile=pidfile
            )
        )
        pid = sshd.start(config, log, pidfile)
        if pid is not None:
            (directory / "port").write_text(f"{port}\n")
            return PracticeHost(directory.name, port, pid, directory)
    raise errors.ConfigurationError(
        f"sshd for {directory.name} would not start after {PORT_TRIES} ports",
        hint=f"see {log}",
    )


def down(state_dir: Path) -> list[PracticeHost]:
    """Stop every practice host of ``state_dir``; the ones that were running."""
    stopped = []
    for host in running(state_dir):
        if sshd.stop_pid(host.pid, config=host.directory / "sshd_config"):
            stopped.append(host)
    return stopped
