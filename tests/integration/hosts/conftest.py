"""Practice hosts for the host tests: real sshd processes on free loopback ports, as this user.

Each test gets its own state directory with five hosts started by the product's own
``hostsandbox`` (what `crystal-runbook sandbox hosts up` runs), the shipped runbooks,
playbooks and inventory (whose `vms` environment points at ``{state_dir}``), and helpers
that read what each host recorded: its `current` symlink, the release it runs, and how
often it was restarted. HOME points into the test's directory, so nothing touches ~/.ssh
or ~/.ansible of the person running the tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crystal_runbook import hostsandbox
from crystal_runbook.engine import journal
from tests.conftest import REPO

BIN = Path(sys.executable).parent


@dataclass
class Practice:
    """Five practice hosts and the installed command line pointed at them."""

    root: Path
    hosts: hostsandbox.PracticeHosts | None = None

    @property
    def state(self) -> Path:
        return self.root / ".crystal"

    @property
    def names(self) -> list[str]:
        assert self.hosts is not None
        return [h.name for h in self.hosts.hosts]

    def host_dir(self, name: str) -> Path:
        return self.state / "sandbox" / "hosts" / name

    def current(self, name: str) -> str:
        return os.readlink(self.host_dir(name) / "maia" / "current")

    def running(self, name: str) -> str:
        return (self.host_dir(name) / "maia" / ".crystal-running").read_text().strip()

    def restarts(self, name: str) -> int:
        return int((self.host_dir(name) / "restarts").read_text().strip())

    def snapshot(self) -> dict[str, tuple[str, str, int]]:
        """Each host's (current, running release, restarts)."""
        return {n: (self.current(n), self.running(n), self.restarts(n)) for n in self.names}

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CRYSTAL_", "ANSIBLE_"))}
        env.update(
            CRYSTAL_STATE_DIR=str(self.state),
            CRYSTAL_ACTOR="oncall",
            HOME=str(self.root),
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            **extra,
        )
        return env

    def argv(self, *args: str, runbooks: Path | None = None, inventory: Path | None = None) -> list[str]:
        return [
            str(BIN / "crystal-runbook"),
            "--runbooks",
            str(runbooks or REPO / "runbooks"),
            "--inventory",
            str(inventory or REPO / "inventory"),
            *args,
        ]

    def cli(
        self,
        *args: str,
        runbooks: Path | None = None,
        inventory: Path | None = None,
        timeout: float = 240,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args, runbooks=runbooks, inventory=inventory),
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def popen(self, *args: str) -> subprocess.Popen[bytes]:
        """The command line in the background, its output in ``background.log``."""
        with (self.root / "background.log").open("ab") as log:
            return subprocess.Popen(
                self.argv(*args), cwd=self.root, env=self.env(), stdout=log, stderr=log
            )

    def journal(self) -> journal.SqliteJournal:
        return journal.open_journal(self.state)

    def apply_runs(self) -> list[Path]:
        """ansible-runner artifact directories of real (not check-mode) playbook runs."""
        return sorted((self.state / "ansible" / "artifacts").glob("*-apply-*"))

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path


@pytest.fixture
def practice(tmp_path: Path) -> Iterator[Practice]:
    """Five practice hosts (vm1..vm5) for this test, stopped afterwards."""
    found = Practice(tmp_path)
    found.hosts = hostsandbox.up(found.state, count=5)
    try:
        yield found
    finally:
        hostsandbox.down(found.state)


@pytest.fixture
def bare(tmp_path: Path) -> Iterator[Practice]:
    """A state directory without hosts (the test starts them through the CLI)."""
    found = Practice(tmp_path)
    try:
        yield found
    finally:
        hostsandbox.down(found.state)


def wait_until(check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not reached in time")
