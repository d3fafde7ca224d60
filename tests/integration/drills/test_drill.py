"""`crystal-runbook drill` against the sandbox: it passes, leaves the baseline, survives failures.

Failures are injected through the sandbox's fault switch (a refused request) or by a
`fake.fail` step of crystal_runbook.testing inserted into a copy of the shipped drill.yaml,
never by patching the client.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from crystal_runbook import sandbox
from crystal_runbook.testing import actions as testing_actions
from tests.integration.drills.conftest import Drills
from tests.integration.kube.conftest import wait_until

pytestmark = pytest.mark.integration

CURRENT, GOOD = "registry.local/maia:1.5.0", "registry.local/maia:1.4.2"
DEPLOYMENT_PATH = r"/apis/apps/v1/namespaces/crystal/deployments/maia$"


def document(run: dict[str, Any]) -> dict[str, Any]:
    """The incident document (JSON) the drill's last `incident.write` wrote."""
    writers = [s for s in run["steps"] if s["uses"] == "incident.write" and s["status"] == "ok"]
    assert writers, "the drill wrote no document"
    return json.loads(Path(writers[-1]["outputs"]["json"]).read_text())


class TestDrillPasses:
    """A drill rolls back, restores and reports; the service ends as it started."""

    def test_drill_passes_and_the_template_equals_the_baseline(self, drills: Drills) -> None:
        """Verdict pass; image, env and replicas afterwards equal the baseline's."""
        before = drills.template()
        assert (drills.image(), drills.revision()) == (CURRENT, 2)
        run = drills.json("drill", "maia")
        assert run["status"] == "ok"
        report = run["drill"]
        assert report["verdict"] == "pass"
        assert report["restored"] is True
        assert drills.template() == before
        assert drills.env_var("CRYSTAL_MODE") == "hybrid"
        assert drills.revision() == 4  # rolled back (3), then forward to the baseline (4)
        steps = {s["id"]: s for s in run["steps"]}
        assert steps["undo"]["outputs"]["to_images"] == {"maia": GOOD}
        assert steps["undo"]["outputs"]["to_env"]["CRYSTAL_MODE"] == "legacy"
        assert steps["restore"]["changed"] is True
        assert steps["restore"]["outputs"]["images"] == {"maia": CURRENT}
        doc = document(run)
        assert doc["drill"] is True
        assert doc["title"].startswith("Rollback drill: maia in sandbox")
        drill = doc["drill_report"]
        assert [p["phase"] for p in drill["phases"]] == ["baseline", "rollback", "restore", "report"]
        assert drill["verdict"] == "pass"
        assert 0 < drill["rollback_seconds"] < 300
        assert 0 < drill["restore_seconds"] < 300
        assert drill["rollback_requests"] >= 3  # read, list, patch at least
        assert drill["restore_requests"] >= 3
        assert drill["baseline"] == {
            "revision": 2,
            "images": [CURRENT],
            "replicas": 3,
            "crystal_mode": "hybrid",
            "replicaset": steps["baseline"]["outputs"]["replicaset"],
        }
        markdown = Path(doc["links"]["markdown"]).read_text()
        assert "## Drill report" in markdown
        assert "Verdict: **PASS**" in markdown

    def test_announcement_is_marked_drill(self, drills: Drills) -> None:
        """The Slack notice (here the outbox and the console) says DRILL."""
        out = drills.cli("drill", "maia")
        assert out.returncode == 0, out.stderr
        assert ":rotating_light: DRILL: rollback drill of *maia* in *sandbox*" in out.stderr
        assert "DRILL" in out.stdout  # the verdict line
        entries = [json.loads(p.read_text()) for p in (drills.state / "outbox").glob("*.announce.*")]
        assert len(entries) == 1
        assert entries[0]["message"]["text"].startswith(":rotating_light: DRILL:")

    def test_history_lists_the_drill_with_its_figures(self, drills: Drills) -> None:
        """`drill history` shows the verdict, times and request counts; JSON too."""
        run = drills.json("drill", "maia")
        history = drills.json("drill", "history", "maia")
        assert [h["id"] for h in history] == [run["id"]]
        entry = history[0]
        assert entry["verdict"] == "pass"
        assert entry["rollback_seconds"] == run["drill"]["rollback_seconds"]
        assert entry["restore_requests"] == run["drill"]["restore_requests"]
        text = drills.cli("drill", "history", "maia")
        assert text.returncode == 0
        assert run["id"] in text.stdout
        assert "pass" in text.stdout


def test_anomalies_are_reported_without_failing_the_drill(drills: Drills) -> None:
    """A pod of the service that is not Ready, and a health check that needed a second try."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "maia-debug", "labels": {"app": "maia"}},
        "spec": {"containers": [{"name": "maia", "image": "registry.local/maia:0.0.1-crash"}]},
    }
    drills.kubectl("apply", "--validate=false", "-f", "-", stdin=json.dumps(pod))
    health = r"/api/v1/namespaces/crystal/services/maia/proxy/health$"
    drills.sb.faults.add(sandbox.Fault(kind="status", status=503, path=health, count=1))
    run = drills.json("drill", "maia")
    report = run["drill"]
    assert report["verdict"] == "pass"
    assert "not Ready at step baseline: maia-debug" in report["anomalies"]
    assert "step healthy's check needed 2 attempts" in report["anomalies"]
    doc = document(run)
    kinds = {(a["kind"], a["step"]) for a in doc["drill_report"]["anomalies"]}
    assert {("pod_not_ready", "baseline"), ("verification_retry", "healthy")} <= kinds
    markdown = Path(doc["links"]["markdown"]).read_text()
    assert "- pod not ready: not Ready at step baseline: maia-debug" in markdown


def insert_fail(drills: Drills, after: str) -> None:
    """A `fake.fail` step right after step ``after`` of the drill runbook under test."""
    path = drills.runbooks / "drill.yaml"
    data = yaml.safe_load(path.read_text())
    index = next(i for i, s in enumerate(data["steps"]) if s["id"] == after)
    data["steps"].insert(
        index + 1, {"id": "injected", "uses": "fake.fail", "with": {"message": "injected failure"}}
    )
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def fault(drills: Drills, *, method: str, path: str = DEPLOYMENT_PATH) -> None:
    """The sandbox refuses the next ``method`` request to ``path`` (403, once)."""
    drills.sb.faults.add(sandbox.Fault(kind="status", status=403, method=method, path=path, count=1))


INJECTIONS = {
    "baseline: the API refuses to list the HPAs": (
        "baseline",
        lambda d: fault(d, method="GET", path="/horizontalpodautoscalers$"),
    ),
    "rollback: a step fails after the undo": ("rollback", lambda d: insert_fail(d, "undo")),
    "rollback: the API refuses the undo's patch": ("rollback", lambda d: fault(d, method="PATCH")),
    "restore: a step fails after the restore": ("restore", lambda d: insert_fail(d, "restore")),
    "report: a step fails after the document": ("report", lambda d: insert_fail(d, "document")),
}


@pytest.mark.parametrize("case", list(INJECTIONS))
def test_a_failure_in_each_phase_still_restores_the_baseline(drills: Drills, case: str) -> None:
    """Exit 1, the failed phase reported, and the service back on its baseline."""
    phase, inject = INJECTIONS[case]
    before = drills.template()
    inject(drills)
    run = drills.json("drill", "maia", code=1)
    assert run["status"] == "failed"
    report = run["drill"]
    assert report["verdict"] == "fail"
    assert report["failed_phase"] == phase
    assert drills.template() == before
    assert drills.image() == CURRENT
    doc = document(run)
    assert doc["drill_report"]["failed_phase"] == phase
    assert doc["failure"] is not None
    if phase == "baseline":  # nothing was recorded, so nothing was changed or restored
        assert report["restored"] is None
        assert drills.revision() == 2
        skipped = {s["id"]: s["status"] for s in run["steps"] if s["phase"] == "on_failure"}
        assert skipped["restore-after-failure"] == "skipped"
    else:
        assert report["restored"] is True
        restores = [s for s in run["steps"] if s["uses"] == "k8s.restore" and s["status"] == "ok"]
        assert restores, "no restore was verified"


def test_a_drill_of_a_rolled_back_service_is_refused_before_any_change(drills: Drills) -> None:
    """After a real rollback a drill would flip back to the bad release: refused, exit 1."""
    assert drills.cli("rollback", "maia").returncode == 0
    before = drills.request_count()
    run = drills.json("drill", "maia", code=1)
    assert run["status"] == "refused"
    assert "already rolled back" in run["error"]
    assert run["drill"]["verdict"] == "fail"
    assert run["drill"]["failed_phase"] == "rollback"
    assert run["drill"]["restored"] is None
    assert drills.mutations(before) == []
    assert drills.image() == GOOD


class TestProduction:
    """Production needs --allow-production and allow_production in drills.yaml."""

    def test_refused_without_both_permissions(self, drills: Drills) -> None:
        """Either one alone is refused before anything changes; both together run it."""
        before = drills.request_count()
        no_file = drills.cli("drill", "maia", "--env", "production", "--allow-production")
        assert no_file.returncode == 2
        assert "does not allow drills of maia there" in no_file.stderr
        drills.drills_yaml(
            """
            services:
              maia:
                environments:
                  production: {allow_production: false}
            """
        )
        denied = drills.cli("drill", "maia", "--env", "production", "--allow-production")
        assert denied.returncode == 2
        assert "allow_production: true" in denied.stderr
        drills.drills_yaml(
            """
            services:
              maia:
                environments:
                  production: {allow_production: true}
            """
        )
        no_flag = drills.cli("drill", "maia", "--env", "production")
        assert no_flag.returncode == 4
        assert "pass --allow-production" in no_flag.stderr
        assert drills.mutations(before, exclude_leases=False) == []
        assert drills.drill_runs() == []
        run = drills.json("drill", "maia", "--env", "production", "--allow-production")
        assert run["drill"]["verdict"] == "pass"
        assert run["env"] == "production"


class TestUnfinishedDrills:
    """A drill that did not finish is finished (or blocks a new one) before a new baseline."""

    def test_a_killed_drill_is_resumed_and_restores(self, drills: Drills) -> None:
        """Killed after its undo (old release running), the next `drill` resumes it."""
        path = drills.runbooks / "drill.yaml"
        data = yaml.safe_load(path.read_text())
        index = next(i for i, s in enumerate(data["steps"]) if s["id"] == "undo")
        data["steps"].insert(index + 1, {"id": "gate", "uses": "fake.gate", "with": {"key": "go"}})
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        proc = drills.popen("drill", "maia")
        try:
            wait_until(lambda: _step_status(drills, "gate") == "checking", timeout=60)
        finally:
            proc.kill()
            proc.communicate()
        assert drills.image() == GOOD  # the kill left the old release running
        testing_actions.set_state(drills.state, "go", "open")
        again = drills.cli("drill", "maia", "-o", "json")
        assert again.returncode == 0, again.stderr
        assert "did not finish (running); resuming it first" in again.stderr
        resumed = json.loads(again.stdout)
        assert resumed["drill"]["verdict"] == "pass"
        assert len(drills.drill_runs()) == 1  # the same run, finished
        assert drills.image() == CURRENT
        assert drills.env_var("CRYSTAL_MODE") == "hybrid"

    def test_no_new_drill_after_an_unrestored_failure(self, drills: Drills) -> None:
        """A failed drill whose restore was not verified blocks the next one (exit 1)."""
        insert_fail(drills, "undo")
        path = drills.runbooks / "drill.yaml"
        data = yaml.safe_load(path.read_text())
        data["on_failure"] = []  # as if its restore could not run
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        first = drills.json("drill", "maia", code=1)
        assert first["drill"]["restored"] is False
        assert drills.image() == GOOD
        before = drills.request_count()
        again = drills.cli("drill", "maia")
        assert again.returncode == 1
        assert f"drill {first['id']} of maia in sandbox failed and did not verify its restore" in (
            again.stderr
        )
        assert f"crystal-runbook resume {first['id']}" in again.stderr
        assert drills.mutations(before, exclude_leases=False) == []
        assert len(drills.drill_runs()) == 1


def _step_status(drills: Drills, step_id: str) -> str | None:
    runs = drills.drill_runs()
    if not runs:
        return None
    run = drills.json("runs", "show", runs[0]["id"])
    return next((s["status"] for s in run["steps"] if s["id"] == step_id), None)
