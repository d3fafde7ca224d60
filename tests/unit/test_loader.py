"""Validating runbooks before anything runs: every problem with file:line:column."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from crystal_runbook import errors, service
from crystal_runbook.engine import loader

HEADER = """\
apiVersion: crystal-runbook/v1
kind: Runbook
name: t
"""


def problems_of(ws: service.Workspace, path: Path) -> list[str]:
    with pytest.raises(errors.RunbookInvalid) as info:
        loader.load(path, ws.registry, display=path.name)
    return [str(p) for p in info.value.problems]


@pytest.fixture
def check(workspace: service.Workspace, tmp_path: Path) -> Callable[[str], list[str]]:
    def run(text: str) -> list[str]:
        path = tmp_path / "t.yaml"
        path.write_text(text)
        return problems_of(workspace, path)

    return run


class TestStructure:
    def test_unknown_top_level_key(self, check: Callable[[str], list[str]]) -> None:
        """A typo at the top level is an error at its line."""
        found = check(HEADER + "stepz: []\nsteps:\n  - {id: a, uses: wait, with: {seconds: 1}}\n")
        assert found == ["t.yaml:4:1: stepz: unknown key; remove it or check its spelling"]

    def test_wrong_api_version(self, check: Callable[[str], list[str]]) -> None:
        """The expected apiVersion is named."""
        text = HEADER.replace("v1", "v2") + "steps:\n  - {id: a, uses: wait, with: {seconds: 1}}\n"
        assert "expected 'crystal-runbook/v1'" in check(text)[0]

    def test_unknown_uses_suggests_a_close_name(self, check: Callable[[str], list[str]]) -> None:
        """An unknown action is reported at its `uses:` with a did-you-mean."""
        found = check(HEADER + "steps:\n  - id: a\n    uses: wiat\n")
        assert found[0].startswith("t.yaml:6:5: unknown action 'wiat' (did you mean wait?)")

    def test_duplicate_step_id(self, check: Callable[[str], list[str]]) -> None:
        """Step ids are unique."""
        text = HEADER + (
            "steps:\n  - {id: a, uses: wait, with: {seconds: 1}}\n"
            "  - {id: a, uses: wait, with: {seconds: 1}}\n"
        )
        assert check(text) == ["t.yaml:6:6: duplicate step id 'a' (first used by steps[0])"]

    def test_wrong_literal_type_in_with(self, check: Callable[[str], list[str]]) -> None:
        """Literal `with:` values are validated against the action's model."""
        found = check(HEADER + "steps:\n  - id: a\n    uses: wait\n    with: {seconds: soon}\n")
        assert found[0].startswith("t.yaml:7:12: steps[0].with.seconds: expected a duration")

    def test_unknown_with_key(self, check: Callable[[str], list[str]]) -> None:
        """`with:` accepts only the action's arguments."""
        found = check(
            HEADER + "steps:\n  - id: a\n    uses: wait\n    with: {seconds: 1, secs: 2}\n"
        )
        assert found == [
            "t.yaml:7:24: steps[0].with.secs: unknown key; remove it or check its spelling"
        ]

    def test_bad_param_default(self, check: Callable[[str], list[str]]) -> None:
        """Defaults must have the parameter's type."""
        text = (
            HEADER
            + "params:\n  n: {type: integer, default: many}\nsteps:\n  - {id: a, uses: fake.noop}\n"
        )
        assert "default of parameter 'n': expected an integer" in check(text)[0]

    def test_all_problems_reported_together(self, check: Callable[[str], list[str]]) -> None:
        """Several problems in one file come back in one report."""
        text = HEADER + (
            "steps:\n  - {id: a, uses: nope}\n  - {id: b, uses: wait, with: {seconds: '{{ x }}'}}\n"
        )
        assert len(check(text)) == 2


class TestTemplates:
    def test_undefined_name(self, check: Callable[[str], list[str]]) -> None:
        """Undefined names are found statically, at the value's position."""
        text = (
            HEADER
            + "steps:\n  - id: a\n    uses: fake.output\n    with: {values: {x: '{{ servce.name }}'}}\n"
        )
        found = check(text)
        assert found[0].startswith("t.yaml:7:21: undefined name 'servce' in template")

    def test_unknown_parameter(self, check: Callable[[str], list[str]]) -> None:
        """`params.x` must be declared."""
        text = HEADER + "steps:\n  - {id: a, uses: wait, with: {seconds: '{{ params.secs }}'}}\n"
        assert "unknown parameter 'secs' in template; declared parameters: none" in check(text)[0]

    def test_forward_reference_to_a_later_step(self, check: Callable[[str], list[str]]) -> None:
        """A step cannot read the outputs of a step that runs after it."""
        text = HEADER + (
            "steps:\n"
            "  - {id: a, uses: wait, with: {seconds: '{{ steps.b.outputs.waited_seconds }}'}}\n"
            "  - {id: b, uses: wait, with: {seconds: 1}}\n"
        )
        assert "refers to steps.b, which runs later" in check(text)[0]

    def test_undeclared_output(self, check: Callable[[str], list[str]]) -> None:
        """Outputs an action declares are checked by name."""
        text = HEADER + (
            "steps:\n  - {id: a, uses: wait, with: {seconds: 1}}\n"
            "  - {id: b, uses: wait, with: {seconds: '{{ steps.a.outputs.waited }}'}}\n"
        )
        assert "step 'a' has no output 'waited'; its outputs: waited_seconds" in check(text)[0]

    def test_syntax_error(self, check: Callable[[str], list[str]]) -> None:
        """A broken template is an error, not a literal."""
        text = HEADER + "steps:\n  - {id: a, uses: wait, when: 'params.x ==', with: {seconds: 1}}\n"
        assert "template syntax error" in check(text)[0]

    def test_failed_step_only_in_on_failure(
        self, check: Callable[[str], list[str]], workspace: service.Workspace, tmp_path: Path
    ) -> None:
        """`failed_step` exists in on_failure steps and nowhere else."""
        ok = HEADER + (
            "steps:\n  - {id: a, uses: fake.noop}\n"
            "on_failure:\n  - {uses: fake.output, with: {values: {x: '{{ failed_step.id }}'}}}\n"
        )
        bad = (
            HEADER
            + "steps:\n  - {id: a, uses: fake.output, with: {values: {x: '{{ failed_step.id }}'}}}\n"
        )
        assert check(bad)[0].endswith(
            "undefined name 'failed_step' in template; names available here: env, params, run, "
            "service, steps, target"
        )
        good = tmp_path / "ok.yaml"
        good.write_text(ok)
        assert loader.load(good, workspace.registry).runbook.on_failure[0].uses == "fake.output"


class TestResolvePath:
    def test_names_stay_inside_the_runbooks_directory(self, tmp_path: Path) -> None:
        """`../../etc/passwd` is not a runbook name."""
        with pytest.raises(errors.InputError, match="is not a runbook name"):
            loader.resolve_path("../../etc/passwd", tmp_path)

    def test_slack_may_not_pass_paths(self, tmp_path: Path) -> None:
        """Explicit file paths are a command-line privilege."""
        (tmp_path / "x.yaml").write_text("a: 1\n")
        with pytest.raises(errors.InputError, match="is not a runbook name"):
            loader.resolve_path(str(tmp_path / "x.yaml"), tmp_path, allow_paths=False)

    def test_unknown_name_lists_what_exists(self, tmp_path: Path) -> None:
        """The error says which runbooks there are."""
        (tmp_path / "rollback.yaml").write_text("a: 1\n")
        with pytest.raises(errors.InputError) as info:
            loader.resolve_path("rolback", tmp_path)
        assert "available: rollback" in str(info.value)
