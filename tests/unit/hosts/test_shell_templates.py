"""Shell commands in runbooks: every template value is one quoted word, checked at validate."""

from __future__ import annotations

import shlex
import textwrap
from pathlib import Path

import pytest

from crystal_runbook import errors
from crystal_runbook.engine import loader, templating
from crystal_runbook.engine.registry import Registry

HOSTILE = [
    "1.4.2; touch /tmp/pwned",
    "$(id)",
    "`id`",
    "1.4.2\ntouch /tmp/pwned",
    "a'b\"c",
    "",
]


class TestRender:
    """Values in shell fields are shell-quoted; other fields are rendered as before."""

    @pytest.mark.parametrize("value", HOSTILE)
    def test_each_value_is_one_literal_word(self, value: str) -> None:
        """The rendered command splits back into the same words with the value intact."""
        rendered = templating.render(
            {"command": "printf %s {{ v }} > out", "note": "{{ v }}"},
            {"v": value},
            markup={"command": "shell"},
        )
        assert shlex.split(rendered["command"]) == ["printf", "%s", value, ">", "out"]
        assert rendered["note"] == value

    def test_whole_value_template_stays_a_string(self) -> None:
        """A field that is only `{{ n }}` renders to a quoted string, not a native value."""
        rendered = templating.render({"command": "{{ n }}"}, {"n": 5}, markup={"command": "shell"})
        assert rendered == {"command": "5"}

    def test_undefined_names_still_fail(self) -> None:
        """Strict undefined applies to shell fields too."""
        with pytest.raises(templating.RenderError, match="undefined"):
            templating.render({"command": "echo {{ nope }}"}, {}, markup={"command": "shell"})


class TestValidate:
    """A value placed inside quotes would not be protected: `validate` says so, with its line."""

    @pytest.mark.parametrize(
        "command",
        [
            'echo "releases/{{ params.v }}"',
            "echo 'releases/{{ params.v }}'",
        ],
    )
    def test_value_inside_quotes_is_a_problem(self, tmp_path: Path, command: str) -> None:
        """Double or single quotes around a value are refused at load time."""
        path = tmp_path / "r.yaml"
        path.write_text(
            textwrap.dedent(
                f"""\
                apiVersion: crystal-runbook/v1
                kind: Runbook
                name: r
                params: {{v: {{type: string}}}}
                steps:
                  - id: s
                    uses: ssh.run
                    with:
                      check: "false"
                      command: {command!r}
                """
            )
        )
        with pytest.raises(errors.RunbookInvalid) as raised:
            loader.load(path, Registry())
        problem = raised.value.problems[0]
        assert problem.line == 10
        assert "write it outside quotes" in problem.message

    @pytest.mark.parametrize(
        "command",
        [
            'ln -sfn releases/{{ params.v }} "$app_root/current"',
            'test "$(readlink "$app_root/current")" = releases/{{ params.v }}',
            "printf '%s' {{ params.v }} > \"$app_root/x\"",
            'echo \\"{{ params.v }}',
        ],
    )
    def test_values_outside_quotes_are_fine(self, command: str) -> None:
        """Quotes around other words, or an escaped quote, are not flagged."""
        assert templating.shell_problems(command) == []


class TestSshRunArgs:
    """`ssh.run`'s arguments say what makes a step idempotent."""

    def test_command_needs_a_check(self) -> None:
        """Without `check` a second run would apply the command again."""
        from crystal_runbook.actions.ssh import SshRunArgs

        with pytest.raises(ValueError, match="needs a `check`"):
            SshRunArgs.model_validate({"command": "touch x"})
        assert SshRunArgs.model_validate({"verify": "true"}).concurrency == 10

    def test_exported_variables_are_shell_names_and_not_connection_vars(self) -> None:
        """`export_vars` refuses `ansible_*` (keys, passwords) and non-identifiers."""
        from crystal_runbook.actions.ssh import SshRunArgs

        for bad in ("ansible_ssh_pass", "app-root", "1x"):
            with pytest.raises(ValueError, match="cannot be exported"):
                SshRunArgs.model_validate({"verify": "true", "export_vars": [bad]})
