"""Killed runs resume, locks keep runs apart, history stays readable: real processes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from crystal_runbook.testing import actions as fakes
from tests.conftest import Cli

SLOW = """\
apiVersion: crystal-runbook/v1
kind: Runbook
name: slow
lock: "slow/{{{{ env }}}}"
steps:
  - {{id: first, uses: fake.set, with: {{key: first, value: "1"}}}}
  - id: middle
    uses: fake.set
    with: {{key: middle, value: "2", {slow}}}
  - {{id: last, uses: fake.set, with: {{key: last, value: "3"}}}}
"""


def step_status(state: Path, step: str) -> str | None:
    db = state / "journal.db"
    if not db.exists():
        return None
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute(
                "SELECT status FROM steps WHERE id = ? ORDER BY rowid DESC LIMIT 1", (step,)
            ).fetchone()
    except sqlite3.OperationalError:
        return None
    return row[0] if row else None


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached in time")


def only_run_id(cli: Cli) -> str:
    out = cli("runs", "-o", "json")
    runs = json.loads(out.stdout)
    assert len(runs) == 1
    return str(runs[0]["id"])


PHASES = {
    # phase to kill in: (slowness of the middle step, predicate that says we are in it)
    "checking": ("check_delay: 1.5", lambda c: step_status(c.state, "middle") == "checking"),
    "applying-before-write": (
        "apply_delay: 3",
        lambda c: (
            step_status(c.state, "middle") == "applying"
            and "middle=2" not in "".join(fakes.applies(c.state))
        ),
    ),
    "applying-after-write": (
        "apply_delay: 2",
        lambda c: any(line.startswith("middle=2") for line in fakes.applies(c.state)),
    ),
    "verifying": ("verify_delay: 1.5", lambda c: step_status(c.state, "middle") == "verifying"),
}


@pytest.mark.parametrize("phase", list(PHASES))
def test_kill_9_in_each_phase_then_resume_completes_without_double_apply(
    cli: Cli, phase: str
) -> None:
    """SIGKILL leaves the journal consistent; resume finishes and applies each change once."""
    slow, in_phase = PHASES[phase]
    cli.write("runbooks/slow.yaml", SLOW.format(slow=slow))
    proc = cli.popen("run", "slow")
    try:
        wait_for(lambda: in_phase(cli))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    run_id = only_run_id(cli)
    assert json.loads(cli("runs", "show", run_id, "-o", "json").stdout)["status"] == "interrupted"
    resumed = cli("resume", run_id)
    assert resumed.returncode == 0, resumed.stderr
    assert "took over stale lock" in resumed.stderr
    shown = json.loads(cli("runs", "show", run_id, "-o", "json").stdout)
    assert shown["status"] == "ok"
    assert [s["status"] for s in shown["steps"]] == ["ok", "ok", "ok"]
    keys = [line.split()[0] for line in fakes.applies(cli.state)]
    assert sorted(keys) == ["first=1", "last=3", "middle=2"]
    assert fakes.read_state(cli.state)["middle"] == "2"


def kill_9_in_verify(cli: Cli) -> str:
    """Start the slow runbook, SIGKILL it while its middle step verifies; its run id."""
    cli.write("runbooks/slow.yaml", SLOW.format(slow="verify_delay: 5"))
    proc = cli.popen("run", "slow")
    try:
        wait_for(lambda: step_status(cli.state, "middle") == "verifying")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    return only_run_id(cli)


class TestKilledRunsAreShownHonestly:
    def test_runs_and_runs_show_say_interrupted_process_gone_with_the_resume_command(
        self, cli: Cli
    ) -> None:
        """A run killed with kill -9 on this host is not shown as running forever."""
        run_id = kill_9_in_verify(cli)
        listed = cli("runs")
        row = next(line for line in listed.stdout.splitlines() if line.startswith(run_id))
        assert "interrupted" in row.split(), listed.stdout
        assert "running" not in row.split(), listed.stdout
        shown = cli("runs", "show", run_id)
        assert f"status:  interrupted (process gone; `crystal-runbook resume {run_id}`)" in (
            shown.stdout
        ), shown.stdout
        doc = json.loads(cli("runs", "show", run_id, "-o", "json").stdout)
        assert doc["status"] == "interrupted"
        assert [s["status"] for s in doc["steps"]] == ["ok", "interrupted", "pending"]
        assert cli("resume", run_id).returncode == 0
        assert json.loads(cli("runs", "show", run_id, "-o", "json").stdout)["status"] == "ok"

    def test_a_takeover_journals_the_dead_run_interrupted_before_the_new_run_starts(
        self, cli: Cli
    ) -> None:
        """The run that takes over the lock writes the dead run's end first; resume still works."""
        dead = kill_9_in_verify(cli)
        taker = cli("run", "slow", "-o", "json")
        assert taker.returncode == 0, taker.stderr
        new = json.loads(taker.stdout)["id"]
        with sqlite3.connect(cli.state / "journal.db") as conn:
            status, error, ended = conn.execute(
                "SELECT status, error, ended_at FROM runs WHERE id = ?", (dead,)
            ).fetchone()
            steps = [
                r[0]
                for r in conn.execute(
                    "SELECT status FROM steps WHERE run_id = ? ORDER BY idx", (dead,)
                )
            ]
            ended_seq = conn.execute(
                "SELECT MIN(seq) FROM events WHERE run_id = ? AND kind = 'run' "
                "AND status = 'interrupted'",
                (dead,),
            ).fetchone()[0]
            new_first = conn.execute(
                "SELECT MIN(seq) FROM events WHERE run_id = ?", (new,)
            ).fetchone()[0]
        assert status == "interrupted"
        assert ended is not None
        assert f"taken over by run {new}" in error
        assert f"`crystal-runbook resume {dead}`" in error
        assert steps == ["ok", "interrupted", "pending"]
        assert ended_seq is not None
        assert ended_seq < new_first
        resumed = cli("resume", dead)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert json.loads(cli("runs", "show", dead, "-o", "json").stdout)["status"] == "ok"


def test_resume_of_a_finished_run_does_nothing(cli: Cli) -> None:
    """A finished run resumes to exit 0 with nothing applied."""
    cli.write("runbooks/slow.yaml", SLOW.format(slow="check_delay: 0"))
    assert cli("run", "slow").returncode == 0
    before = fakes.applies(cli.state)
    assert cli("resume", only_run_id(cli)).returncode == 0
    assert fakes.applies(cli.state) == before


def test_sigterm_journals_interrupted_releases_the_lock_and_exits_130(cli: Cli) -> None:
    """SIGTERM is handled like Ctrl-C."""
    cli.write("runbooks/slow.yaml", SLOW.format(slow="verify_delay: 5"))
    proc = cli.popen("run", "slow")
    wait_for(lambda: step_status(cli.state, "middle") == "verifying")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 130, err
    assert "crystal-runbook resume" in out
    run_id = only_run_id(cli)
    shown = json.loads(cli("runs", "show", run_id, "-o", "json").stdout)
    assert shown["status"] == "interrupted"
    assert [s["status"] for s in shown["steps"]] == ["ok", "interrupted", "pending"]
    with sqlite3.connect(cli.state / "journal.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM locks").fetchone()[0] == 0
    assert cli("resume", run_id).returncode == 0


def test_two_concurrent_runs_with_one_lock_exactly_one_runs(cli: Cli) -> None:
    """The second run exits 3 and names the holder."""
    cli.write("runbooks/slow.yaml", SLOW.format(slow="verify_delay: 2"))
    first = cli.popen("run", "slow")
    second = cli.popen("run", "slow")
    results = [p.communicate(timeout=30) for p in (first, second)]
    codes = sorted([first.returncode, second.returncode])
    assert codes == [0, 3], "\n--- next process ---\n".join(err for _, err in results)
    loser = results[[first.returncode, second.returncode].index(3)]
    assert "lock 'slow/local' is held by run" in loser[1]
    assert "actor tester on" in loser[1]
    assert len(json.loads(cli("runs", "-o", "json").stdout)) == 1


def test_runs_works_while_another_process_writes(cli: Cli) -> None:
    """`runs` reads the journal while a long run commits transitions."""
    steps = "\n".join(f"  - {{id: s{i}, uses: fake.noop}}" for i in range(300))
    cli.write(
        "runbooks/long.yaml",
        f"apiVersion: crystal-runbook/v1\nkind: Runbook\nname: long\nsteps:\n{steps}\n",
    )
    proc = cli.popen("run", "long")
    reads = 0
    while proc.poll() is None:
        listed = cli("runs", "-o", "json")
        assert listed.returncode == 0, listed.stderr
        json.loads(listed.stdout)
        reads += 1
    proc.communicate()
    assert proc.returncode == 0
    assert reads >= 1


def test_json_output_is_one_document_on_stdout(cli: Cli) -> None:
    """`-o json` prints the run contract of design.md section 4, messages on stderr."""
    cli.write("runbooks/slow.yaml", SLOW.format(slow="check_delay: 0"))
    ran = cli("run", "slow", "-o", "json")
    doc = json.loads(ran.stdout)
    assert set(doc) >= {
        "id",
        "runbook",
        "env",
        "actor",
        "status",
        "started_at",
        "ended_at",
        "params",
        "steps",
    }
    assert set(doc["steps"][0]) >= {
        "id",
        "uses",
        "status",
        "attempts",
        "started_at",
        "ended_at",
        "outputs",
        "error",
    }
    assert doc["status"] == "ok"
    assert doc["actor"] == "tester"
    assert "first" in ran.stderr


def test_json_log_lines(cli: Cli) -> None:
    """CRYSTAL_LOG_FORMAT=json turns progress into one JSON object per line."""
    cli.write("runbooks/slow.yaml", SLOW.format(slow="check_delay: 0"))
    ran = cli("run", "slow", CRYSTAL_LOG_FORMAT="json")
    lines = [json.loads(line) for line in ran.stderr.splitlines() if line.strip()]
    assert {"ts", "level", "run_id", "step", "status", "message"} <= set(lines[0])
    assert [line["status"] for line in lines if line["step"] == "middle"] == [
        "checking",
        "applying",
        "applied",
        "verifying",
        "ok",
    ]


def test_confirm_environment_refuses_without_yes(cli: Cli) -> None:
    """Exit 4 without --yes in a confirm environment; --dry-run needs none."""
    cli.write("runbooks/slow.yaml", SLOW.format(slow="check_delay: 0") + "confirm: [production]\n")
    refused = cli("run", "slow", "--env", "production")
    assert refused.returncode == 4
    assert "'production' needs confirmation" in refused.stderr
    planned = cli("run", "slow", "--dry-run", "--env", "production")
    assert planned.returncode == 4  # every check fine; only the confirmation is missing
    assert "would set first to 1" in planned.stdout
    assert not (cli.state / "fake-applies.log").exists()
    assert cli("run", "slow", "--env", "production", "--yes").returncode == 0
    assert os.path.exists(cli.state / "fake-applies.log")


def test_json_output_masks_secrets_like_the_journal(cli: Cli) -> None:
    """A secret pasted into a parameter is masked on stdout too, not only in the journal."""
    token = "xoxb-2222222222-zyxwvutsrqpo"  # noqa: S105 - a fake token for the test
    cli.write(
        "runbooks/note.yaml",
        """
        apiVersion: crystal-runbook/v1
        kind: Runbook
        name: note
        params:
          reason: {type: string, default: ""}
        steps:
          - {id: a, uses: fake.output, with: {values: {reason: "{{ params.reason }}"}}}
        """,
    )
    ran = cli("run", "note", "-p", f"reason=leaked {token}", "-o", "json", SLACK_BOT_TOKEN=token)
    assert ran.returncode == 0, ran.stderr
    assert token not in ran.stdout
    assert json.loads(ran.stdout)["params"]["reason"] == "leaked *****"
