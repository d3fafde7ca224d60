"""Who may do what from Slack: `inventory/access.yaml`, and the decisions taken from it.

Why: a slash command can roll production back, so the Slack app answers only the people and
channels the team listed, per environment and command; anything not listed is denied
(design.md section 6, issue 11). The file is validated like every inventory file, with
file:line:column for each problem::

    environments:
      sandbox:
        allow:
          - {commands: ["*"], users: ["*"], channels: ["*"]}
      production:
        approvers: 2                      # a mutation also needs a second, allowed person
        allow:
          - commands: [rollback, scale, health, logs, status, runs]
            usergroups: [S0ONCALL]        # members resolved through usergroups.users.list
            users: [U0LEAD]
            channels: [C0INCIDENTS]

A rule allows a request when the command is in ``commands``, the user is in ``users`` (or
in one of ``usergroups``) and the channel is in ``channels``; ``"*"`` means any. User-group
members come from a callable (the Slack app resolves them with ``usergroups.users.list``),
cached for ``GROUP_TTL`` seconds. A group that cannot be resolved allows nobody.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from crystal_runbook import errors
from crystal_runbook.engine import validation, yamlsource

FILENAME = "access.yaml"
COMMANDS = ("rollback", "scale", "health", "logs", "status", "runs", "drill")
"""Commands access rules speak of (`help` is open to everyone: it shows nothing)."""
MUTATING = frozenset({"rollback", "scale", "drill"})
"""Commands that change something: they need a Confirm press (and approvers)."""
GROUP_TTL = 300.0
"""Seconds a user group's members are trusted (five minutes: a removed member loses access
within that time, and Slack's rate limit of usergroups.users.list is never approached)."""

FAILURE_TTL = 30.0
"""Seconds a failed resolution is remembered before Slack is asked again."""

_USER = re.compile(r"[UW][A-Z0-9]{2,20}")
_GROUP = re.compile(r"S[A-Z0-9]{2,20}")
_CHANNEL = re.compile(r"[CGD][A-Z0-9]{2,20}")


def _ids(values: list[str], pattern: re.Pattern[str], what: str, example: str) -> list[str]:
    for value in values:
        if value != "*" and not pattern.fullmatch(value):
            raise ValueError(f"{value!r} is not a Slack {what} ID (like {example}) nor '*'")
    return values


class Rule(BaseModel):
    """Who (users, user groups) may run which commands from which channels."""

    model_config = ConfigDict(extra="forbid")

    commands: list[str] = Field(min_length=1, description='command names, or "*" for all')
    users: list[str] = Field(default_factory=list, description='user IDs (U…), or "*"')
    usergroups: list[str] = Field(default_factory=list, description="user-group IDs (S…)")
    channels: list[str] = Field(min_length=1, description='channel IDs (C…/G…/D…), or "*"')

    @field_validator("commands")
    @classmethod
    def _commands(cls, value: list[str]) -> list[str]:
        for name in value:
            if name != "*" and name not in COMMANDS:
                raise ValueError(f"unknown command {name!r}; known: {', '.join(COMMANDS)}, *")
        return value

    @field_validator("users")
    @classmethod
    def _users(cls, value: list[str]) -> list[str]:
        return _ids(value, _USER, "user", "U0123ABCD")

    @field_validator("usergroups")
    @classmethod
    def _groups(cls, value: list[str]) -> list[str]:
        if "*" in value:
            raise ValueError('"*" is not a user group; use users: ["*"] for everyone')
        return _ids(value, _GROUP, "user-group", "S0123ABCD")

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: list[str]) -> list[str]:
        return _ids(value, _CHANNEL, "channel", "C0123ABCD")

    def names(self, command: str) -> bool:
        return "*" in self.commands or command in self.commands


class Environment(BaseModel):
    """One environment's rules."""

    model_config = ConfigDict(extra="forbid")

    approvers: int = Field(
        default=1, ge=1, le=2, description="people who must agree to a mutation (2: a second)"
    )
    allow: list[Rule] = Field(default_factory=list)


class AccessFile(BaseModel):
    """The whole `access.yaml`."""

    model_config = ConfigDict(extra="forbid")

    environments: dict[str, Environment] = Field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """Whether a request is allowed, and why not."""

    allowed: bool
    reason: str = ""


GroupMembers = Callable[[str], Iterable[str]]
"""Resolves a user-group ID to its members' user IDs (raises on failure)."""


class Access:
    """Decisions from a validated access file, with user groups resolved and cached."""

    def __init__(
        self,
        rules: AccessFile,
        *,
        members: GroupMembers | None = None,
        clock: Callable[[], float] = time.monotonic,
        ttl: float = GROUP_TTL,
    ) -> None:
        self.rules = rules
        self._members = members
        self._clock = clock
        self._ttl = ttl
        self._cache: dict[str, tuple[float, frozenset[str] | None, str]] = {}
        self._lock = threading.Lock()

    def approvers(self, env: str) -> int:
        found = self.rules.environments.get(env)
        return found.approvers if found is not None else 1

    def environments(self, command: str, user: str, channel: str) -> list[str]:
        """The environments where ``user`` may run ``command`` from ``channel``."""
        return [
            env
            for env in self.rules.environments
            if self.check(env=env, command=command, user=user, channel=channel).allowed
        ]

    def check(self, *, env: str, command: str, user: str, channel: str) -> Decision:
        """May ``user`` run ``command`` in ``env`` from ``channel``? Denied unless listed."""
        found = self.rules.environments.get(env)
        if found is None or not found.allow:
            return Decision(False, f"nobody may use Slack commands in {env!r} ({FILENAME})")
        rules = [r for r in found.allow if r.names(command)]
        if not rules:
            return Decision(False, f"{command!r} is not allowed in {env!r} ({FILENAME})")
        in_channel = [r for r in rules if "*" in r.channels or channel in r.channels]
        if not in_channel:
            return Decision(False, f"{command!r} in {env!r} is not allowed from this channel")
        problems: list[str] = []
        for rule in in_channel:
            if "*" in rule.users or user in rule.users:
                return Decision(True)
            for group in rule.usergroups:
                members, problem = self._group(group)
                if problem:
                    problems.append(problem)
                if members is not None and user in members:
                    return Decision(True)
        why = f"you are not allowed to run {command!r} in {env!r} ({FILENAME})"
        if problems:
            why += "; " + "; ".join(sorted(set(problems)))
        return Decision(False, why)

    def _group(self, group: str) -> tuple[frozenset[str] | None, str]:
        now = self._clock()
        with self._lock:
            cached = self._cache.get(group)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1], cached[2]
        if self._members is None:
            return None, f"user group {group} cannot be resolved here"
        try:
            members: frozenset[str] | None = frozenset(self._members(group))
            problem = ""
        except errors.CrystalError as exc:
            members, problem = None, f"user group {group} could not be resolved ({exc.message})"
        # a failure is cached for FAILURE_TTL: a Slack outage is not asked on every command
        stamp = now if members is not None else now - self._ttl + FAILURE_TTL
        with self._lock:
            self._cache[group] = (stamp, members, problem)
        return members, problem


def load(directory: Path) -> AccessFile:
    """Read `access.yaml` from ``directory``; an absent file allows nothing.

    Raises:
        errors.RunbookInvalid: the file has problems (file:line:column).
    """
    path = directory / FILENAME
    if not path.exists():
        return AccessFile()
    return parse(yamlsource.read_file(path))


def parse(source: yamlsource.Source) -> AccessFile:
    """Validate a parsed `access.yaml`."""
    data: Any = source.data if source.data is not None else {}
    try:
        return AccessFile.model_validate(data)
    except ValidationError as exc:
        raise errors.RunbookInvalid(validation.problems(source, exc)) from None
