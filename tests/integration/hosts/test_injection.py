"""Parameters never inject shell syntax: they reach the host as literal words.

`ssh.run` renders every template value in its commands through ``shlex.quote``; a value
with `;`, `$(...)`, backticks or a newline is written to a file on the host byte for byte,
and the marker file its payload would create never appears. The same values given to the
rollback as a release are refused (`rollback`) or found to be no release (`ansible.playbook`)
before any host changes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.hosts.conftest import Practice

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

RECORD = """\
apiVersion: crystal-runbook/v1
kind: Runbook
name: record
params:
  service: {type: string, required: true}
  value: {type: string, required: true}
steps:
  - id: record
    uses: ssh.run
    with:
      check: "false"
      command: printf '%s' {{ params.value }} > "$app_root/../value.txt"
      verify: test -f "$app_root/../value.txt"
      limit: vm1
      export_vars: [app_root]
"""

SWITCH_TO = """\
apiVersion: crystal-runbook/v1
kind: Runbook
name: switch-to
params:
  service: {type: string, required: true}
  version: {type: string, required: true}
steps:
  - id: switch
    uses: ansible.playbook
    with:
      playbook: rollback
      vars: {service: "{{ service.name }}", version: "{{ params.version }}"}
"""

PAYLOADS = {
    "semicolon": "1.4.2; touch {marker}",
    "command-substitution": "$(touch {marker})",
    "backticks": "`touch {marker}`",
    "newline": "1.4.2\ntouch {marker}",
}


def runbooks(practice: Practice) -> Path:
    directory = practice.root / "runbooks"
    shutil.copytree(REPO / "runbooks", directory, dirs_exist_ok=True)
    (directory / "record.yaml").write_text(RECORD)
    (directory / "switch-to.yaml").write_text(SWITCH_TO)
    shutil.copytree(REPO / "playbooks", practice.root / "playbooks", dirs_exist_ok=True)
    return directory


def test_ssh_run_passes_each_payload_as_a_literal(practice: Practice, tmp_path: Path) -> None:
    """`;`, `$(...)`, backticks and a newline arrive as data; no marker file is created."""
    book = runbooks(practice)
    written = practice.host_dir("vm1") / "value.txt"
    for name, payload in PAYLOADS.items():
        marker = tmp_path / f"pwned-{name}"
        value = payload.format(marker=marker)
        ran = practice.cli("run", "record", "-p", "service=maia", "-p", f"value={value}", "--env", "vms", runbooks=book)
        assert ran.returncode == 0, f"{name}: {ran.stderr}"
        assert written.read_text() == value, name
        assert not marker.exists(), f"{name}: the payload ran on the host"


def test_rollback_refuses_a_release_with_shell_syntax(practice: Practice, tmp_path: Path) -> None:
    """`rollback --to-release` with shell syntax is bad input (exit 2): nothing runs."""
    marker = tmp_path / "pwned-release"
    ran = practice.cli("rollback", "maia", "--env", "vms", "--yes", "--to-release", f"1.4.2; touch {marker}")
    assert ran.returncode == 2, ran.stderr
    assert "does not match the pattern" in ran.stderr
    assert not marker.exists()
    assert set(practice.snapshot().values()) == {("releases/1.4.2", "1.4.2", 0)}


def test_playbook_treats_the_payload_as_a_release_name(practice: Practice, tmp_path: Path) -> None:
    """Given to Ansible as an extra var, the payload is no release: check mode fails, no change."""
    marker = tmp_path / "pwned-ansible"
    ran = practice.cli(
        "run", "switch-to", "-p", "service=maia", "-p", f"version=$(touch {marker}); touch {marker}",
        "--env", "vms", "-o", "json", runbooks=runbooks(practice),
    )
    assert ran.returncode == 1, ran.stderr
    error = json.loads(ran.stdout)["error"]
    assert "in check mode, before any change" in error
    assert "no release" in error
    assert not marker.exists()
    assert set(practice.snapshot().values()) == {("releases/1.4.2", "1.4.2", 0)}
    assert practice.apply_runs() == []
