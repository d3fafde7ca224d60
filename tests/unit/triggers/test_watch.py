"""`watch` through the service layer: auto-rollback once per incident, notices, saved state."""

from __future__ import annotations

import json
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from crystal_runbook import service, testing
from crystal_runbook.triggers import store
from crystal_runbook.triggers.evaluator import Report
from crystal_runbook.triggers.watch import Notice, WatchSettings
from tests.unit.triggers.metrics_server import MetricsServer

ROLLBACK = testing.FAKE_ROLLBACK_RUNBOOK

TRIGGERS = """
apiVersion: crystal-runbook/v1
kind: Triggers
services:
  maia:
    rules:
      - {name: coherence-low, query: 'avg(coherence_ratio{job="maia"})', op: "<", threshold: 0.4, for: 0.5s, action: rollback}
      - {name: pool-full, kind: ratio, query: 'db_connections_in_use', denominator: 'db_connections_max', op: ">=", threshold: 0.95, for: 0s, action: notify}
"""


def make_workspace(root: Path, metrics_url: str) -> service.Workspace:
    (root / "inventory").mkdir(parents=True, exist_ok=True)
    (root / "runbooks").mkdir(exist_ok=True)
    (root / "inventory" / "services.yaml").write_text(
        textwrap.dedent(
            f"""
            default_environment: sandbox
            services:
              maia:
                environments:
                  sandbox:
                    metrics: {{source: scrape, url: "{metrics_url}"}}
            """
        )
    )
    (root / "inventory" / "triggers.yaml").write_text(TRIGGERS.lstrip())
    (root / "runbooks" / "rollback.yaml").write_text(ROLLBACK.lstrip())
    return service.Workspace(
        state_dir=root / ".crystal",
        inventory_dir=root / "inventory",
        runbooks_dir=root / "runbooks",
        actor="watcher",
        action_modules=("crystal_runbook.testing",),
    )


class Watching:
    """`Workspace.watch` in a thread, with its notices and reports recorded."""

    def __init__(self, ws: service.Workspace, settings: WatchSettings) -> None:
        self.ws = ws
        self.notices: list[Notice] = []
        self.reports: list[Report] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

        def run() -> None:
            try:
                service.triggers.watch(ws,
                    "maia",
                    settings=settings,
                    notify=self.notices.append,
                    on_report=self.reports.append,
                    stop=self.stop,
                )
            except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
                self.error = exc

        self.thread = threading.Thread(target=run)
        self.thread.start()

    def wait_for(self, what: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not what():
            if self.error is not None or time.monotonic() > deadline:
                self.finish()
                raise AssertionError(f"timed out; notices: {[n.message for n in self.notices]}")
            time.sleep(0.05)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(30)
        self.ws.close()
        if self.error is not None:
            raise self.error


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path


def runs(root: Path) -> list[dict[str, object]]:
    ws = service.Workspace(state_dir=root / ".crystal", inventory_dir=root / "inventory")
    try:
        return [r.as_json() for r in service.runs.history(ws, limit=50)]
    finally:
        ws.close()


FAST = WatchSettings(interval=0.2, auto_rollback=True, cooldown=1.0)


class TestAutoRollback:
    """A firing rollback rule runs `rollback` once per incident, with its evidence."""

    def test_one_incident_one_rollback_with_evidence(
        self, root: Path, metrics: MetricsServer
    ) -> None:
        """The rule keeps firing after the (fake) rollback; no second rollback starts."""
        watching = Watching(make_workspace(root, metrics.url), FAST)
        watching.wait_for(lambda: len(watching.reports) >= 2)
        assert watching.reports[-1].healthy
        metrics.service.set(coherence=0.3)
        watching.wait_for(lambda: any("finished ok" in n.message for n in watching.notices))
        ticks = len(watching.reports)
        watching.wait_for(lambda: len(watching.reports) >= ticks + 5)
        assert watching.reports[-1].rule("coherence-low").state == "firing"
        watching.finish()
        (run,) = runs(root)
        params = run["params"]
        assert isinstance(params, dict)
        assert params["service"] == "maia"
        assert "coherence-low: 0.3 (value < 0.4 for 0.5s)" in str(params["reason"])
        reader = service.Workspace(state_dir=root / ".crystal")
        try:
            trigger = service.runs.show(reader, str(run["id"])).meta["trigger"]
        finally:
            reader.close()
        (evidence,) = trigger["rules"]
        assert evidence["name"] == "coherence-low"
        assert evidence["state"] == "firing"
        assert evidence["value"] == 0.3
        assert evidence["threshold"] == 0.4
        assert evidence["pending_since"] is not None
        assert evidence["history"][-1][1] == 0.3
        assert {r["name"] for r in trigger["all_rules"]} == {"coherence-low", "pool-full"}

    def test_a_restart_does_not_roll_back_the_same_incident_again(
        self, root: Path, metrics: MetricsServer
    ) -> None:
        """The open incident is saved; a new `watch` sees it; recovery plus cooldown closes it."""
        metrics.service.set(coherence=0.3)
        first = Watching(make_workspace(root, metrics.url), FAST)
        first.wait_for(lambda: any("finished ok" in n.message for n in first.notices))
        first.finish()
        second = Watching(make_workspace(root, metrics.url), FAST)
        second.wait_for(lambda: len(second.reports) >= 6)
        assert second.reports[-1].rule("coherence-low").state == "firing"
        assert len(runs(root)) == 1
        metrics.service.set(coherence=0.8)
        second.wait_for(lambda: any("incident closed" in n.message for n in second.notices))
        metrics.service.set(coherence=0.3)
        second.wait_for(lambda: len(runs(root)) == 2)
        second.finish()

    def test_notify_only_announces_and_changes_nothing(
        self, root: Path, metrics: MetricsServer
    ) -> None:
        """Without --auto-rollback the firing rule is announced with the command to run."""
        metrics.service.set(coherence=0.3)
        settings = WatchSettings(interval=0.2, auto_rollback=False)
        watching = Watching(make_workspace(root, metrics.url), settings)
        watching.wait_for(
            lambda: any("auto-rollback is off" in n.message for n in watching.notices)
        )
        watching.finish()
        assert runs(root) == []
        firing = [n for n in watching.notices if n.message.startswith("FIRING coherence-low")]
        assert len(firing) == 1
        assert firing[0].level == "critical"


class TestMissingData:
    """An unreachable source is "no data", said loudly; never healthy, never a crash."""

    def test_unreachable_source_is_no_data(self, root: Path, metrics: MetricsServer) -> None:
        """With the metrics endpoint down, every rule is no_data with the reason."""
        ws = make_workspace(root, metrics.url)
        metrics.stop()
        notices: list[Notice] = []
        try:
            report = service.triggers.watch(ws,
                "maia", settings=FAST, notify=notices.append, on_report=lambda _r: None, once=True
            )
        finally:
            ws.close()
        assert not report.healthy
        assert {r.state for r in report.rules} == {"no_data"}
        assert "unreachable" in report.rules[0].message
        assert any(n.level == "warning" and "NO DATA coherence-low" in n.message for n in notices)

    def test_http_error_is_no_data_too(self, root: Path, metrics: MetricsServer) -> None:
        """A 503 from /metrics is no data, naming the status."""
        metrics.service.set(status=503)
        ws = make_workspace(root, metrics.url)
        try:
            report = service.triggers.trigger_report(ws, "maia")
        finally:
            ws.close()
        assert report is not None
        assert report.rules[0].state == "no_data"
        assert "HTTP 503" in report.rules[0].message


class TestSavedState:
    """Windows survive a restart of `watch` (or cron's `watch --once`) when recent."""

    def test_once_runs_continue_the_window(self, root: Path, metrics: MetricsServer) -> None:
        """Two `--once` runs 0.6 s apart: pending, then firing (for: 0.5s)."""
        metrics.service.set(coherence=0.3)
        settings = WatchSettings(interval=1.0, auto_rollback=False)
        states = []
        for _ in range(2):
            ws = make_workspace(root, metrics.url)
            try:
                report = service.triggers.watch(ws,
                    "maia",
                    settings=settings,
                    notify=lambda _n: None,
                    on_report=lambda _r: None,
                    once=True,
                )
            finally:
                ws.close()
            states.append(report.rule("coherence-low").state)
            time.sleep(0.6)
        assert states == ["pending", "firing"]
        saved = json.loads(store.path_for(root / ".crystal", "maia", "sandbox").read_text())
        assert saved["rules"]["coherence-low"]["state"] == "firing"

    def test_stale_state_is_not_trusted(self, root: Path, metrics: MetricsServer) -> None:
        """Saved windows older than state_ttl start over: the condition may have cleared unseen."""
        metrics.service.set(coherence=0.3)
        settings = WatchSettings(interval=1.0, auto_rollback=False, state_ttl=0.2)
        states = []
        for _ in range(2):
            ws = make_workspace(root, metrics.url)
            try:
                report = service.triggers.watch(ws,
                    "maia",
                    settings=settings,
                    notify=lambda _n: None,
                    on_report=lambda _r: None,
                    once=True,
                )
            finally:
                ws.close()
            states.append(report.rule("coherence-low").state)
            time.sleep(0.6)
        assert states == ["pending", "pending"]


class TestApprove:
    """`action: approve` asks a person first; without a yes nothing is rolled back."""

    @pytest.mark.parametrize("answer", [True, False])
    def test_approval_decides(self, root: Path, metrics: MetricsServer, answer: bool) -> None:
        """A yes runs the rollback; a no (or nobody) announces that approval is needed."""
        metrics.service.set(coherence=0.3)
        ws = make_workspace(root, metrics.url)
        triggers = root / "inventory" / "triggers.yaml"
        triggers.write_text(triggers.read_text().replace("action: rollback", "action: approve"))
        asked: list[str] = []
        notices: list[Notice] = []

        def approve(question: str) -> bool:
            asked.append(question)
            return answer

        try:
            for _ in range(2):  # pending, then firing (for: 0.5s)
                service.triggers.watch(ws,
                    "maia",
                    settings=WatchSettings(interval=1.0, auto_rollback=True),
                    notify=notices.append,
                    on_report=lambda _r: None,
                    once=True,
                    approve=approve,
                )
                time.sleep(0.6)
        finally:
            ws.close()
        assert len(asked) == 1
        assert "coherence-low firing for maia in sandbox. Roll back now?" in asked[0]
        assert len(runs(root)) == (1 if answer else 0)
        if not answer:
            assert any("needs approval" in n.message for n in notices)
