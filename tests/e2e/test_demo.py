"""`crystal-runbook demo` runs the whole story on the embedded defaults."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, Cli

pytestmark = pytest.mark.integration


def test_demo_detects_rolls_back_verifies_and_documents(cli: Cli) -> None:
    """Bad release, trigger fires, verified rollback, incident document: exit 0, in time."""
    started = time.monotonic()
    out = cli("--runbooks", str(REPO / "runbooks"), "demo", timeout=240, CRYSTAL_ACTION_MODULES="")
    took = time.monotonic() - started
    assert out.returncode == 0, out.stdout + out.stderr
    assert took < 90, f"the demo took {took:.0f} s"
    match = re.search(r"Rollback run ([0-9a-f]{12}) ok, ([0-9.]+) s after", out.stdout)
    assert match, out.stdout
    demo = cli.state / "demo"
    assert f"Everything the demo writes goes to {demo}" in out.stdout
    assert f"crystal-runbook --state-dir {demo} runs show {match.group(1)}" in out.stdout
    run = json.loads(
        cli("--state-dir", str(demo), "runs", "show", match.group(1), "-o", "json").stdout
    )
    assert run["runbook"] == "rollback"
    assert run["status"] == "ok"
    assert "trigger fired for maia in sandbox" in run["params"]["reason"]
    by_id = {s["id"]: s for s in run["steps"]}
    assert by_id["undo"]["outputs"]["from_images"] == {"maia": "registry.local/maia:1.5.1-bad"}
    assert by_id["errors-ceased"]["status"] == "ok"
    # the triggers' for-window is 10 s at a 1 s interval: the rollback starts within for + 3 s
    assert float(match.group(2)) <= 13.0
    document = re.search(r"Incident document: (\S+\.md)", out.stdout)
    assert document, out.stdout
    text = (cli.root / document.group(1)).read_text()
    assert f"`{match.group(1)}`" in text  # the document is the rollback run's
    assert "registry.local/maia:1.5.1-bad" in text
    assert document.group(1).startswith(str(demo / "incidents"))
    runs = json.loads(cli("--state-dir", str(demo), "runs", "-o", "json").stdout)
    assert [r["runbook"] for r in runs] == ["rollback", "release"]
    assert not (demo / "sandbox" / "pid").exists()
    # the user's own state is untouched: no runs, no outbox, no trigger state
    assert json.loads(cli("runs", "-o", "json").stdout) == []
    assert sorted(p.name for p in cli.state.iterdir()) == ["demo"]
    queued = [json.loads(p.read_text()) for p in (demo / "outbox").glob("*.json")]
    assert queued
    assert {q["message"]["channel"] for q in queued} == {"#maia-incidents"}


def test_a_slow_machine_does_not_break_the_story(tmp_path: Path) -> None:
    """Pods that take 2 s to be Ready (a loaded machine): the bad release still passes its
    health check (its burn is held until then) and the trigger still rolls it back."""
    from crystal_runbook import demo

    said: list[str] = []
    result = demo.run_demo(
        state_dir=tmp_path / "state",
        runbooks_dir=REPO / "runbooks",
        say=said.append,
        sink=lambda _event: None,
        ready_delay=2.0,  # the first bad pod is 4 s old when the last one is Ready
        timeout=120,
    )
    assert result.rollback_status == "ok", "\n".join(said)
    assert result.detected_after is not None
    assert result.detected_after <= 13.0, "\n".join(said)  # for: 10 s, 1 s interval
