"""`ssh.run` fan-out: all hosts at once within `concurrency`, each command within `host_timeout`.

Each host writes when its command started and ended (the practice hosts share this
machine's clock), so the test counts how many commands ran at the same moment. A host
whose command outlives `host_timeout` fails alone: the others finish and are recorded.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.hosts.conftest import Practice

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

SPANS = """\
apiVersion: crystal-runbook/v1
kind: Runbook
name: spans
params:
  service: {type: string, required: true}
  sleep: {type: integer, default: 1}
  slow_host: {type: string, default: none}
  slow_sleep: {type: string, default: "120"}
  concurrency: {type: integer, default: 10}
  host_timeout: {type: string, default: 60s}
steps:
  - id: spans
    uses: ssh.run
    with:
      check: test -e "$app_root/../span"
      command: >-
        start=$(date +%s.%N);
        if [ "$(basename "$(dirname "$app_root")")" = {{ params.slow_host }} ]; then
        sleep {{ params.slow_sleep }}; fi;
        sleep {{ params.sleep }};
        echo "$start $(date +%s.%N)" > "$app_root/../span"
      export_vars: [app_root]
      concurrency: "{{ params.concurrency }}"
      host_timeout: "{{ params.host_timeout }}"
    timeout: 3m
"""


def spans_runbook(practice: Practice) -> Path:
    directory = practice.root / "runbooks"
    shutil.copytree(REPO / "runbooks", directory, dirs_exist_ok=True)
    (directory / "spans.yaml").write_text(SPANS)
    return directory


def most_at_once(practice: Practice) -> int:
    """The largest number of hosts whose commands were running at the same moment."""
    edges: list[tuple[float, int]] = []
    for name in practice.names:
        start, end = map(float, (practice.host_dir(name) / "span").read_text().split())
        edges += [(start, 1), (end, -1)]
    running = peak = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):  # an end before a start at a tie
        running += step
        peak = max(peak, running)
    return peak


def clear(practice: Practice) -> None:
    for name in practice.names:
        (practice.host_dir(name) / "span").unlink(missing_ok=True)


class TestConcurrency:
    """Hosts run in parallel, never more than `concurrency` at a time."""

    def test_default_runs_all_five_at_once_and_two_means_two(self, practice: Practice) -> None:
        """Default (10): the five commands overlap; concurrency 2: at most two at a time."""
        book = spans_runbook(practice)
        ran = practice.cli("run", "spans", "-p", "service=maia", "-p", "sleep=3", "--env", "vms", runbooks=book)
        assert ran.returncode == 0, ran.stderr
        assert most_at_once(practice) == 5

        clear(practice)
        ran = practice.cli(
            "run", "spans", "-p", "service=maia", "-p", "concurrency=2", "--env", "vms", runbooks=book
        )
        assert ran.returncode == 0, ran.stderr
        assert most_at_once(practice) == 2


class TestHostTimeout:
    """A command that outlives `host_timeout` fails that host alone."""

    def test_slow_host_fails_after_its_timeout_and_the_others_finish(self, practice: Practice) -> None:
        """vm2 sleeps past host_timeout 10s: it fails with its timeout named; the others changed.
        Its command is stopped on the host, not left running to change it after the step failed
        (a retry or a resume would run it a second time alongside)."""
        book = spans_runbook(practice)
        slow_sleep = f"117.{secrets.randbelow(10**6):06d}"  # this run's sleep, to find it by
        ran = practice.cli(
            "run", "spans", "-p", "service=maia", "-p", "slow_host=vm2", "-p", "sleep=0",
            "-p", "host_timeout=10s", "-p", f"slow_sleep={slow_sleep}",
            "--env", "vms", "-o", "json", runbooks=book,
        )  # fmt: skip
        assert ran.returncode == 1, ran.stderr
        still = subprocess.run(["pgrep", "-f", f"sleep {slow_sleep}"], capture_output=True, text=True, check=False)
        assert still.returncode == 1, f"the timed-out command still runs on vm2: {still.stdout}"
        step = json.loads(ran.stdout)["steps"][0]
        assert "1 of 5 host(s) failed (vm2)" in step["error"]
        assert not (practice.host_dir("vm2") / "span").exists()
        for name in ("vm1", "vm3", "vm4", "vm5"):
            assert (practice.host_dir(name) / "span").exists(), name
        journal = practice.journal()
        try:
            lines = [e.message for e in journal.events(json.loads(ran.stdout)["id"]) if e.kind == "progress"]
        finally:
            journal.close()
        assert any(
            x.startswith("vm2") and "did not finish within 10s; it was stopped on the host" in x
            for x in lines
        ), lines
        assert sum(x.split()[1:3] == ["command", "changed"] for x in lines) == 4, lines
