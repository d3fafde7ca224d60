"""Incident documents of real runs (fake rollback actions, real executor and journal)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from crystal_runbook import errors, service
from crystal_runbook.engine import journal
from crystal_runbook.engine.registry import StepContext
from crystal_runbook.incident import chart, generate
from tests.unit.incident.conftest import SCHEMA, parse, trigger_evidence

SECTIONS = [
    "Summary",
    "Trigger",
    "Timeline",
    "Changes",
    "Verification checklist",
    "Durations",
    "Steps",
    "Trigger metric chart",
    "Post-launch review",
    "Links",
]


def written(run: journal.RunRecord, step: str = "document") -> tuple[str, dict[str, Any]]:
    """The Markdown and JSON that the run's own `incident.write` step wrote."""
    rec = next(s for s in run.steps if s.id == step)
    assert rec.status == "ok", rec.error
    markdown = Path(str(rec.outputs["markdown"])).read_text()
    return markdown, json.loads(Path(str(rec.outputs["json"])).read_text())


def validate(doc: object) -> None:
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)


class TestAutomaticRollback:
    """A rollback started by a trigger, documented by its last step."""

    @pytest.fixture
    def run(self, ws: service.Workspace) -> journal.RunRecord:
        result = service.runs.run(ws,
            "rollback",
            {"service": "maia", "reason": "trigger fired for maia in sandbox: error-rate"},
            assume_yes=True,
            meta={"trigger": trigger_evidence()},
        )
        assert result.run.status == "ok", result.run.error
        return service.runs.show(ws, result.run.id)

    def test_markdown_has_every_section_in_order(self, run: journal.RunRecord) -> None:
        """The Markdown parses into the title and the documented sections, in order."""
        markdown, _ = written(run)
        title, sections = parse(markdown)
        assert title == (
            "Incident: maia in sandbox rolled back from revision 2 to 1 after error-rate fired"
        )
        assert list(sections) == SECTIONS

    def test_file_name_is_date_service_run_id(
        self, ws: service.Workspace, run: journal.RunRecord
    ) -> None:
        """`<state dir>/incidents/<UTC date>-<service>-<run id>.md` and `.json`."""
        rec = next(s for s in run.steps if s.id == "document")
        expected = ws.state_dir / "incidents" / f"{run.started_at[:10]}-maia-{run.id}"
        assert rec.outputs["markdown"] == f"{expected}.md"
        assert rec.outputs["json"] == f"{expected}.json"
        assert rec.outputs["chart"] == f"{expected}.png"

    def test_timeline_rows_are_the_journal_events(
        self, ws: service.Workspace, run: journal.RunRecord
    ) -> None:
        """Every event before the writing step is one row, with its UTC time and step."""
        markdown, doc = written(run)
        events = ws.journal.events(run.id)
        first_write = next(i for i, e in enumerate(events) if e.step_id == "document")
        expected = [(e.at, e.step_id or "run") for e in events[:first_write]]
        rows = [(r["at"], r["step"]) for r in doc["timeline"] if r["who"] != "watch"]
        assert rows == expected
        table = parse(markdown)[1]["Timeline"].tables()[0]
        assert table[0] == ["UTC", "Step", "Transition", "Detail", "Who"]
        assert len(table) - 1 == len(doc["timeline"])
        times = [r[0] for r in table[1:]]
        assert times == sorted(times)
        assert [r[0] for r in table[1:] if r[4] != "watch"] == [
            at.replace("T", " ").removesuffix("Z") for at, _ in expected
        ]

    def test_trigger_rows_come_first_with_the_evidence(self, run: journal.RunRecord) -> None:
        """Pending, firing and the rollback request from `meta.trigger` lead the timeline."""
        _, doc = written(run)
        evidence = run.meta["trigger"]
        lead = doc["timeline"][:3]
        assert [(r["at"], r["transition"]) for r in lead] == [
            (evidence["rules"][0]["pending_since"], "pending"),
            (evidence["rules"][0]["since"], "firing"),
            (evidence["detected_at"], "rollback requested"),
        ]

    def test_durations_match_the_journal(self, run: journal.RunRecord) -> None:
        """Detect, start and restore are differences of journalled timestamps."""
        _, doc = written(run)
        d = doc["durations"]
        evidence = run.meta["trigger"]
        last = next(s for s in run.steps if s.id == "performance-restored")
        pending = journal.parse_iso(evidence["rules"][0]["pending_since"])
        detected = journal.parse_iso(evidence["detected_at"])
        started = journal.parse_iso(run.started_at)
        restored = journal.parse_iso(str(last.ended_at))
        assert d["restored_at"] == last.ended_at
        assert d["time_to_detect_seconds"] == pytest.approx((detected - pending).total_seconds())
        assert d["time_to_start_seconds"] == pytest.approx((started - detected).total_seconds())
        assert d["time_to_restore_seconds"] == pytest.approx((restored - started).total_seconds())
        assert d["total_seconds"] == pytest.approx((restored - pending).total_seconds())
        assert d["within_target"] is True

    def test_json_validates_against_the_documented_schema(self, run: journal.RunRecord) -> None:
        """docs/incident-schema.json accepts the document the run wrote."""
        _, doc = written(run)
        validate(doc)
        assert doc["status"] == "resolved"
        assert doc["severity"] == "critical"

    def test_changes_and_checklist(self, run: journal.RunRecord) -> None:
        """Revision, image and env before -> after; the checklist with the values seen."""
        _, doc = written(run)
        assert [(c["field"], c["before"], c["after"]) for c in doc["changes"]] == [
            ("revision", 2, 1),
            ("image[maia]", "registry.local/maia:1.5.1-bad", "registry.local/maia:1.5.0"),
            ("env[maia].CRYSTAL_MODE", "hybrid", "legacy"),
        ]
        checks = {c["item"]: c for c in doc["verification"]}
        assert checks["Legacy mode active"]["state"] == "passed"
        assert "0.25 s" in checks["Performance restored"]["detail"]
        assert "0.40 %" in checks["Errors ceased"]["detail"]
        assert checks["Users notified"] == {
            "item": "Users notified",
            "state": "not_verified",
            "detail": "not notified (no slack.notify step)",
            "step": None,
        }
        assert checks["Incident documented"]["state"] == "passed"
        assert str(doc["links"]["markdown"]) in checks["Incident documented"]["detail"]

    def test_chart_is_a_png_of_the_expected_size(self, run: journal.RunRecord) -> None:
        """The trigger metric's chart: a PNG of WIDTH x HEIGHT, referenced from the Markdown."""
        markdown, doc = written(run)
        png = Path(str(doc["chart"]["path"])).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert png[12:16] == b"IHDR"
        assert struct.unpack(">II", png[16:24]) == (chart.WIDTH, chart.HEIGHT)
        assert f"]({Path(str(doc['chart']['path'])).name})" in markdown
        assert doc["chart"]["rule"] == "error-rate"
        # 14 values from the trigger window, 1 from the verification of the same rule
        assert doc["chart"]["points"] == 15

    def test_review_fields(self, run: journal.RunRecord) -> None:
        """Rollback required, incidents, time to stability and an impact estimate."""
        _, doc = written(run)
        review = doc["review"]
        assert review["rollback_required"] is True
        assert review["incidents_during_deployment"] == 1
        assert review["user_impact"] == "major"  # 16 % errors at the peak
        assert "error-rate peaked at 16.0 %" in review["user_impact_basis"]
        assert review["time_to_stability_minutes"] == pytest.approx(
            doc["durations"]["total_seconds"] / 60,
            abs=0.01,
        )
        assert doc["links"]["dashboards"] == {"grafana": "https://grafana.example/d/maia"}

    def test_writing_again_is_no_change(
        self, ws: service.Workspace, run: journal.RunRecord
    ) -> None:
        """The step's check on the finished run finds the same bytes on disk."""
        action = ws.registry.get("incident.write")
        ctx = StepContext(
            run_id=run.id,
            step_id="document",
            env=run.env,
            actor="oncall",
            service="maia",
            target={},
            state_dir=ws.state_dir,
        )
        check = action.check(action.Args.model_validate({}), ctx)
        assert check.satisfied, check.summary
        assert "up to date" in check.summary

    def test_incident_show_regenerates_from_the_journal(
        self, ws: service.Workspace, run: journal.RunRecord
    ) -> None:
        """On demand: the finished run, with the document step and the run's end; a second
        call writes nothing."""
        rendered = service.incidents.document(ws, run.id)
        doc = rendered.document
        assert doc.ended_at == service.runs.show(ws, run.id).ended_at
        assert doc.timeline[-1].transition == "run finished ok"
        assert any(r.step == "document" for r in doc.timeline)
        validate(json.loads(rendered.json))
        assert generate.write(service.incidents.document(ws, run.id, write=False)) == []


class TestFailedRollback:
    """A rollback whose verification fails: its `on_failure` step writes the document."""

    def test_document_shows_the_failing_step_and_state_left_behind(
        self, ws: service.Workspace
    ) -> None:
        """Failed status, the failing step and error, what was changed, what did not run."""
        result = service.runs.run(ws, "rollback", {"service": "maia", "fail": True}, assume_yes=True)
        assert result.run.status == "failed"
        run = service.runs.show(ws, result.run.id)
        markdown, doc = written(run, "document-failure")
        validate(doc)
        title, sections = parse(markdown)
        assert title == "Incident: maia in sandbox rollback failed at step undo (manual, by oncall)"
        assert list(sections) == [*SECTIONS[:6], "Failure", *SECTIONS[6:]]
        assert doc["status"] == "failed"
        failure = doc["failure"]
        assert failure["step"] == "undo"
        assert failure["transition"] == "verify"
        assert failure["change_applied"] is True
        assert "CrashLoopBackOff" in failure["error"]
        left = "\n".join(failure["state_left_behind"])
        assert "step undo applied its change" in left
        assert "not run: legacy-mode, errors-ceased, performance-restored, document" in left
        text = sections["Failure"].text()
        assert "CrashLoopBackOff" in text
        assert f"crystal-runbook resume {run.id}" in text
        checks = {c["item"]: c["state"] for c in doc["verification"]}
        assert checks["Legacy mode active"] == "failed"
        assert checks["Errors ceased"] == "not_verified"

    def test_refused_rollback_writes_no_document(self, ws: service.Workspace) -> None:
        """A rollback refused by its check before any change is not an incident: no document."""
        result = service.runs.run(ws, "rollback", {"service": "maia", "to_revision": 9}, assume_yes=True)
        run = service.runs.show(ws, result.run.id)
        assert run.status == "refused"
        assert run.error is not None
        assert "revision 9 not found" in run.error
        assert [s.status for s in run.steps if s.uses == "incident.write"] == ["pending"]
        assert not (ws.state_dir / "incidents").exists()
        with pytest.raises(errors.InputError, match="refused before any change"):
            service.incidents.document(ws, run.id)


class TestManualAndDrill:
    """Manual runs carry the reason and actor; drills get a drill section."""

    def test_manual_reason_and_actor(self, ws: service.Workspace) -> None:
        """The reason given with --reason and who gave it, severity left to the review."""
        result = service.runs.run(ws,
            "rollback", {"service": "maia", "reason": "p99 above 2s since 03:00"}, assume_yes=True
        )
        _, doc = written(service.runs.show(ws, result.run.id))
        trigger = doc["trigger"]
        assert trigger["kind"] == "manual"
        assert trigger["reason"] == "p99 above 2s since 03:00"
        assert trigger["actor"] == "oncall"
        assert doc["severity"] == "unassessed"
        assert doc["durations"]["time_to_detect_seconds"] is None

    def test_drill_report_has_phases_with_timings(self, ws: service.Workspace) -> None:
        """A run with `drill: true`: a "Drill report" section, its phases timed."""
        result = service.runs.run(ws, "rollback", {"service": "maia"}, assume_yes=True, drill=True)
        run = service.runs.show(ws, result.run.id)
        markdown, doc = written(run)
        title, sections = parse(markdown)
        assert title.startswith("Rollback drill: maia in sandbox rolled back")
        assert "Drill report" in sections
        report = doc["drill_report"]
        phases = {p["phase"]: p for p in report["phases"]}
        assert phases["rollback"]["steps"] == [
            "undo",
            "legacy-mode",
            "errors-ceased",
            "performance-restored",
        ]
        undo = next(s for s in run.steps if s.id == "undo")
        last = next(s for s in run.steps if s.id == "performance-restored")
        assert phases["rollback"]["started_at"] == undo.started_at
        assert phases["rollback"]["ended_at"] == last.ended_at
        assert phases["report"]["status"] == "writing"
        assert doc["severity"] == "none"
        assert doc["review"]["rollback_required"] is False
        rows = sections["Drill report"].tables()[0]
        assert [r[0] for r in rows[1:]] == ["rollback", "report"]


class TestNotificationsAndNoChart:
    """Users notified comes from `slack.notify` outputs; no metric means no chart."""

    def test_outbox_entry_and_no_chart(self, ws: service.Workspace) -> None:
        """The outbox path proves the notice; a manual run without metrics draws nothing."""
        runbook = (ws.runbooks_dir / "rollback.yaml").read_text()
        runbook = runbook.replace(
            "  - id: errors-ceased\n    uses: metrics.check\n    with: {rule: error-rate, value: 0.004, threshold: 0.05}\n"
            "  - id: performance-restored\n    uses: metrics.check\n    with: {rule: latency-p99, value: 0.25, threshold: 2}\n",
            "  - id: announce\n    uses: slack.notify\n    with: {text: rolled back}\n",
        )
        (ws.runbooks_dir / "rollback.yaml").write_text(runbook)
        result = service.runs.run(ws, "rollback", {"service": "maia"}, assume_yes=True)
        run = service.runs.show(ws, result.run.id)
        markdown, doc = written(run)
        outbox = next(s for s in run.steps if s.id == "announce").outputs["outbox"]
        checks = {c["item"]: c for c in doc["verification"]}
        assert checks["Users notified"]["state"] == "passed"
        assert checks["Users notified"]["detail"] == f"step announce: outbox entry {outbox}"
        assert doc["chart"]["path"] is None
        reason = doc["chart"]["reason"]
        assert reason.startswith("No chart: there is no metric to draw")
        assert reason in parse(markdown)[1]["Trigger metric chart"].text()
        assert not list((ws.state_dir / "incidents").glob("*.png"))
        validate(doc)


class TestProblemsAreSaidClearly:
    """A document that cannot be written fails loudly; a killed run reads as interrupted."""

    def test_unwritable_directory_fails_the_step_saying_why(self, ws: service.Workspace) -> None:
        """The error names the directory, says the earlier steps are done, and how to retry."""
        blocker = ws.state_dir.parent / "not-a-directory"
        blocker.write_text("a file where the directory should be")
        runbook = (ws.runbooks_dir / "rollback.yaml").read_text()
        runbook = runbook.replace(
            "  - id: document\n    uses: incident.write\n",
            f"  - id: document\n    uses: incident.write\n    with: {{directory: '{blocker}/x'}}\n",
        )
        (ws.runbooks_dir / "rollback.yaml").write_text(runbook)
        result = service.runs.run(ws, "rollback", {"service": "maia"}, assume_yes=True)
        run = service.runs.show(ws, result.run.id)
        step = next(s for s in run.steps if s.id == "document")
        assert step.status == "failed"
        assert f"could not be written to {blocker}/x" in str(step.error)
        assert "the steps before this one are done and journalled" in str(step.error)
        events = [e.message for e in ws.journal.events(run.id) if e.step_id == "document"]
        assert any(f"crystal-runbook incident show {run.id}" in m for m in events)
        undo = next(s for s in run.steps if s.id == "undo")
        assert (undo.status, undo.changed) == ("ok", True)

    def test_a_killed_run_is_interrupted(self, ws: service.Workspace) -> None:
        """A run left `running` by a process that no longer exists is documented as
        interrupted, stopped at its unfinished step."""
        run = journal.RunRecord(
            id="deadbeef0001",
            runbook="rollback",
            env="sandbox",
            actor="oncall",
            status="running",
            started_at=journal.now_iso(),
            service="maia",
            host="elsewhere",
            pid=1,
            steps=[
                journal.StepRecord(
                    run_id="deadbeef0001", phase="main", index=0, id="undo", uses="k8s.rollout_undo"
                )
            ],
        )
        ws.journal.create_run(run)
        run.steps[0].status = "applying"
        run.steps[0].started_at = journal.now_iso()
        ws.journal.save_step(run.steps[0], message="applying: revision: 2 -> 1")
        doc = service.incidents.document(ws, run.id).document
        assert doc.status == "interrupted"
        assert doc.failure is not None
        assert (doc.failure.step, doc.failure.transition) == ("undo", "apply")
        assert doc.title == (
            "Incident: maia in sandbox rollback interrupted at step undo (manual, by oncall)"
        )


class TestUndeliveredNotice:
    """A Slack delivery that failed and fell back to the outbox is not "users notified"."""

    def test_outbox_fallback_after_an_error_fails_the_item(self) -> None:
        """The item says the delivery failed, where the message waits and how to send it."""
        from crystal_runbook.engine import journal
        from crystal_runbook.incident import verification

        step = journal.StepRecord(
            run_id="r1",
            phase="main",
            index=0,
            id="announce",
            uses="slack.notify",
            status="ok",
            outputs={"outbox": ".crystal/outbox/r1.announce.json", "error": "channel_not_found"},
        )
        run = journal.RunRecord(
            id="r1",
            runbook="rollback",
            env="production",
            actor="a",
            status="ok",
            started_at=journal.now_iso(),
            steps=[step],
        )
        item = verification.users_notified(run)
        assert item.state == "failed"
        assert "Slack delivery failed (channel_not_found)" in item.detail
        assert "outbox flush" in item.detail
