"""Global options work before or after the command name, as kubectl's flags do."""

from __future__ import annotations

import pytest

from crystal_runbook.cli._hoist import hoist_global_options


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (["rollback", "maia", "--env", "production"], ["--env", "production", "rollback", "maia"]),
        (["--env", "production", "rollback", "maia"], ["--env", "production", "rollback", "maia"]),
        (["runs", "show", "abc", "-o", "json"], ["-o", "json", "runs", "show", "abc"]),
        (["run", "x", "--state-dir=/tmp/s", "-v"], ["--state-dir=/tmp/s", "-v", "run", "x"]),
        (["rollback", "maia", "--reason", "--env"], ["rollback", "maia", "--reason", "--env"]),
        (["run", "x", "-p", "a=--output"], ["run", "x", "-p", "a=--output"]),
        (["run", "x", "--", "--env", "p"], ["run", "x", "--", "--env", "p"]),
    ],
)
def test_hoisting(given: list[str], expected: list[str]) -> None:
    """Globals move to the front; command option values and `--` are left alone."""
    assert hoist_global_options(given) == expected
