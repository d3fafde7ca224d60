"""Rollbacks while the Kubernetes API misbehaves (issue 16, item 1): the sandbox's fault
switch answers 500 to a fifth of all requests, 429 with Retry-After, adds 200 ms to every
request, drops connections, or goes away entirely for 10 s in the middle of the rollout.

Every run must end within its timeout (none hangs), either ok on the intended revision or
failed with a clear error (what, and a hint); either way its journal is final and gap-free,
its lock and its Lease are released, and at most one PATCH of the Deployment took effect.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from crystal_runbook import sandbox
from tests.chaos import figures
from tests.chaos import rig as rigs

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(900)]

GOOD = "registry.local/maia:1.4.2"
RUN_TIMEOUT = 300.0
"""Seconds a faulted rollback may take before it counts as hung (its undo step allows 5 m;
the faults below cost seconds, so this is far above what a working run needs)."""
OUTAGE = 10.0

SCENARIOS = {
    "500 on 20% of requests": [sandbox.Fault(kind="status", status=500, fraction=0.2)],
    "429 with Retry-After": [
        sandbox.Fault(kind="status", status=429, fraction=0.25, retry_after=1.0)
    ],
    "200 ms latency": [sandbox.Fault(kind="latency", latency=0.2)],
    "dropped connections": [sandbox.Fault(kind="drop", fraction=0.1)],
}
ROUNDS = 2


def faulted_requests(requests: list[dict[str, object]]) -> int:
    return sum(1 for r in requests if r.get("fault"))


def settle_outcome(
    rig: rigs.Rig, done: int, stdout: str, stderr: str, *, since: int, revision: int
) -> str:
    """Check one faulted rollback's outcome; returns its run status."""
    assert done in {0, 1}, f"exit {done}: {stderr[-3000:]}"
    assert "Traceback" not in stderr
    run = json.loads(stdout)
    run_id = run["id"]
    problems = rigs.journal_problems(rig.state, run_id)
    assert problems == [], f"run {run_id}: {problems}"
    status = rigs.run_row(rig.state, run_id)["status"]
    assert rigs.held_locks(rig.state) == []
    assert rig.leases() == [], "a Lease was left behind"
    patches = rigs.deployment_patches(rig.requests(since))
    effective = [p for p in patches if rigs.took_effect(p)]
    assert len(effective) <= 1, patches
    for patch in effective:
        assert rigs.intent_before_change(rig.state, run_id, patch, "undo")
    if done == 0:
        assert status == "ok"
        rigs.wait_until(lambda: rigs.rolled_out(rig.deployment()), 60, "the rollout")
        after = rig.deployment()
        assert (rigs.image(after), rigs.revision(after)) == (GOOD, revision + 1)
        assert rigs.env_value(after, "CRYSTAL_MODE") == "legacy"
    else:
        assert status == "failed"
        assert "error" in stderr.lower()
        assert "hint:" in stderr or "resume" in stderr, stderr[-2000:]
    return str(status)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_rollbacks_under_api_faults_end_ok_or_fail_cleanly(tmp_path: Path, scenario: str) -> None:
    """Each rollback under the fault ends within its timeout, ok or failed with a clear
    error, with its journal final, its lock and Lease released and one PATCH at most."""
    with rigs.rig(tmp_path) as rig:
        for i in range(ROUNDS):
            revision = rigs.revision(rig.deployment())
            since = rig.request_count()
            rig.sb.faults.set(SCENARIOS[scenario])
            done = rig.cli("rollback", "maia", "-o", "json", timeout=RUN_TIMEOUT)
            rig.sb.faults.clear()
            injected = faulted_requests(rig.requests(since))
            figures.add(f"API faults: {scenario}: rollbacks", 1)
            figures.add(f"API faults: {scenario}: faults injected", injected)
            figures.add("API faults: faults injected (all scenarios)", injected)
            status = settle_outcome(
                rig, done.returncode, done.stdout, done.stderr, since=since, revision=revision
            )
            figures.add(f"API faults: {scenario}: runs {status}", 1)
            if status != "ok":  # finish it once the API behaves: resume must complete it
                run_id = json.loads(done.stdout)["id"]
                resumed = rig.cli("resume", run_id, "-o", "json")
                assert resumed.returncode == 0, resumed.stderr[-3000:]
            rig.release(f"registry.local/maia:3.{i}-bad")


def test_the_api_down_for_ten_seconds_mid_rollout(tmp_path: Path) -> None:
    """The API drops every connection (watches included) and every request for 10 s right
    after the rollback's PATCH; the run waits it out and ends ok, or fails cleanly."""
    with rigs.rig(tmp_path, ready_delay=1.5) as rig:
        revision = rigs.revision(rig.deployment())
        since = rig.request_count()
        proc = rig.spawn("rollback", "maia", "-o", "json")
        try:
            rigs.wait_until(
                lambda: (
                    any(rigs.took_effect(p) for p in rigs.deployment_patches(rig.requests(since)))
                    or proc.poll() is not None
                ),
                120,
                "the rollback's PATCH",
            )
            assert proc.poll() is None, "the rollback ended before the outage"
            rig.sb.faults.add(sandbox.Fault(kind="drop"))
            dropped = rig.sb.server.drop_connections()
            back = threading.Timer(OUTAGE, rig.sb.faults.clear)
            back.start()
            stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        back.join()
        injected = faulted_requests(rig.requests(since))
        figures.add("API faults: API down 10 s: rollbacks", 1)
        figures.add("API faults: API down 10 s: connections cut", dropped)
        figures.add("API faults: API down 10 s: requests dropped", injected)
        figures.add("API faults: faults injected (all scenarios)", injected + dropped)
        status = settle_outcome(
            rig, proc.returncode, stdout, stderr, since=since, revision=revision
        )
        figures.add(f"API faults: API down 10 s: runs {status}", 1)
        assert injected > 0, "nothing tried the API while it was down"
