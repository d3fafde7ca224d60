"""The disk fills during a run (issue 17, point 5): the run ends `interrupted`, not `running`.

The state directory is a real 2 MB filesystem (a tmpfs, mounted for the test) that the test
fills while the run waits at a gate, so the next transition's journal write gets the
kernel's ENOSPC through SQLite. The run must stop before its next step, journal itself
`interrupted` with the reason (exit 130), release its lock and the Kubernetes Lease, and
`resume` must finish it once space is back.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crystal_runbook.testing import actions, disks
from tests.integration.kube.conftest import Cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

BIN = Path(sys.executable).parent

GATED = """\
apiVersion: crystal-runbook/v1
kind: Runbook
name: gated-scale
params:
  service: {type: string, required: true}
environments: [sandbox]
lock: "{{ service.name }}/{{ env }}"
steps:
  - id: gate
    uses: fake.gate
    with: {key: gate}
  - id: scale
    uses: k8s.scale
    with: {replicas: 4}
"""


@pytest.fixture
def small_state(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB filesystem for the state directory (skipped where nothing can be mounted)."""
    try:
        with disks.small_disk(tmp_path / "small-state", size_kb=2048) as mounted:
            yield mounted
    except disks.Unavailable as exc:
        pytest.skip(str(exc))


def step_status(journal: Path, step: str) -> str | None:
    """A step's status read straight from the journal (read-only, no reserve, no schema)."""
    if not journal.exists():
        return None
    try:
        with sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute("SELECT status FROM steps WHERE id = ?", (step,)).fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else str(row[0])


def scale_patches(cluster: Cluster) -> int:
    return sum(
        1
        for r in cluster.sb.requests()
        if r["method"] == "PATCH" and "/deployments/maia" in r["path"] and r["status"] == 200
    )


class TestDiskFillsMidRun:
    """ENOSPC while journalling a transition ends the run cleanly; resume finishes it."""

    def test_interrupted_released_and_resumed(self, cluster: Cluster, small_state: Path) -> None:
        """Exit 130 naming the full disk; run and step `interrupted`; no lock row, no Lease;
        the next step never started; after space is freed, `resume` scales once and ends ok."""
        runbook = cluster.root / "gated.yaml"
        runbook.write_text(GATED)
        actions.set_state(small_state, "gate", "closed")
        opened = small_state / "gate-open.json"
        opened.write_text(json.dumps({"gate": "open"}))  # renamed into place once the disk is full
        env = cluster.env(
            CRYSTAL_STATE_DIR=str(small_state), CRYSTAL_ACTION_MODULES="crystal_runbook.testing"
        )
        argv = [str(BIN / "crystal-runbook"), "--env", "sandbox"]
        proc = subprocess.Popen(
            [*argv, "run", str(runbook), "-p", "service=maia", "--yes"],
            cwd=cluster.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        journal = small_state / "journal.db"
        deadline = time.monotonic() + 90
        while step_status(journal, "gate") != "checking":
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run never reached its gate"
            time.sleep(0.05)
        assert (small_state / "journal.reserve").exists()  # kept aside while there was room
        filler = disks.fill(small_state)
        os.replace(opened, small_state / actions.STATE_FILE)  # the gate opens: the step ends
        out, err = proc.communicate(timeout=90)

        said = out + err
        assert proc.returncode == 130, said
        assert "Traceback" not in said
        assert "the disk is full" in said
        assert "crystal-runbook resume" in said
        assert scale_patches(cluster) == 0  # no further step started
        assert cluster.kubectl("get", "leases", "-o", "name").stdout.strip() == ""
        with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as conn:
            assert conn.execute("SELECT COUNT(*) FROM locks").fetchone() == (0,)
        shown = subprocess.run(
            [*argv, "runs", "-o", "json"], env=env, capture_output=True, text=True, check=False
        )
        assert shown.returncode == 0, shown.stderr
        (run,) = json.loads(shown.stdout)
        assert run["status"] == "interrupted"
        assert "the disk is full" in run["error"]

        filler.unlink()  # space is back
        resumed = subprocess.run(
            [*argv, "resume", run["id"], "--yes", "-o", "json"],
            cwd=cluster.root,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        done = json.loads(resumed.stdout)
        assert done["status"] == "ok"
        assert [s["status"] for s in done["steps"]] == ["ok", "ok"]
        assert scale_patches(cluster) == 1
        assert cluster.deployment()["spec"]["replicas"] == 4
        assert cluster.kubectl("get", "leases", "-o", "name").stdout.strip() == ""
