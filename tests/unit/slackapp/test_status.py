"""`/crystal status`: what is in progress, as `runs` shows it (a killed run is not)."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from crystal_runbook.engine import journal
from crystal_runbook.service.slack import Reply, SlackCommands
from tests.unit.slack.helpers import make_workspace


class NoSlack:
    """A Slack port nobody should need for `status`."""

    def respond(self, response_url: str, reply: Reply, *, replace: bool = False) -> None:
        raise AssertionError("status answers in the acknowledgement")

    def post(self, channel: str, reply: Reply, *, thread_ts: str | None = None) -> str:
        raise AssertionError("status posts nothing")

    def update(self, channel: str, ts: str, reply: Reply) -> None:
        raise AssertionError("status updates nothing")

    def members(self, usergroup: str) -> list[str]:
        return []


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    done = subprocess.run(["sh", "-c", "echo $$"], check=True, capture_output=True, text=True)
    return int(done.stdout)


def running(run_id: str, pid: int) -> journal.RunRecord:
    return journal.RunRecord(
        id=run_id,
        runbook="rollback",
        env="sandbox",
        service="maia",
        actor="tester",
        status="running",
        started_at="2026-12-01T03:00:00.000Z",
        host=socket.gethostname(),
        pid=pid,
        steps=[
            journal.StepRecord(
                run_id=run_id,
                phase="main",
                index=0,
                id="undo",
                uses="k8s.rollout_undo",
                status="applying",
            )
        ],
    )


def test_a_killed_run_is_not_in_progress_and_a_live_one_is(tmp_path: Path) -> None:
    """A run journalled `running` whose process is gone (kill -9) is not listed as in
    progress; one whose process lives is."""
    ws = make_workspace(tmp_path)
    try:
        commands = SlackCommands(base=ws, port=NoSlack(), submit=lambda _name, _job: True)
        ws.journal.create_run(running("aaaaaaaaaaaa", dead_pid()))
        assert commands.status(["sandbox"]).text.startswith("No run in progress")
        ws.journal.create_run(running("bbbbbbbbbbbb", os.getppid()))  # alive, not this process
        reply = commands.status(["sandbox"])
        assert reply.text == "1 run(s) in progress:", reply
        assert "bbbbbbbbbbbb" in str(reply.lines)
        assert "aaaaaaaaaaaa" not in str(reply.lines)
    finally:
        ws.close()
