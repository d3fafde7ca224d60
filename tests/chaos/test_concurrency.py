"""Ten rollbacks at once (issue 16, item 1): on one service exactly one runs and the other
nine exit 3 naming it; on ten different services all ten run and end ok.

All processes are started together, before any has taken its lock. The one-service case
makes the winner's rollout slow (pods Ready after 5 s) so that the nine others meet its lock
rather than its finished rollback (which would be refused with exit 1, correctly, but would
not test the lock).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.chaos import figures
from tests.chaos import rig as rigs

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(600)]

PROCESSES = 10
GOOD = "registry.local/maia:1.4.2"


def run_all(rig: rigs.Rig, services: list[str]) -> list[tuple[int, str, str]]:
    procs = [rig.spawn("rollback", name, "-o", "json") for name in services]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=400)
        results.append((proc.returncode, out, err))
    return results


def test_ten_rollbacks_of_one_service_exactly_one_runs(tmp_path: Path) -> None:
    """One exits 0; nine exit 3 with the holder's run id, actor and start time; one PATCH."""
    with rigs.rig(tmp_path, ready_delay=5.0) as rig:
        since = rig.request_count()
        results = run_all(rig, ["maia"] * PROCESSES)
        codes = sorted(code for code, _, _ in results)
        figures.add("concurrency: rollbacks of one service started at once", PROCESSES)
        figures.add("concurrency: of those, exited 3 (lock held)", codes.count(3))
        assert codes == [0] + [3] * (PROCESSES - 1), "\n---\n".join(
            e[-1500:] for _, _, e in results
        )
        winner = next(json.loads(out) for code, out, _ in results if code == 0)
        assert winner["status"] == "ok"
        for code, _, err in results:
            if code == 3:
                assert f"held by run {winner['id']}" in err, err
                assert "actor oncall" in err, err
                assert re.search(r"started \d{4}-\d\d-\d\dT", err), err
                assert "Traceback" not in err
        assert rigs.run_ids(rig.state) == [winner["id"]]
        assert rigs.journal_problems(rig.state, winner["id"]) == []
        effective = [p for p in rigs.deployment_patches(rig.requests(since)) if rigs.took_effect(p)]
        assert len(effective) == 1
        assert rigs.held_locks(rig.state) == []
        assert rig.leases() == []


def test_ten_rollbacks_of_ten_services_all_run(tmp_path: Path) -> None:
    """Each service is rolled back once, all ten runs ok, no lock or Lease left."""
    services = ["maia", *(f"svc-{i}" for i in range(1, PROCESSES))]
    with rigs.rig(tmp_path, services=services) as rig:
        revisions = {name: rigs.revision(rig.deployment(name)) for name in services}
        since = rig.request_count()
        results = run_all(rig, services)
        figures.add("concurrency: rollbacks of ten services started at once", PROCESSES)
        assert [code for code, _, _ in results] == [0] * PROCESSES, "\n---\n".join(
            e[-1500:] for _, _, e in results
        )
        figures.add("concurrency: of those, ended ok", PROCESSES)
        for (_, out, _), name in zip(results, services, strict=True):
            run = json.loads(out)
            assert run["status"] == "ok"
            assert rigs.journal_problems(rig.state, run["id"]) == []
            after = rig.deployment(name)
            assert (rigs.image(after), rigs.revision(after)) == (GOOD, revisions[name] + 1)
            effective = [
                p for p in rigs.deployment_patches(rig.requests(since), name) if rigs.took_effect(p)
            ]
            assert len(effective) == 1, name
        assert rigs.held_locks(rig.state) == []
        assert rig.leases() == []
