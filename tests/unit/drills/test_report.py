"""The drill report read from journal records: phases, figures, anomalies, verdict."""

from __future__ import annotations

from typing import Any

from crystal_runbook.engine import journal
from crystal_runbook.incident import drill

T0 = "2026-03-03T10:00:00.000Z"


def at(seconds: float) -> str:
    whole, frac = divmod(round(seconds * 1000), 1000)
    minutes, secs = divmod(whole, 60)
    return f"2026-03-03T10:{minutes:02d}:{secs:02d}.{frac:03d}Z"


def step(
    index: int,
    sid: str,
    uses: str,
    start: float,
    end: float | None,
    *,
    status: str = "ok",
    phase: str = "main",
    attempts: int = 1,
    evidence: dict[str, Any] | None = None,
    outputs: dict[str, Any] | None = None,
) -> journal.StepRecord:
    return journal.StepRecord(
        run_id="r1",
        phase=phase,
        index=index,
        id=sid,
        uses=uses,
        status=status,
        attempts=attempts,
        started_at=at(start),
        ended_at=None if end is None else at(end),
        evidence=evidence or {},
        outputs=outputs or {},
    )


def passing_steps() -> list[journal.StepRecord]:
    return [
        step(
            0,
            "baseline",
            "k8s.baseline",
            0,
            0.1,
            evidence={"api_requests": 4},
            outputs={
                "revision": 2,
                "images": {"maia": "m:2"},
                "replicas": 3,
                "env": {"CRYSTAL_MODE": "hybrid"},
                "replicaset": "maia-abc",
            },
        ),
        step(1, "announce", "slack.notify", 0.1, 0.2),
        step(2, "undo", "k8s.rollout_undo", 0.2, 3.2, attempts=2, evidence={"api_requests": 9}),
        step(3, "healthy", "http.health", 3.2, 3.4),
        step(4, "restore", "k8s.restore", 3.4, 6.4, attempts=2, evidence={"api_requests": 11}),
        step(5, "restored-healthy", "http.health", 6.4, 6.5),
        step(6, "users-notified", "slack.notify", 6.5, 6.6),
        step(7, "document", "incident.write", 6.6, 7.0),
    ]


def run_of(steps: list[journal.StepRecord], status: str = "ok") -> journal.RunRecord:
    return journal.RunRecord(
        id="r1",
        runbook="drill",
        env="staging",
        actor="t",
        status=status,
        started_at=T0,
        ended_at=at(7.0),
        drill=True,
        steps=steps,
    )


def events(*transitions: tuple[str, str]) -> list[journal.EventRecord]:
    return [
        journal.EventRecord(i, "r1", sid, T0, "step", status, status, {})
        for i, (sid, status) in enumerate(transitions)
    ]


APPLIED = events(
    ("undo", "checking"),
    ("undo", "applying"),
    ("undo", "applied"),
    ("undo", "verifying"),
    ("restore", "checking"),
    ("restore", "applying"),
    ("restore", "applied"),
    ("restore", "verifying"),
)


class TestPhasesAndFigures:
    """Phases are found by action; times and request counts are per phase."""

    def test_passing_drill(self) -> None:
        """Four phases, the rollback and restore timed and counted, verdict pass."""
        report = drill.report(run_of(passing_steps()), APPLIED, as_of=at(7.0))
        assert [(p.phase, p.steps) for p in report.phases] == [
            ("baseline", ["baseline"]),
            ("rollback", ["announce", "undo", "healthy"]),
            ("restore", ["restore", "restored-healthy"]),
            ("report", ["users-notified", "document"]),
        ]
        assert report.rollback_seconds == 3.3
        assert report.restore_seconds == 3.1
        assert (report.rollback_requests, report.restore_requests) == (9, 11)
        assert report.within_target is True
        assert report.restored is True
        assert report.verdict == "pass"
        assert report.anomalies == []
        assert report.baseline is not None
        assert report.baseline.crystal_mode == "hybrid"

    def test_rollback_over_the_target_fails_the_drill(self) -> None:
        """Everything verified, but the rollback took 5 minutes or more: fail."""
        steps = passing_steps()
        steps[3] = step(3, "healthy", "http.health", 3.2, 301.0)
        report = drill.report(run_of(steps), APPLIED, as_of=at(7.0))
        assert report.within_target is False
        assert report.verdict == "fail"

    def test_failure_then_restore_after_failure(self) -> None:
        """The rollback phase failed; on_failure's restore counts as the restore."""
        steps = passing_steps()[:3]
        steps.append(step(3, "healthy", "http.health", 3.2, 9.0, status="failed"))
        steps += [
            step(4, "restore", "k8s.restore", 0, None, status="pending"),
            step(
                0,
                "restore-after-failure",
                "k8s.restore",
                9.0,
                12.0,
                phase="on_failure",
                evidence={"api_requests": 10},
            ),
            step(1, "document-failure", "incident.write", 12.0, 12.5, phase="on_failure"),
        ]
        report = drill.report(run_of(steps, "failed"), APPLIED, as_of=at(12.5))
        names = [p.phase for p in report.phases]
        assert names[-2:] == ["restore after failure", "report after failure"]
        assert report.failed_phase == "rollback"
        assert report.restored is True
        assert report.restore_requests == 10
        assert report.verdict == "fail"

    def test_refused_before_any_change(self) -> None:
        """The preflight refused the undo: failed phase rollback, nothing restored."""
        steps = [
            step(0, "baseline", "k8s.baseline", 0, None, status="pending"),
            step(1, "undo", "k8s.rollout_undo", 0, 0, status="refused"),
            step(2, "restore", "k8s.restore", 0, None, status="pending"),
        ]
        report = drill.report(run_of(steps, "refused"), [], as_of=at(0))
        assert report.failed_phase == "rollback"
        assert report.restored is None
        assert report.verdict == "fail"


class TestAnomalies:
    """Pods not Ready, trigger conditions that held, verifications that were retried."""

    def test_pods_not_ready_at_baseline_and_after_restore(self) -> None:
        """Both moments are reported, naming the pods."""
        steps = passing_steps()
        steps[0].outputs["pods_not_ready"] = ["maia-debug"]
        steps[4].evidence["pods_not_ready"] = ["maia-debug"]
        found = drill.anomalies(run_of(steps), APPLIED)
        assert [(a.kind, a.step) for a in found] == [
            ("pod_not_ready", "baseline"),
            ("pod_not_ready", "restore"),
        ]
        assert "maia-debug" in found[0].detail

    def test_a_trigger_condition_that_held_during_a_check(self) -> None:
        """A metrics check whose history crossed the threshold, though it ended clear."""
        metrics = {
            "name": "error-rate",
            "op": ">",
            "threshold": 0.05,
            "state": "inactive",
            "kind": "threshold",
            "history": [[at(4), 0.09], [at(6), 0.01]],
        }
        steps = passing_steps()
        steps.insert(
            4,
            step(
                4,
                "errors-ceased",
                "metrics.check",
                3.4,
                3.5,
                attempts=2,
                evidence={"metrics": metrics},
            ),
        )
        found = drill.anomalies(run_of(steps), APPLIED)
        assert [(a.kind, a.step) for a in found] == [
            ("trigger_fired", "errors-ceased"),
            ("verification_retry", "errors-ceased"),
        ]
        assert "0.09 > 0.05" in found[0].detail

    def test_retries_count_verification_attempts_only(self) -> None:
        """One apply and one verify is 2 attempts and no retry; a third attempt is one."""
        steps = passing_steps()
        assert drill.anomalies(run_of(steps), APPLIED) == []
        steps[2].attempts = 3
        found = drill.anomalies(run_of(steps), APPLIED)
        assert [(a.kind, a.step) for a in found] == [("verification_retry", "undo")]
        assert "needed 2 attempts" in found[0].detail
