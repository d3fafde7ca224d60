"""`rollback` of a service on hosts: real sshd, real Ansible through ansible-runner, fabric.

The README's flow (`sandbox hosts up`, then `rollback maia --env vms --yes`), the second
run that changes nothing, and `kill -9` in the middle of the playbook followed by `resume`.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from crystal_runbook import hostsandbox
from tests.integration.hosts.conftest import Practice, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

GOOD = ("releases/1.4.1", "1.4.1", 1)
"""(current, running release, restarts) of a host rolled back once."""


def steps_of(run: dict[str, object]) -> dict[str, dict[str, object]]:
    return {s["id"]: s for s in run["steps"]}  # type: ignore[index,union-attr]


class TestReadmeFlow:
    """`sandbox hosts up` then `rollback maia --env vms --yes`, as the README says."""

    def test_rollback_switches_restarts_and_verifies_every_host(self, bare: Practice) -> None:
        """All five hosts end on 1.4.1, restarted once, healthy; a second run changes nothing."""
        up = bare.cli("sandbox", "hosts", "up", "-o", "json")
        assert up.returncode == 0, up.stderr
        started = json.loads(up.stdout)
        bare.hosts = hostsandbox.PracticeHosts(
            tuple(
                hostsandbox.PracticeHost(h["name"], h["port"], h["pid"], bare.host_dir(h["name"]))
                for h in started["hosts"]
            ),
            bare.state / "sandbox" / "hosts.ini",
            bare.state / "sandbox" / "known_hosts",
            bare.state / "sandbox" / "hosts" / "client_ed25519",
        )
        assert len(bare.names) == 5
        assert set(bare.snapshot().values()) == {("releases/1.4.2", "1.4.2", 0)}

        first = bare.cli("rollback", "maia", "--env", "vms", "--yes", "-o", "json")
        assert first.returncode == 0, first.stderr
        run = json.loads(first.stdout)
        assert run["runbook"] == "rollback-vm"
        assert run["status"] == "ok"
        steps = steps_of(run)
        assert steps["switch"]["changed"] is True
        assert sorted(steps["switch"]["outputs"]["changed"]) == bare.names  # type: ignore[index]
        verified = steps["verify-hosts"]["outputs"]["hosts"]  # type: ignore[index]
        assert {n: r["status"] for n, r in verified.items()} == dict.fromkeys(bare.names, "ok")
        assert all("healthy: 1.4.1" in r["stdout"] for r in verified.values())
        assert set(bare.snapshot().values()) == {GOOD}
        assert len(bare.apply_runs()) == 1

        second = bare.cli("rollback", "maia", "--env", "vms", "--yes", "-o", "json")
        assert second.returncode == 0, second.stderr
        again = steps_of(json.loads(second.stdout))
        assert again["switch"]["changed"] is False
        assert again["verify-hosts"]["changed"] is False
        assert set(bare.snapshot().values()) == {GOOD}, "a second run must change no host"
        assert len(bare.apply_runs()) == 1, "a second run must not apply the playbook"
        journal = bare.journal()
        try:
            events = journal.events(json.loads(second.stdout)["id"])
        finally:
            journal.close()
        assert not [e for e in events if e.step_id == "switch" and e.status == "applying"]

        down = bare.cli("sandbox", "hosts", "down")
        assert down.returncode == 0, down.stderr
        assert "stopped 5" in down.stdout
        assert hostsandbox.running(bare.state) == []

    def test_plan_shows_each_hosts_diff_and_changes_nothing(self, practice: Practice) -> None:
        """--dry-run: a check-mode run per host, the symlink diff shown, no host touched."""
        before = practice.snapshot()
        plan = practice.cli("rollback", "maia", "--env", "vms", "--dry-run")
        assert plan.returncode in (0, 4), plan.stderr
        for name in practice.names:
            assert f"{name}: Switch current to the release: 'releases/1.4.2' -> 'releases/1.4.1'" in plan.stdout
        assert practice.snapshot() == before
        assert practice.apply_runs() == []


class TestResume:
    """A killed run resumes per host: hosts that finished are not applied again."""

    def test_kill_9_during_the_playbook_then_resume(self, practice: Practice) -> None:
        """kill -9 after the first batch finished; resume restarts only the other hosts, once."""
        proc = practice.popen(
            "run", "rollback-vm", "-p", "service=maia", "-p", "batch=2", "--env", "vms", "--yes"
        )
        try:
            # two hosts at a time: once two record their new release, the next batch has not
            # reached its restart task (three tasks later)
            wait_until(
                lambda: sum(practice.running(n) == "1.4.1" for n in practice.names) >= 2,
                timeout=180,
            )
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        killed_at = practice.snapshot()
        finished = [n for n, state in killed_at.items() if state == GOOD]
        waiting = [n for n, state in killed_at.items() if state[2] == 0]
        assert len(finished) >= 2, killed_at
        assert waiting, f"every host finished before the kill: {killed_at}"
        time.sleep(3)  # the guard stopped ansible-playbook with its parent: nothing moves
        assert practice.snapshot() == killed_at

        runs = json.loads(practice.cli("runs", "-o", "json").stdout)
        assert runs[0]["status"] == "interrupted"  # killed: its process is gone
        resumed = practice.cli("resume", runs[0]["id"], "--yes", "-o", "json")
        assert resumed.returncode == 0, resumed.stderr
        run = json.loads(resumed.stdout)
        assert run["status"] == "ok"
        assert set(practice.snapshot().values()) == {GOOD}, "each host restarted exactly once"
        changed = steps_of(run)["switch"]["outputs"]["changed"]  # type: ignore[index]
        assert not set(finished) & set(changed), f"finished hosts applied again: {changed}"
        assert set(waiting) <= set(changed)
