"""50 rollbacks, each killed with SIGKILL at a random moment, then resumed (issue 16, item 1).

Two lanes run side by side, each on its own sandbox: ship a release, start `crystal-runbook
rollback maia` (the Python process itself), wait for a random number of the run's journal
events plus a random few milliseconds, `kill -9` it, then `crystal-runbook resume RUN_ID`.
A round whose run finished before its kill moment is still checked, but does not count:
each lane goes on until it has killed its share (at most ``EXTRA_ROUNDS`` more rounds), and
the kill moment is then drawn below the shortest run seen, so exactly ``CHAOS_KILLS`` runs
are killed and the test says so.
Every round must end with the run `ok`, the Deployment on the revision the rollback meant
(the template of the release before, in legacy mode, one revision up), exactly one PATCH of
the Deployment that took effect, journalled as intent before it reached the API (a PATCH is
repeated only when the check found it had not taken effect), every step's transitions in
the journal in order with no gap, no lock in the lock table and no Lease in the cluster.
"""

from __future__ import annotations

import os
import random
import signal
import threading
from collections import Counter
from pathlib import Path

import pytest

from tests.chaos import figures
from tests.chaos import rig as rigs

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(1500)]

ROUNDS = int(os.environ.get("CHAOS_KILLS", "50"))
LANES = 2
LAST_EVENT = 28
"""A rollback on the sandbox journals about 31 events; the kill waits for 1 to this many."""
EXTRA_ROUNDS = 30
"""Rounds a lane may add, beyond its share, to replace runs that finished before their kill."""
MARGIN = 3
"""Each run that finished before its kill lowers the latest kill moment by this many events
below what that run journalled (and halves the jitter): on a fast machine the last events
come within milliseconds of each other."""
JITTER = 0.15
"""Seconds of random delay after the chosen event, at most (before any run outran its kill)."""
GOOD = "registry.local/maia:1.4.2"


def python_process(pid: int) -> bool:
    """The pid is a Python interpreter (the console script itself, not a shell)."""
    exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    return exe.startswith("python")


class Lane:
    """One sandbox and its rounds; problems are collected, not raised, so both lanes finish."""

    def __init__(self, root: Path, seed: int, rounds: int, index: int) -> None:
        self.root = root
        self.rng = random.Random(seed)  # noqa: S311 - kill moments, not security
        self.rounds = rounds
        self.index = index
        self.problems: list[str] = []
        self.killed_at: Counter[str] = Counter()
        self.max_wait = LAST_EVENT
        self.max_jitter = JITTER
        self.rounds_run = 0

    @property
    def killed(self) -> int:
        return sum(self.killed_at.values())

    def run(self) -> None:
        with rigs.rig(self.root) as rig:
            i = 0
            while self.killed < self.rounds and i < self.rounds + EXTRA_ROUNDS:
                try:
                    self.round(rig, i)
                except Exception as exc:  # noqa: BLE001 - report every lane's failure, not the first
                    self.problems.append(
                        f"lane {self.index} round {i}: {type(exc).__name__}: {exc}"
                    )
                    return
                i += 1
                self.rounds_run = i

    def round(self, rig: rigs.Rig, i: int) -> None:
        before = rig.deployment()
        expected_revision = rigs.revision(before) + 1
        since = rig.request_count()
        known = set(rigs.run_ids(rig.state))
        wait_events = self.rng.randint(1, self.max_wait)
        jitter = self.rng.uniform(0.0, self.max_jitter)

        proc = rig.spawn("rollback", "maia", "-o", "json")
        try:
            assert python_process(proc.pid), "the spawned process is not Python"
            run_id = rigs.wait_until(
                lambda: (
                    next((r for r in rigs.run_ids(rig.state) if r not in known), None)
                    or (proc.poll() is not None and "exited")
                ),
                120,
                "the run to be journalled",
            )
            assert run_id != "exited", f"rollback exited {proc.returncode} before its run began"
            rigs.wait_until(
                lambda: (
                    rigs.event_count(rig.state, run_id) >= wait_events or proc.poll() is not None
                ),
                120,
                f"{wait_events} events",
            )
            if proc.poll() is None:
                threading.Event().wait(jitter)
                where = last_event(rig, run_id)
                os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None and proc.returncode is None:
                proc.wait(30)
            _, err = proc.communicate(timeout=30)
        if proc.returncode == -signal.SIGKILL:
            figures.add("kill -9: runs killed")
            self.killed_at[where] += 1
        else:
            figures.add("kill -9: runs that ended before their kill (replaced)")
            assert proc.returncode == 0, f"rollback exited {proc.returncode}: {err[-2000:]}"
            # draw later kill moments below the length of this run
            total = rigs.event_count(rig.state, run_id)
            self.max_wait = max(1, min(self.max_wait, total) - MARGIN)
            self.max_jitter /= 2

        resumed = rig.cli("resume", run_id, "-o", "json")
        assert resumed.returncode == 0, (
            f"resume {run_id} exited {resumed.returncode}: {resumed.stderr[-3000:]}"
        )
        assert "Traceback" not in resumed.stderr
        if proc.returncode == -signal.SIGKILL:
            figures.add("kill -9: resumed ok")

        problems = rigs.journal_problems(rig.state, run_id)
        assert problems == [], f"run {run_id} (killed at {where}): {problems}"
        assert rigs.run_row(rig.state, run_id)["status"] == "ok"

        after = rig.deployment()
        assert rigs.revision(after) == expected_revision, (rigs.revision(after), expected_revision)
        assert rigs.image(after) == GOOD
        assert rigs.env_value(after, "CRYSTAL_MODE") == "legacy"
        assert rigs.rolled_out(after)

        patches = rigs.deployment_patches(rig.requests(since))
        effective = [p for p in patches if rigs.took_effect(p)]
        assert len(effective) == 1, f"run {run_id} (killed at {where}): {patches}"
        assert rigs.intent_before_change(rig.state, run_id, effective[0], "undo")
        figures.add("kill -9: PATCH requests sent", len(patches))
        figures.add("kill -9: PATCH requests that took effect", len(effective))

        assert rigs.held_locks(rig.state) == []
        assert rig.leases() == []
        # the next round's bad release (revision expected_revision + 1)
        rig.release(f"registry.local/maia:2.{self.index}.{i}-bad")


def last_event(rig: rigs.Rig, run_id: str) -> str:
    found = rigs.events(rig.state, run_id)
    if not found:
        return "before any event"
    last = found[-1]
    return f"{last.step or 'run'}:{last.status}"


def test_fifty_rollbacks_killed_at_random_moments_all_resume_ok(
    tmp_path: Path, chaos_seed: int
) -> None:
    """Each killed rollback resumes to ok on the intended revision, one effective PATCH,
    a gap-free journal, no lock and no Lease left."""
    per_lane = [ROUNDS // LANES + (1 if i < ROUNDS % LANES else 0) for i in range(LANES)]
    lanes = [
        Lane(tmp_path / f"lane{i}", chaos_seed + i, rounds, i) for i, rounds in enumerate(per_lane)
    ]
    threads = [threading.Thread(target=lane.run, name=f"chaos-lane-{lane.index}") for lane in lanes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    where: Counter[str] = Counter()
    for lane in lanes:
        where.update(lane.killed_at)
    figures.note(
        "kill -9 moments (last journalled event before the kill): "
        + ", ".join(f"{k} x{v}" for k, v in sorted(where.items()))
    )
    problems = [p for lane in lanes for p in lane.problems]
    assert problems == [], "\n".join(problems)
    killed = sum(where.values())
    rounds = sum(lane.rounds_run for lane in lanes)
    figures.add("kill -9: rounds run", rounds)
    assert killed == ROUNDS, (
        f"{killed} of {ROUNDS} runs were killed in {rounds} rounds "
        f"(the others finished before their kill moment)"
    )
