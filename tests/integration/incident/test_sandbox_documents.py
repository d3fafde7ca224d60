"""Incident documents of real rollbacks on the sandbox, checked against their journal.

A bad release goes out with the shipped `release` runbook, `watch` (1 s interval, 3 s
windows) fires and runs the shipped `rollback` runbook, whose last step writes the document;
the document is then parsed and compared with the journal. A rollback refused by the cluster
gets its document from `on_failure`.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from crystal_runbook import sandbox, service, testing
from crystal_runbook.engine import journal
from crystal_runbook.incident import chart
from crystal_runbook.triggers.watch import Notice, WatchSettings
from tests.conftest import REPO
from tests.unit.incident.conftest import SCHEMA, parse

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
BAD_IMAGE = "registry.local/maia:1.5.1-bad"
TRIGGERS = """\
apiVersion: crystal-runbook/v1
kind: Triggers
services:
  maia:
    rules:
      - name: error-rate
        query: >-
          sum(rate(http_request_errors_total{job="maia"}[3s]))
          / sum(rate(http_requests_total{job="maia"}[3s]))
        threshold: 0.05
        for: 3s
        severity: critical
        action: rollback
      - name: latency-p99
        query: >-
          histogram_quantile(0.99,
          sum by (le) (rate(http_request_duration_seconds_bucket{job="maia"}[3s])))
        threshold: 2
        for: 3s
        severity: critical
        action: rollback
"""


@pytest.fixture
def sb(tmp_path: Path) -> Iterator[sandbox.Sandbox]:
    running = sandbox.start(tmp_path / ".crystal", ready_delay=0.2)
    running.config.update({"burn_ramp_seconds": 3.0})  # the release passes its health check first
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "services.yaml").write_text(
        "default_environment: sandbox\nservices:\n  maia:\n    environments:\n      sandbox:\n"
        "        kubernetes: {context: crystal-sandbox, namespace: crystal, deployment: maia, "
        f"kubeconfig: '{running.kubeconfig_path}'}}\n"
        f"        health_url: '{running.health_url()}'\n"
        f"        metrics: {{source: scrape, url: '{running.metrics_url()}'}}\n"
        "        dashboards: {grafana: 'https://grafana.example/d/maia'}\n"
    )
    (inventory / "triggers.yaml").write_text(TRIGGERS)
    try:
        running.settle(10)
        yield running
    finally:
        running.stop()


def workspace(root: Path) -> service.Workspace:
    return service.Workspace(
        state_dir=root / ".crystal",
        inventory_dir=root / "inventory",
        runbooks_dir=REPO / "runbooks",
        env="sandbox",
        actor="oncall",
        sink=testing.RecordingSink(),
    )


def watch_until_rollback(ws: service.Workspace, timeout: float = 60.0) -> dict[str, Any]:
    """Run `watch --auto-rollback` until its rollback run finished; returns its outcome."""
    stop = threading.Event()
    outcome: dict[str, Any] = {}

    def notify(notice: Notice) -> None:
        if "rollback" in notice.data:
            outcome.update(notice.data["rollback"])
            stop.set()

    timer = threading.Timer(timeout, stop.set)
    timer.start()
    try:
        service.triggers.watch(ws,
            "maia",
            settings=WatchSettings(interval=1.0, auto_rollback=True, cooldown=60.0),
            notify=notify,
            on_report=lambda _report: None,
            stop=stop,
        )
    finally:
        timer.cancel()
    assert outcome, f"no rollback within {timeout:.0f}s"
    return outcome


def test_triggered_rollback_document_matches_its_journal(
    tmp_path: Path, sb: sandbox.Sandbox
) -> None:
    """Trigger evidence, timeline, changes, checklist values, durations, chart and review of
    a real watch-started rollback are what its journal holds."""
    ws = workspace(tmp_path)
    try:
        release = service.runs.run(ws, "release", {"service": "maia", "image": BAD_IMAGE}, allow_paths=False)
        assert release.run.status == "ok", release.run.error
        outcome = watch_until_rollback(ws)
        assert outcome["status"] == "ok", outcome
        run = service.runs.show(ws, str(outcome["run_id"]))
        events = ws.journal.events(run.id)
    finally:
        ws.close()
    step = {s.id: s for s in run.steps}
    markdown = Path(str(step["document"].outputs["markdown"])).read_text()
    doc = json.loads(Path(str(step["document"].outputs["json"])).read_text())
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)

    title, sections = parse(markdown)
    assert title.startswith("Incident: maia in sandbox rolled back from revision 3 to 2 after ")
    assert doc["status"] == "resolved"
    fired = {r["name"] for r in run.meta["trigger"]["rules"]}
    assert {r["name"] for r in doc["trigger"]["rules"]} == fired
    trigger_table = sections["Trigger"].tables()[0]
    assert {row[0] for row in trigger_table[1:]} == fired

    # timeline: every journal event up to the document step, in order, at its UTC time
    first_write = next(i for i, e in enumerate(events) if e.step_id == "document")
    journalled = [(e.at, e.step_id or "run") for e in events[:first_write]]
    assert [(r["at"], r["step"]) for r in doc["timeline"] if r["who"] != "watch"] == journalled
    table = sections["Timeline"].tables()[0]
    assert len(table) - 1 == len(doc["timeline"])
    assert [r[0] for r in table[1:] if r[4] != "watch"] == [
        at.replace("T", " ").removesuffix("Z") for at, _ in journalled
    ]

    # changes: what the undo step journalled as its intent, applied
    undo = step["undo"]
    assert undo.changed is True
    assert [(c["field"], c["before"], c["after"]) for c in doc["changes"]] == [
        (c["field"], c["before"], c["after"]) for c in undo.changes
    ]
    assert ("image[maia]", BAD_IMAGE, "registry.local/maia:1.5.0") in [
        (c["field"], c["before"], c["after"]) for c in doc["changes"]
    ]

    # checklist: the values the verification steps saw
    checks = {c["item"]: c for c in doc["verification"]}
    assert checks["Legacy mode active"]["state"] == "passed"
    p99 = step["performance-restored"].outputs["value"]
    assert checks["Performance restored"]["state"] == "passed"
    assert f"p99 latency {p99:.3g} s" in checks["Performance restored"]["detail"]
    errors_seen = step["errors-ceased"].outputs["value"]
    assert f"error rate {errors_seen * 100:.2f} %" in checks["Errors ceased"]["detail"]
    outbox = step["announce"].outputs["outbox"]  # no Slack token here: the embedded default
    assert checks["Users notified"]["state"] == "passed"
    assert f"step announce: outbox entry {outbox}" in checks["Users notified"]["detail"]

    # durations: journal timestamps
    restored = step["performance-restored"].ended_at
    assert doc["durations"]["restored_at"] == restored
    took = (journal.parse_iso(str(restored)) - journal.parse_iso(run.started_at)).total_seconds()
    assert doc["durations"]["time_to_restore_seconds"] == pytest.approx(took)
    assert doc["durations"]["within_target"] is True
    assert doc["durations"]["detected_at"] == run.meta["trigger"]["detected_at"]

    # chart: a PNG of the expected size beside the Markdown
    png = Path(str(doc["chart"]["path"])).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (chart.WIDTH, chart.HEIGHT)
    assert doc["chart"]["rule"] == run.meta["trigger"]["rules"][0]["name"]

    # review: the release run is in the journal, so its deployment is known
    assert release.run.id in doc["review"]["deployment_duration_note"]
    assert doc["review"]["incidents_during_deployment"] == 1
    assert doc["review"]["user_impact"] in ("minor", "major")
    assert doc["links"]["dashboards"] == {"grafana": "https://grafana.example/d/maia"}


def test_refused_rollback_writes_no_document(tmp_path: Path, sb: sandbox.Sandbox) -> None:
    """`rollback --to-revision 99` is refused before any change: no document, and
    `incident show` says a refusal is not an incident (issue 9: refusals before side effects)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRYSTAL_", "KUBECONFIG"))}
    env.update(CRYSTAL_STATE_DIR=str(tmp_path / ".crystal"), CRYSTAL_ACTOR="oncall")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "crystal-runbook"), "--runbooks", str(REPO / "runbooks"), *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    ran = cli("rollback", "maia", "--yes", "--to-revision", "99", "-o", "json")
    assert ran.returncode == 1, ran.stderr
    run = json.loads(ran.stdout)
    assert run["status"] == "refused"
    assert "99" in run["error"]
    assert {s["id"]: s["status"] for s in run["steps"]}["undo"] == "refused"
    assert all(s["status"] == "pending" for s in run["steps"] if s["id"] != "undo")
    assert not (tmp_path / ".crystal" / "incidents").exists()
    shown = cli("incident", "show", run["id"])
    assert shown.returncode == 2
    assert "a refusal is not an incident and has no document" in shown.stderr
