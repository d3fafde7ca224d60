"""`ansible.playbook` as a step: its events, stats, release choice, verify playbook, isolation.

Real Ansible through ansible-runner on the practice hosts (real sshd). What the engineer
sees (each task result as it happens, then one recap line per host) is what the journal
keeps; the outputs carry each host's stats; a named release is switched to; a named verify
playbook decides the verification; and every run stays inside the state directory: its
ANSIBLE_HOME and artifacts there (the last 20 kept), `ansible-playbook` found without the
user's PATH, and no SSH connection (no ControlMaster mux) left open once the run ends.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from crystal_runbook.hosts import ansible
from tests.conftest import REPO
from tests.integration.hosts.conftest import Practice, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

VERIFIED = """\
apiVersion: crystal-runbook/v1
kind: Runbook
name: verified
params:
  service: {type: string, required: true}
  verify_playbook: {type: string, required: true}
steps:
  - id: switch
    uses: ansible.playbook
    with:
      playbook: rollback
      vars: {service: "{{ service.name }}", version: "1.4.1"}
      verify_playbook: "{{ params.verify_playbook }}"
    retry: {attempts: 1}
    timeout: 10m
"""

HEALTHY = """\
- name: Every host is healthy
  hosts: all
  gather_facts: false
  tasks:
    - name: Health command passes
      ansible.builtin.command: "{{ health_command }}"
      changed_when: false
    - name: Leave a trace of this verification
      ansible.builtin.file:
        path: "{{ app_root }}/../verified-by-playbook"
        state: touch
"""

VM2_FAILS = """\
- name: A verification that fails on vm2
  hosts: all
  gather_facts: false
  tasks:
    - name: Not vm2
      ansible.builtin.fail:
        msg: "vm2 is not what we expect"
      when: inventory_hostname == 'vm2'
"""


def run_of(practice: Practice, run_id: str | None = None) -> dict[str, object]:
    """A run as `runs show -o json` gives it (the newest run by default)."""
    if run_id is None:
        run_id = json.loads(practice.cli("runs", "-o", "json").stdout)[0]["id"]
    shown = practice.cli("runs", "show", str(run_id), "-o", "json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)  # type: ignore[no-any-return]


def progress(practice: Practice, run_id: str, step: str) -> list[str]:
    journal = practice.journal()
    try:
        events = journal.events(run_id)
    finally:
        journal.close()
    return [e.message for e in events if e.step_id == step and e.kind == "progress"]


def with_playbooks(practice: Practice, **playbooks: str) -> Path:
    """The shipped runbooks and playbooks plus `verified.yaml` and the given playbooks."""
    book = practice.root / "runbooks"
    shutil.copytree(REPO / "runbooks", book, dirs_exist_ok=True)
    (book / "verified.yaml").write_text(VERIFIED)
    plays = practice.root / "playbooks"
    shutil.copytree(REPO / "playbooks", plays, dirs_exist_ok=True)
    for name, text in playbooks.items():
        (plays / f"{name}.yml").write_text(text)
    return book


def sshd_children(practice: Practice) -> dict[str, list[int]]:
    """Each practice sshd's child processes: one per SSH connection still open."""
    assert practice.hosts is not None
    servers = {h.pid: h.name for h in practice.hosts.hosts}
    found: dict[str, list[int]] = {name: [] for name in servers.values()}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid in servers:
            found[servers[ppid]].append(int(proc.name))
    return found


class TestEventsAndStats:
    """What the engineer sees is what the journal keeps; outputs are the per-host stats."""

    def test_to_release_streams_each_task_and_a_recap_per_host(self, practice: Practice) -> None:
        """`--to-release 1.4.0`: every host switched there; task lines live and journalled."""
        ran = practice.cli("rollback", "maia", "--env", "vms", "--yes", "--to-release", "1.4.0")
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert set(practice.snapshot().values()) == {("releases/1.4.0", "1.4.0", 1)}

        run = run_of(practice)
        assert run["runbook"] == "rollback-vm"
        assert run["params"]["version"] == "1.4.0"  # type: ignore[index]
        steps = {s["id"]: s for s in run["steps"]}  # type: ignore[attr-defined]
        stats = steps["switch"]["outputs"]["stats"]
        assert sorted(stats) == practice.names
        for name, counts in stats.items():
            # the switch and the restart changed; nothing failed or was unreachable
            assert counts["changed"] == 2, (name, counts)
            assert counts.get("failures", 0) == 0
            assert counts.get("unreachable", 0) == 0

        lines = progress(practice, str(run["id"]), "switch")
        for name in practice.names:
            for task in ("Switch current to the release", "Restart the service"):
                line = next((x for x in lines if x.split()[:2] == [name, "changed"] and task in x), None)
                assert line is not None, (name, task, lines)
                assert line in ran.stderr, f"not shown on the console: {line!r}"
            checked = [x for x in lines if x.startswith(name) and "would change" in x]
            assert checked, f"{name}: the check-mode run's changes are not journalled: {lines}"
            recap = [x for x in lines if x.startswith(name) and " recap: " in x]
            assert any("changed=2" in x and "failures=0" in x for x in recap), recap

    def test_verify_playbook_decides_the_verification(self, practice: Practice) -> None:
        """A named verify playbook runs after the change; one that fails on vm2 fails the step."""
        book = with_playbooks(practice, healthy=HEALTHY, vm2_fails=VM2_FAILS)
        ran = practice.cli(
            "run", "verified", "-p", "service=maia", "-p", "verify_playbook=healthy",
            "--env", "vms", "-o", "json", runbooks=book,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        step = json.loads(ran.stdout)["steps"][0]
        assert step["status"] == "ok"
        assert step["changed"] is True
        for name in practice.names:
            assert (practice.host_dir(name) / "verified-by-playbook").exists(), name
        assert set(practice.snapshot().values()) == {("releases/1.4.1", "1.4.1", 1)}
        verify_runs = sorted((practice.state / "ansible" / "artifacts").glob("*-verify-*"))
        assert len(verify_runs) == 1, "the verify playbook runs once, not check mode"

        failed = practice.cli(
            "run", "verified", "-p", "service=maia", "-p", "verify_playbook=vm2_fails",
            "--env", "vms", "-o", "json", runbooks=book,
        )  # fmt: skip
        assert failed.returncode == 1, failed.stderr
        step = json.loads(failed.stdout)["steps"][0]
        assert step["status"] == "failed"
        assert "vm2" in step["error"]
        assert "vm2 is not what we expect" in step["error"]
        assert "vm1" not in step["error"]


class TestIsolation:
    """A playbook run lives inside the state directory and leaves nothing running."""

    def test_home_artifacts_path_and_connections(self, practice: Practice) -> None:
        """No venv on PATH, 25 old artifact dirs: the run works, 20 are kept, nothing lingers."""
        artifacts = practice.state / "ansible" / "artifacts"
        artifacts.mkdir(parents=True)
        for i in range(25):
            old = artifacts / f"old-{i:02d}"
            old.mkdir()
            os.utime(old, (1_000_000_000 + i, 1_000_000_000 + i))
        assert not (Path("/usr/bin") / "ansible-playbook").exists()
        env = practice.env()
        env["PATH"] = "/usr/bin:/bin"  # neither the venv nor any ansible-playbook
        ran = subprocess.run(
            practice.argv("rollback", "maia", "--env", "vms", "--yes", "-o", "json"),
            cwd=practice.root, env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        assert set(practice.snapshot().values()) == {("releases/1.4.1", "1.4.1", 1)}

        kept = sorted(p.name for p in artifacts.iterdir())
        ours = [name for name in kept if not name.startswith("old-")]
        assert len(kept) == ansible.KEEP_ARTIFACTS, kept
        assert any("-check-" in n for n in ours), ours
        assert any("-apply-" in n for n in ours), ours
        assert "old-00" not in kept  # the oldest went first
        assert "old-24" in kept

        home = practice.state / "ansible" / "home"
        assert home.is_dir()
        assert not (practice.root / ".ansible").exists(), "ANSIBLE_HOME escaped to ~/.ansible"
        assert not list((home / "cp").glob("*")), "a ControlMaster socket was left"
        # every SSH connection (fabric's and Ansible's) is closed once the run has ended:
        # a ControlMaster mux would keep one open on each host for its ControlPersist time
        wait_until(lambda: not any(sshd_children(practice).values()), timeout=15)

    def test_an_open_connection_is_seen(self, practice: Practice) -> None:
        """The check above can fail: an SSH session left open shows as a child of that sshd."""
        port = (practice.host_dir("vm1") / "port").read_text().strip()
        client = practice.state / "sandbox" / "hosts" / "client_ed25519"
        known = practice.state / "sandbox" / "known_hosts"
        proc = subprocess.Popen(
            [
                "ssh", "-i", str(client), "-p", port, "-o", f"UserKnownHostsFile={known}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
                "127.0.0.1", "sleep 60",
            ],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_until(lambda: sshd_children(practice)["vm1"], timeout=30)
            assert sshd_children(practice)["vm2"] == []
        finally:
            proc.kill()
            proc.wait(10)
