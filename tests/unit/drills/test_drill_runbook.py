"""runbooks/drill.yaml: its rollback phase is rollback.yaml's, step for step."""

from __future__ import annotations

from typing import Any

import yaml

from tests.conftest import REPO

ROLLBACK_PHASE = (
    "announce", "undo", "legacy-mode", "healthy", "errors-ceased", "performance-restored"
)


def steps(name: str) -> dict[str, dict[str, Any]]:
    data = yaml.safe_load((REPO / "runbooks" / f"{name}.yaml").read_text())
    return {s["id"]: s for s in data["steps"]}


def test_rollback_phase_is_rollback_yaml_step_for_step() -> None:
    """Same ids, actions, arguments, conditions, retries and timeouts; only the text differs."""
    drill, rollback = steps("drill"), steps("rollback")
    ids = list(drill)
    start = ids.index("announce")
    assert tuple(ids[start : start + len(ROLLBACK_PHASE)]) == ROLLBACK_PHASE
    assert tuple(list(rollback)[: len(ROLLBACK_PHASE)]) == ROLLBACK_PHASE
    for step_id in ROLLBACK_PHASE:
        ours, theirs = dict(drill[step_id]), dict(rollback[step_id])
        if step_id == "announce":
            assert "DRILL" in ours["with"]["text"]
            ours["with"] = {**ours["with"], "text": None}
            theirs["with"] = {**theirs["with"], "text": None}
            ours.pop("name"), theirs.pop("name")
        assert ours == theirs, step_id


def test_drill_phases_and_failure_path() -> None:
    """Baseline first, restore after the rollback, and on_failure restores again."""
    data = yaml.safe_load((REPO / "runbooks" / "drill.yaml").read_text())
    uses = [s["uses"] for s in data["steps"]]
    assert uses[0] == "k8s.baseline"
    assert uses.index("k8s.restore") > uses.index("k8s.rollout_undo")
    failure = data["on_failure"]
    assert failure[0]["uses"] == "k8s.restore"
    assert failure[0]["with"] == {"baseline": "{{ steps.baseline.outputs }}"}
    assert failure[0]["when"] == "steps.baseline is defined and steps.baseline.status == 'ok'"
    assert data["confirm"] == ["production"]
    assert data["lock"] == "{{ service.name }}/{{ env }}"
