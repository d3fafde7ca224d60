"""The action seam: what a `uses:` name means, and the values actions return.

An action is a class with a pydantic ``Args`` model for its ``with:`` block and up to three
methods (design.md section 1):

- ``check(args, ctx) -> Check``: read-only; is the desired state already there?
- ``apply(args, ctx, check) -> Outcome``: only called when ``check`` said no.
- ``verify(args, ctx, outcome) -> Check``: read-only; retried until it holds or times out.

Read-only actions (health, metric checks) define only ``check``; the executor then retries
the check itself. Results are immutable values, like invoke's ``Result``.

The registry maps names to ``"module:Class"`` strings and imports an action's module only
when the name is used, so that `--help` and `validate` never load a backend's client library:
action modules import kubernetes, fabric and the like inside their methods.
"""

from __future__ import annotations

import difflib
import importlib
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from crystal_runbook import errors


@dataclass(frozen=True)
class Change:
    """One field an apply would change, before and after (what `plan` shows)."""

    field: str
    before: Any
    after: Any
    secret: bool = False

    def render(self) -> str:
        if self.secret:
            return f"{self.field}: ***** -> *****"
        return f"{self.field}: {self.before!r} -> {self.after!r}"


@dataclass(frozen=True)
class Check:
    """Result of a read-only look at the world."""

    satisfied: bool
    summary: str = ""
    changes: tuple[Change, ...] = ()
    outputs: Mapping[str, Any] = field(default_factory=dict)
    evidence: Mapping[str, Any] = field(default_factory=dict)
    resolved: Mapping[str, Any] = field(default_factory=dict)
    """Decisions made by the first check (e.g. the target revision), journalled and handed
    back on resume so the target is never re-resolved."""
    by_this_run: bool | None = None
    """For a satisfied check: whether the desired state was made by this very run (e.g. a
    rollback annotation naming the run), which `resume` after a crash mid-apply needs to
    tell "applied by this run" from "already so"; None when the action cannot tell."""


@dataclass(frozen=True)
class Outcome:
    """Result of an apply."""

    changed: bool = True
    summary: str = ""
    outputs: Mapping[str, Any] = field(default_factory=dict)
    evidence: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class StepContext:
    """What an action may know about the run it is part of."""

    run_id: str
    step_id: str
    env: str
    actor: str
    service: str | None
    target: Mapping[str, Any]
    state_dir: Path
    dry_run: bool = False
    assume_yes: bool = False
    interactive: bool = False
    drill: bool = False
    resolved: Mapping[str, Any] = field(default_factory=dict)
    confirm: Callable[[str], bool] | None = None
    """Asks a person a yes/no question (a TTY prompt); None where nobody can answer."""
    progress: Callable[[str], None] = lambda _message: None
    """Reports a line of progress (shown live, journalled as an event)."""
    cancelled: threading.Event = field(default_factory=threading.Event)
    deadline: float | None = None
    """time.monotonic() by which the step must be done, if it has a timeout."""
    preflight: bool = False
    """The check is the run's preflight (refusals looked for before anything applies, with
    ``dry_run``): a check that is slow (a check-mode playbook) may do only its fast part."""
    settled_at: float | None = None
    """Seconds since the epoch when the run's latest step that may change the world (one
    with an ``apply``) ended, or None if none has. Checks that judge the world after a
    change (``metrics.check``: errors ceased) use only observations made after it."""
    settle: Callable[[str, Mapping[str, Any]], None] = lambda _summary, _outputs: None
    """Records what work the step left going on after it returned (a notification still
    being delivered) ended with: (summary, final outputs), journalled as the step's outputs.
    May be called from another thread."""


class Action:
    """Base class of actions: subclasses set ``name`` and ``Args`` and define ``check``."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    Args: ClassVar[type[BaseModel]]
    outputs: ClassVar[tuple[str, ...] | None] = None
    """Names of the outputs later steps may use; None if not declared (not checked)."""
    markup: ClassVar[Mapping[str, str]] = {}
    """`with:` keys that are markup, by dialect (``{"text": "slack"}``): values a template
    puts into them are escaped with that markup's rules (see ``engine.templating``)."""
    default_timeout: ClassVar[float] = 60.0
    """Bound of a step using this action when the runbook sets no timeout (seconds)."""
    poll_interval: ClassVar[float] = 1.0
    """Delay between checks/verifications when the runbook sets no retry (seconds)."""
    preflight: ClassVar[bool | None] = None
    """Whether the executor runs this check before a run's first apply to find refusals
    early (``Executor.preflight``). None: yes for actions that change something, no for
    read-only ones (their check is a condition a run waits for). An action whose check is
    slow or cannot refuse in advance sets False."""

    def check(self, args: Any, ctx: StepContext) -> Check:
        raise NotImplementedError

    @property
    def read_only(self) -> bool:
        return type(self).apply is Action.apply

    recheck_on_resume: ClassVar[bool] = True
    """Whether `resume` re-checks a finished step of this action that changed something, to
    find drift (another run undid it). False for actions whose effect cannot be undone by
    someone else (a document written, a message sent)."""

    @property
    def in_preflight(self) -> bool:
        return not self.read_only if self.preflight is None else self.preflight

    @property
    def verifies(self) -> bool:
        return type(self).verify is not Action.verify

    def apply(self, args: Any, ctx: StepContext, check: Check) -> Outcome:
        raise NotImplementedError

    def verify(self, args: Any, ctx: StepContext, outcome: Outcome | None) -> Check:
        raise NotImplementedError

    def warm(self) -> None:
        """Load now what the first ``check`` would load (modules, clients, files).

        Called on a background thread while an earlier step waits (a rollout), so that this
        step's first check does not pay for it on the critical path; best effort (errors
        are ignored: the check meets them again). Must be safe to call from any thread.
        """


class Args(BaseModel):
    """Base of actions' argument models: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


# Built-in actions by name. Names are contract (design.md section 5); modules are loaded on use.
BUILTIN: dict[str, str] = {
    "wait": "crystal_runbook.actions.basic:Wait",
    "approval": "crystal_runbook.actions.basic:Approval",
    "http.health": "crystal_runbook.actions.http:Health",
    "k8s.rollout_undo": "crystal_runbook.actions.kubernetes.undo:RolloutUndo",
    "k8s.set_env": "crystal_runbook.actions.kubernetes.template:SetEnv",
    "k8s.set_image": "crystal_runbook.actions.kubernetes.template:SetImage",
    "k8s.scale": "crystal_runbook.actions.kubernetes.scale:Scale",
    "k8s.rollout_status": "crystal_runbook.actions.kubernetes.status:RolloutStatus",
    "k8s.logs": "crystal_runbook.actions.kubernetes.status:Logs",
    "k8s.baseline": "crystal_runbook.actions.kubernetes.baseline:Baseline",
    "k8s.restore": "crystal_runbook.actions.kubernetes.baseline:Restore",
    "metrics.check": "crystal_runbook.actions.metrics:MetricsCheck",
    "sql.check": "crystal_runbook.actions.sql:SqlCheck",
    "slack.notify": "crystal_runbook.actions.slack:Notify",
    "incident.write": "crystal_runbook.actions.incident:IncidentWrite",
    "ansible.playbook": "crystal_runbook.actions.ansible:Playbook",
    "ssh.run": "crystal_runbook.actions.ssh:SshRun",
}


class Registry:
    """Maps `uses:` names to action classes; loads their modules on first use."""

    def __init__(
        self,
        entries: Mapping[str, str | type[Action]] | None = None,
        *,
        configure: Callable[[Action], None] | None = None,
    ) -> None:
        self._entries: dict[str, str | type[Action]] = dict(BUILTIN if entries is None else entries)
        self._loaded: dict[str, Action] = {}
        self._configure = configure
        """Called with each action instance when it is created (the workspace wires it)."""
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return sorted(self._entries)

    def register(self, action: type[Action]) -> None:
        """Add (or replace) an action class under its ``name``."""
        self._entries[action.name] = action
        self._loaded.pop(action.name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> Action:
        """The action instance for ``name``.

        Raises:
            errors.InputError: unknown name (with the closest known names).
        """
        found = self._loaded.get(name)
        if found is not None:
            return found
        entry = self._entries.get(name)
        if entry is None:
            raise errors.InputError(unknown_action_message(name, self.names()))
        if isinstance(entry, str):
            module_name, _, attr = entry.partition(":")
            cls = getattr(importlib.import_module(module_name), attr)
        else:
            cls = entry
        with self._lock:  # one instance per name, also when a warm-up thread loads it too
            if name not in self._loaded:
                instance: Action = cls()
                if self._configure is not None:
                    self._configure(instance)
                self._loaded[name] = instance
            return self._loaded[name]

    def warm(self, names: Iterable[str]) -> None:
        """Load the actions named and let each ``warm`` up (best effort: errors ignored)."""
        for name in dict.fromkeys(names):
            try:
                self.get(name).warm()
            except Exception:  # noqa: BLE001, S112 - warming is an optimisation; the step meets the error itself  # nosec B112
                continue


def unknown_action_message(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.7)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return f"unknown action {name!r}{hint}; known actions: {', '.join(known)}"
