"""`plan` and `--dry-run` exit codes through the installed command (design.md section 4)."""

from __future__ import annotations

import json

import pytest

from crystal_runbook.testing import actions as fakes
from tests.conftest import Cli

GUARDED = """
apiVersion: crystal-runbook/v1
kind: Runbook
name: guarded
params:
  count: {type: integer, default: 1}
confirm: [production]
steps:
  - {id: first, uses: fake.set, with: {key: first, value: "v{{ params.count }}"}}
  - {id: guard, uses: fake.guard, with: {key: g}}
"""


@pytest.fixture
def guarded(cli: Cli) -> Cli:
    cli.write("runbooks/guarded.yaml", GUARDED)
    return cli


@pytest.mark.parametrize(
    ("state", "args", "code"),
    [
        ({}, [], 0),
        ({}, ["--env", "production"], 4),
        ({}, ["--env", "production", "--yes"], 0),
        ({"g": "refuse"}, ["--env", "production"], 1),
        ({"g": "refuse"}, [], 1),
        ({}, ["-p", "count=many"], 2),
    ],
    ids=["clean", "needs-yes", "yes-given", "refused-in-production", "refused", "bad-input"],
)
def test_dry_run_exit_code(guarded: Cli, state: dict[str, str], args: list[str], code: int) -> None:
    """0 all checks fine, 4 only confirmation missing, 1 a refusal, 2 bad input."""
    for key, value in state.items():
        fakes.set_state(guarded.state, key, value)
    out = guarded("run", "guarded", "--dry-run", *args)
    assert out.returncode == code, out.stdout + out.stderr
    assert fakes.applies(guarded.state) == []
    if code == 1:
        assert "the run would be refused at step guard" in out.stdout
        assert "hint: set g to something else" in out.stdout


def test_dry_run_and_yes_is_a_safe_idiom(guarded: Cli) -> None:
    """`plan && run --yes` never runs a refused runbook; `plan -o json` names the refusing step."""
    fakes.set_state(guarded.state, "g", "refuse")
    planned = guarded("plan", "guarded", "-o", "json")
    assert planned.returncode == 1
    assert json.loads(planned.stdout)["refused"] == "guard"
    fakes.set_state(guarded.state, "g", "open")
    assert guarded("plan", "guarded").returncode == 0
    assert guarded("run", "guarded", "--yes").returncode == 0
