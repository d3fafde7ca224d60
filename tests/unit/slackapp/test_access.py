"""`access.yaml`: validated with positions; anything not listed is denied; groups cached."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from crystal_runbook import errors
from crystal_runbook.engine import yamlsource
from crystal_runbook.service import access
from tests.conftest import REPO

RULES = """
environments:
  sandbox:
    allow:
      - {commands: ["*"], users: ["*"], channels: ["*"]}
  production:
    approvers: 2
    allow:
      - commands: [rollback, status]
        users: [U0LEAD]
        usergroups: [S0ONCALL]
        channels: [C0INCIDENT]
  staging:
    allow: []
"""


def rules(text: str = RULES) -> access.AccessFile:
    return access.parse(yamlsource.parse_text(textwrap.dedent(text), path="access.yaml"))


class TestDecisions:
    def test_listed_user_channel_and_command_are_allowed(self) -> None:
        """A rule allows its users, in its channels, for its commands."""
        decide = access.Access(rules()).check
        assert decide(env="production", command="rollback", user="U0LEAD", channel="C0INCIDENT").allowed
        assert decide(env="sandbox", command="scale", user="U0ANYONE", channel="C0ANY").allowed

    @pytest.mark.parametrize(
        ("env", "command", "user", "channel", "reason"),
        [
            ("production", "rollback", "U0OTHER", "C0INCIDENT", "you are not allowed to run 'rollback' in 'production'"),
            ("production", "rollback", "U0LEAD", "C0RANDOM", "not allowed from this channel"),
            ("production", "scale", "U0LEAD", "C0INCIDENT", "'scale' is not allowed in 'production'"),
            ("staging", "status", "U0LEAD", "C0INCIDENT", "nobody may use Slack commands in 'staging'"),
            ("qa", "status", "U0LEAD", "C0INCIDENT", "nobody may use Slack commands in 'qa'"),
        ],
    )
    def test_anything_not_listed_is_denied(
        self, env: str, command: str, user: str, channel: str, reason: str
    ) -> None:
        """Unlisted users, channels, commands and environments are denied, with the reason."""
        decision = access.Access(rules()).check(env=env, command=command, user=user, channel=channel)
        assert not decision.allowed
        assert reason in decision.reason

    def test_user_groups_are_resolved_and_cached_for_five_minutes(self) -> None:
        """Members come from the resolver once per 5 minutes; a removed member loses access after."""
        now = [0.0]
        calls: list[str] = []
        members = {"S0ONCALL": ["U0ALICE"]}

        def resolve(group: str) -> list[str]:
            calls.append(group)
            return members[group]

        rules_ = access.Access(rules(), members=resolve, clock=lambda: now[0])
        ask = {"env": "production", "command": "rollback", "channel": "C0INCIDENT"}
        assert rules_.check(user="U0ALICE", **ask).allowed
        members["S0ONCALL"] = []
        now[0] = 299.0
        assert rules_.check(user="U0ALICE", **ask).allowed
        assert calls == ["S0ONCALL"]
        now[0] = 301.0
        assert not rules_.check(user="U0ALICE", **ask).allowed
        assert calls == ["S0ONCALL", "S0ONCALL"]

    def test_a_group_that_cannot_be_resolved_allows_nobody(self) -> None:
        """Slack down while resolving: denied, and the reason says why."""

        def broken(group: str) -> list[str]:
            raise errors.ActionError("Slack is down")

        decision = access.Access(rules(), members=broken).check(
            env="production", command="rollback", user="U0ALICE", channel="C0INCIDENT"
        )
        assert not decision.allowed
        assert "user group S0ONCALL could not be resolved (Slack is down)" in decision.reason

    def test_approvers_default_to_one(self) -> None:
        """approvers: 2 where set, else 1."""
        found = access.Access(rules())
        assert (found.approvers("production"), found.approvers("sandbox")) == (2, 1)


class TestFile:
    def test_problems_have_file_line_and_column(self) -> None:
        """Each mistake is reported where it is, with what to write instead."""
        bad = """
        environments:
          production:
            approvers: 3
            allow:
              - commands: [rollbak]
                users: [alice]
                channels: []
        """
        with pytest.raises(errors.RunbookInvalid) as caught:
            rules(bad)
        text = str(caught.value)
        assert "access.yaml:4:5: environments.production.approvers" in text
        assert "access.yaml:6:9: environments.production.allow[0].commands: unknown command 'rollbak'" in text
        assert "'alice' is not a Slack user ID (like U0123ABCD)" in text
        assert "access.yaml:8:9: environments.production.allow[0].channels" in text

    def test_the_shipped_file_allows_sandbox_only(self) -> None:
        """The shipped access.yaml: everyone in sandbox, nobody in staging or production."""
        shipped = access.Access(access.load(REPO / "inventory"))
        for command in access.COMMANDS:
            assert shipped.check(env="sandbox", command=command, user="U0X", channel="C0X").allowed
            for env in ("staging", "production"):
                assert not shipped.check(env=env, command=command, user="U0X", channel="C0X").allowed
        assert shipped.approvers("production") == 2

    def test_a_missing_file_allows_nothing(self, tmp_path: Path) -> None:
        """No access.yaml: every Slack command is denied."""
        found = access.Access(access.load(tmp_path))
        assert not found.check(env="sandbox", command="status", user="U0X", channel="C0X").allowed
