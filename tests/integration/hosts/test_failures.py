"""Hosts that fail: one host down, and the refusals that come before any change.

A host that is down fails the step after the others finished, with every host's result
journalled, unless `allow_failures` tolerates it; `resume` then changes only that host. An
unknown host group, an unusable key and a host-key mismatch each stop the run with a clear
message before any host is changed, through fabric (`ssh.run`) and through Ansible alike.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from crystal_runbook.hostsandbox import sshd
from tests.conftest import REPO
from tests.integration.hosts.conftest import Practice

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

SWITCH = """\
apiVersion: crystal-runbook/v1
kind: Runbook
name: switch
params:
  service: {type: string, required: true}
  version: {type: string, default: "1.4.1"}
  allow_failures: {type: integer, default: 0}
steps:
  - id: switch
    uses: ssh.run
    with:
      check: test "$(readlink "$app_root/current")" = releases/{{ params.version }}
      command: >-
        ln -sfn releases/{{ params.version }} "$app_root/current.new"
        && mv -T "$app_root/current.new" "$app_root/current"
      export_vars: [app_root]
      allow_failures: "{{ params.allow_failures }}"
      host_timeout: 20s
    timeout: 2m
"""


def runbooks(practice: Practice) -> Path:
    """The shipped runbooks plus the `switch` runbook above."""
    directory = practice.root / "runbooks"
    shutil.copytree(REPO / "runbooks", directory, dirs_exist_ok=True)
    (directory / "switch.yaml").write_text(SWITCH)
    shutil.copytree(REPO / "playbooks", practice.root / "playbooks", dirs_exist_ok=True)
    return directory


def progress(practice: Practice, run_id: str, step: str) -> list[str]:
    journal = practice.journal()
    try:
        events = journal.events(run_id)
    finally:
        journal.close()
    return [e.message for e in events if e.step_id == step and e.kind == "progress"]


def untouched(practice: Practice, ran: subprocess.CompletedProcess[str] | None = None) -> None:
    """No host changed, no playbook applied; a refused run announced nothing either."""
    assert set(practice.snapshot().values()) == {("releases/1.4.2", "1.4.2", 0)}
    assert practice.apply_runs() == []
    if ran is not None:
        assert json.loads(ran.stdout)["status"] == "refused"
        outbox = practice.state / "outbox"
        assert not outbox.exists() or not list(outbox.glob("*.json")), "the rollback was announced"


class TestHostDown:
    """One host down: the others are changed and recorded; the step fails unless tolerated."""

    def test_down_host_fails_the_step_then_resume_changes_only_it(self, practice: Practice) -> None:
        """vm3 down: exit 1 naming vm3; allow_failures=1 passes; resume after it is back."""
        book = runbooks(practice)
        vm3 = practice.host_dir("vm3")
        pid = int((vm3 / "sshd.pid").read_text())
        assert sshd.stop_pid(pid, config=vm3 / "sshd_config")

        failed = practice.cli(
            "run", "switch", "-p", "service=maia", "--env", "vms", "-o", "json", runbooks=book
        )
        assert failed.returncode == 1, failed.stderr
        run = json.loads(failed.stdout)
        step = run["steps"][0]
        assert step["status"] == "failed"
        assert "1 of 5 host(s) failed (vm3)" in step["error"]
        assert "connection refused" in run["error"] or "vm3" in run["error"]
        lines = progress(practice, run["id"], "switch")
        for name in ("vm1", "vm2", "vm4", "vm5"):
            assert any(
                line.startswith(name) and " command " in line and "changed" in line
                for line in lines
            ), lines
            assert practice.current(name) == "releases/1.4.1"
        assert any(
            line.startswith("vm3") and "unreachable" in line and "connection refused" in line
            for line in lines
        )
        assert practice.current("vm3") == "releases/1.4.2"

        tolerated = practice.cli(
            "run",
            "switch",
            "-p",
            "service=maia",
            "-p",
            "allow_failures=1",
            "--env",
            "vms",
            "-o",
            "json",
            runbooks=book,
        )
        assert tolerated.returncode == 0, tolerated.stderr
        outputs = json.loads(tolerated.stdout)["steps"][0]["outputs"]
        assert outputs["failed"] == ["vm3"]
        assert outputs["changed"] == []
        assert outputs["hosts"]["vm3"]["status"] == "unreachable"

        port = int((vm3 / "port").read_text())
        assert sshd.start(vm3 / "sshd_config", vm3 / "sshd.log", vm3 / "sshd.pid") is not None, port
        resumed = practice.cli("resume", run["id"], "-o", "json", runbooks=book)
        assert resumed.returncode == 0, resumed.stderr
        outputs = json.loads(resumed.stdout)["steps"][0]["outputs"]
        assert outputs["changed"] == ["vm3"], "resume must change only the host that still needs it"
        assert {practice.current(n) for n in practice.names} == {"releases/1.4.1"}


def services_with(practice: Practice, env: str = "vms", **hosts: str) -> Path:
    """An inventory directory whose environment ``env`` has the given `hosts:` fields."""
    directory = practice.root / "inventory"
    directory.mkdir(exist_ok=True)
    block = {
        "group": "maia_vms",
        "inventory": "{state_dir}/sandbox/hosts.ini",
        "known_hosts": "{state_dir}/sandbox/known_hosts",
        **hosts,
    }
    fields = ", ".join(f"{k}: {json.dumps(v)}" for k, v in block.items())
    (directory / "services.yaml").write_text(
        f"services:\n  maia:\n    environments:\n      {env}:\n        hosts: {{{fields}}}\n"
    )
    return directory


VIA = {
    "ansible": ("rollback", "maia", "--env", "vms", "--yes", "-o", "json"),
    "ssh": ("run", "switch", "-p", "service=maia", "--env", "vms", "-o", "json"),
}


@pytest.mark.parametrize("via", ["ansible", "ssh"])
class TestRefusedBeforeAnyChange:
    """Bad host configuration is a clear error before any host is changed: the preflight
    refuses the run (exit 1, status refused) before the rollback is even announced."""

    def test_unknown_host_group(self, practice: Practice, via: str) -> None:
        """A group the host inventory lacks is named, with the closest group there."""
        inventory = services_with(practice, group="maia_vmz")
        ran = practice.cli(*VIA[via], runbooks=runbooks(practice), inventory=inventory)
        assert ran.returncode == 1, ran.stderr
        error = json.loads(ran.stdout)["error"]
        assert "no host group or host 'maia_vmz'" in error
        assert "did you mean 'maia_vms'" in error
        untouched(practice, ran)

    @pytest.mark.parametrize("key", ["missing", "garbage"])
    def test_unusable_key(self, practice: Practice, via: str, key: str) -> None:
        """A key file that is missing or holds no private key is named, per host."""
        bad = practice.root / "bad_key"
        if key == "garbage":
            bad.write_text("this is not a key\n")
        hosts_ini = practice.state / "sandbox" / "hosts.ini"
        client = str(practice.state / "sandbox" / "hosts" / "client_ed25519")
        hosts_ini.write_text(hosts_ini.read_text().replace(client, str(bad)))
        ran = practice.cli(*VIA[via], runbooks=runbooks(practice))
        assert ran.returncode == 1, ran.stderr
        error = json.loads(ran.stdout)["error"]
        assert "unusable SSH key" in error
        assert "does not exist" in error if key == "missing" else "holds no private key" in error
        untouched(practice, ran)

    def test_host_key_mismatch(self, practice: Practice, via: str) -> None:
        """A host whose key differs from known_hosts is refused as a mismatch, by name."""
        other = practice.root / "other_key"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True
        )
        known = practice.state / "sandbox" / "known_hosts"
        port = int((practice.host_dir("vm2") / "port").read_text())
        kind, key = other.with_suffix(".pub").read_text().split()[:2]
        lines = [
            f"[127.0.0.1]:{port} {kind} {key}" if line.startswith(f"[127.0.0.1]:{port} ") else line
            for line in known.read_text().splitlines()
        ]
        known.write_text("\n".join(lines) + "\n")
        ran = practice.cli(*VIA[via], runbooks=runbooks(practice))
        assert ran.returncode == 1, ran.stderr
        error = json.loads(ran.stdout)["error"]
        assert "vm2" in error
        assert "HOST KEY MISMATCH" in error
        untouched(practice, ran)


class TestKnownHosts:
    """Unknown host keys: refused everywhere but in the `sandbox` environment."""

    def test_unknown_keys_are_added_only_in_sandbox(self, practice: Practice) -> None:
        """An empty known_hosts refuses the run in `vms`; in `sandbox` the keys are recorded."""
        book = runbooks(practice)
        empty = practice.root / "known_hosts.new"
        empty.write_text("")
        strict = services_with(practice, known_hosts=str(empty))
        ran = practice.cli(*VIA["ssh"], runbooks=book, inventory=strict)
        assert ran.returncode == 1, ran.stderr
        assert "is not in" in json.loads(ran.stdout)["error"]
        untouched(practice, ran)

        sandbox = services_with(practice, env="sandbox", known_hosts=str(empty))
        ran = practice.cli(
            "run",
            "switch",
            "-p",
            "service=maia",
            "--env",
            "sandbox",
            "-o",
            "json",
            runbooks=book,
            inventory=sandbox,
        )
        assert ran.returncode == 0, ran.stderr
        recorded = empty.read_text().splitlines()
        expected = (practice.state / "sandbox" / "known_hosts").read_text().splitlines()
        assert sorted(recorded) == sorted(expected)
