"""The `/crystal` text is tokenised strictly: names, numbers, no shell syntax, no surprises."""

from __future__ import annotations

import pytest

from crystal_runbook import errors
from crystal_runbook.service import slackparse
from crystal_runbook.service.slackparse import Command


class TestGrammar:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("", Command("help")),
            ("help", Command("help")),
            ("rollback maia", Command("rollback", service="maia")),
            (
                "rollback maia production p99 above 2s",
                Command("rollback", service="maia", env="production", reason="p99 above 2s"),
            ),
            ("scale maia 10", Command("scale", service="maia", replicas=10)),
            ("scale maia 0 staging", Command("scale", service="maia", replicas=0, env="staging")),
            ("health maia sandbox", Command("health", service="maia", env="sandbox")),
            ("logs maia sandbox error|timeout", Command("logs", service="maia", env="sandbox", grep="error|timeout")),
            ("status", Command("status")),
            ("runs", Command("runs")),
            ("runs maia", Command("runs", service="maia")),
            ("drill maia staging", Command("drill", service="maia", env="staging")),
            ("ROLLBACK maia", Command("rollback", service="maia")),
            ("rollback maia sandbox p99 &gt; 2s", Command("rollback", service="maia", env="sandbox", reason="p99 > 2s")),
        ],
    )
    def test_parses(self, text: str, expected: Command) -> None:
        """Each form of the grammar gives the command it names."""
        assert slackparse.parse(text) == expected

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("rollbak maia", "unknown command 'rollbak' (did you mean 'rollback'?)"),
            ("status now", "extra arguments: 'now'"),
            ("health maia sandbox extra", "extra arguments: 'extra'"),
            ("scale maia", "scale needs REPLICAS"),
            ("scale maia ten", "REPLICAS must be a whole number from 0 to 1000"),
            ("scale maia 1001", "REPLICAS must be a whole number from 0 to 1000"),
            ("scale maia 3 prod extra", "extra arguments"),
            ("rollback", "rollback needs a SERVICE"),
            ("rollback Maia", "is not a service name"),
            ("rollback maia Prod!", "is not an environment name"),
            ("rollback ../etc", "is not a service name"),
            ("logs maia sandbox (", "is not a regular expression"),
            ("runs maia extra", "extra arguments"),
        ],
    )
    def test_refuses_with_the_usage(self, text: str, message: str) -> None:
        """A malformed command is refused with what was wrong (exit-2 class)."""
        with pytest.raises(errors.ParamError) as caught:
            slackparse.parse(text)
        assert message in caught.value.message


class TestHostileInput:
    @pytest.mark.parametrize(
        "text",
        [
            "rollback maia; rm -rf /",
            "rollback $(id)",
            "rollback ${HOME}",
            "rollback `id`",
            "rollback maia sandbox reason `id`",
            "rollback maia && reboot",
            "rollback maia &amp;&amp; reboot",
            "rollback maia || true",
            "rollback maia\nrm -rf /",
            "rollback maia\x00",
            "rollback maia\r",
            "rollback maia\u2028x",
        ],
    )
    def test_shell_syntax_and_control_characters_are_refused(self, text: str) -> None:
        """Shell syntax and control characters never reach a runbook, even in free text."""
        with pytest.raises(errors.ParamError) as caught:
            slackparse.parse(text)
        assert "shell syntax" in caught.value.message or "control character" in caught.value.message

    def test_text_over_1000_characters_is_refused(self) -> None:
        """The checklist's input limit: 1000 characters pass, 1001 do not."""
        ok = "rollback maia sandbox " + "x" * (1000 - len("rollback maia sandbox "))
        assert slackparse.parse(ok).reason.startswith("x")
        with pytest.raises(errors.ParamError, match="1001 characters long; at most 1000"):
            slackparse.parse(ok + "x")
