"""The composition root of the service layer: one user's journal, registry, inventory and locks.

``Workspace`` holds what every use case shares and builds each piece lazily, so a command
pays only for what it touches. The use cases themselves live beside it, one module each
(``runs``, ``oncall``, ``triggers``, ``incidents``, ``catalog``), as functions that take a
workspace: this module imports none of them, so new use cases never grow it.
"""

from __future__ import annotations

import getpass
import importlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crystal_runbook import errors
from crystal_runbook.engine import executor as executor_mod
from crystal_runbook.engine import inventory as inventory_mod
from crystal_runbook.engine import journal as journal_mod
from crystal_runbook.engine import loader, printable
from crystal_runbook.engine import locks as locks_mod
from crystal_runbook.engine.events import Sink, fan_out
from crystal_runbook.engine.registry import Action, Registry
from crystal_runbook.engine.secrets import Redactor
from crystal_runbook.service import journals

if TYPE_CHECKING:
    from crystal_runbook.notify import slack as slack_notify

ACTION_MODULES_ENV = "CRYSTAL_ACTION_MODULES"
"""Comma-separated modules whose ``ACTIONS`` tuple adds actions (plugins, test fakes)."""
FALLBACK_ENV = "local"
"""Environment of runs when neither --env, $CRYSTAL_ENV nor the inventory names one."""


def default_actor() -> str:
    """Who is running this: $CRYSTAL_ACTOR, else the login name."""
    actor = printable.strip_controls(os.environ.get("CRYSTAL_ACTOR") or "").strip()
    if actor:  # control characters would reach other people's terminals (a Lease holder)
        return actor[:100]
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "unknown"


def build_registry(
    extra_modules: Iterable[str] = (), *, configure: Callable[[Action], None] | None = None
) -> Registry:
    """The built-in actions plus those of ``extra_modules``; ``configure`` wires each action
    when it is first loaded.

    Raises:
        errors.ConfigurationError: a module cannot be imported or has no ``ACTIONS``.
    """
    registry = Registry(configure=configure)
    for entry in extra_modules:
        name = entry.strip()
        if not name:
            continue
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise errors.ConfigurationError(
                f"{ACTION_MODULES_ENV}: cannot import {name!r}: {exc}"
            ) from None
        actions: Sequence[type[Action]] | None = getattr(module, "ACTIONS", None)
        if actions is None:
            raise errors.ConfigurationError(f"{ACTION_MODULES_ENV}: {name!r} has no ACTIONS")
        for action in actions:
            registry.register(action)
    return registry


@dataclass
class Workspace:
    """One user's view of crystal-runbook: directories, environment, sinks."""

    state_dir: Path
    inventory_dir: Path = Path("inventory")
    runbooks_dir: Path = Path("runbooks")
    env: str | None = None
    actor: str = field(default_factory=default_actor)
    sink: Sink | None = None
    confirm: Callable[[str], bool] | None = None
    interactive: bool = False
    action_modules: tuple[str, ...] = field(
        default_factory=lambda: tuple(os.environ.get(ACTION_MODULES_ENV, "").split(","))
    )
    database_url: str | None = field(default_factory=journals.database_url, repr=False)
    """The PostgreSQL journal (``CRYSTAL_DATABASE_URL``), None for SQLite; a secret."""
    observers: tuple[Sink, ...] = ()
    """Sinks that see every run's events besides ``sink`` (`serve`'s /metrics); workspaces
    derived for jobs and duties keep them."""
    origin: dict[str, Any] = field(default_factory=dict)
    """Metadata every run started through this workspace carries (`serve`: the replica and
    duty that started it, so the next leader can resume it: ``service.recovery``)."""

    # -- wiring ------------------------------------------------------------------------------

    @cached_property
    def registry(self) -> Registry:
        return build_registry(self.action_modules, configure=self._wire)

    def _wire(self, action: Action) -> None:
        """Give a built-in action what it needs from this workspace, when it is first loaded
        (its module is loaded by then, so nothing is imported here before it is needed)."""
        module = type(action).__module__
        if module == "crystal_runbook.actions.metrics":
            from crystal_runbook.actions import metrics

            if isinstance(action, metrics.MetricsCheck):  # its rules: this workspace's triggers
                action.triggers_file = self.inventory_dir / "triggers.yaml"
        elif module == "crystal_runbook.actions.slack":
            from crystal_runbook.actions import slack as slack_action

            if isinstance(action, slack_action.Notify):  # Slack or, without a token, the outbox
                action.notifier = self.notifier
        elif module == "crystal_runbook.actions.incident":
            from crystal_runbook.actions import incident as incident_action

            if isinstance(action, incident_action.IncidentWrite):  # this workspace's journal
                action.journal = lambda: self.journal
                action.redactor = self.redactor
                action.settle_notifications = self._settle_notifications
                action.triggers_file = self.inventory_dir / "triggers.yaml"
        elif module == "crystal_runbook.actions.ansible":
            from crystal_runbook.actions import ansible as ansible_action

            if isinstance(action, ansible_action.Playbook):  # playbooks/ beside the runbooks
                action.playbooks_dir = self.playbooks_dir

    @property
    def playbooks_dir(self) -> Path:
        """Ansible playbooks: `playbooks/` beside the runbooks directory."""
        return self.runbooks_dir.parent / "playbooks"

    @cached_property
    def notifier(self) -> slack_notify.Notifier:
        """Notifications of this state directory: Slack with SLACK_BOT_TOKEN, else the outbox."""
        from crystal_runbook.notify import slack

        return slack.Notifier(state_dir=self.state_dir, redactor=self.redactor)

    @cached_property
    def inventory(self) -> inventory_mod.Inventory:
        return inventory_mod.load(self.inventory_dir, variables=inventory_variables(self.state_dir))

    @cached_property
    def redactor(self) -> Redactor:
        return Redactor()

    @cached_property
    def journal(self) -> journal_mod.Journal:
        """SQLite in the state dir, or PostgreSQL when ``database_url`` is set."""
        return journals.open_journal(
            self.state_dir, database_url=self.database_url, redactor=self.redactor
        )

    @cached_property
    def local_locks(self) -> locks_mod.LockTable:
        """The journal's lock table: this machine's (SQLite) or the team's (PostgreSQL)."""
        return journals.open_locks(self.journal)

    def lock_backends(self, target: Mapping[str, Any] | None = None) -> list[locks_mod.LockBackend]:
        """The journal's lock, plus a Kubernetes Lease when the target lives in a cluster."""
        backends: list[locks_mod.LockBackend] = [self.local_locks]
        if target and target.get("kubernetes"):
            from crystal_runbook.kube import client as kube_client
            from crystal_runbook.kube import lease

            backends.append(
                lease.LeaseLocks(kube_client.KubeTarget.from_target(target), ended=self.run_ended)
            )
        return backends

    def run_ended(self, run_id: str) -> bool:
        """Whether this journal shows ``run_id`` as ended (a Lease it left may be taken over)."""
        try:
            return self.journal.get_run(run_id).status != "running"
        except errors.CrystalError:  # unknown here (another machine's run), or unreadable
            return False

    def executor(
        self, request: executor_mod.Request | None = None, *, sinks: Sequence[Sink] = ()
    ) -> executor_mod.Executor:
        """An executor for ``request`` whose events go to this workspace's sink, its
        observers and ``sinks`` (a run's live progress message)."""
        sink = self.sink
        if sinks or self.observers:
            sink = fan_out([s for s in (self.sink, *self.observers, *sinks) if s is not None])
        return executor_mod.Executor(
            registry=self.registry,
            journal=self.journal,
            lock_backends=self.lock_backends(request.target if request else None),
            state_dir=self.state_dir,
            sink=sink,
            confirm=self.confirm,
            redactor=self.redactor,
        )

    def _settle_notifications(self, timeout: float) -> bool:
        """Wait for notifications still being delivered (none if none was sent)."""
        return "notifier" not in self.__dict__ or self.notifier.drain(timeout)

    def close(self) -> None:
        if "notifier" in self.__dict__:  # deliveries still going on end (or time out) first
            self.notifier.drain()
        if "local_locks" in self.__dict__:
            self.local_locks.close()
        if "journal" in self.__dict__:
            self.journal.close()
        kube = sys.modules.get("crystal_runbook.kube.client")
        if kube is not None:  # only if this process talked to a cluster
            kube.close_all()

    def resolve_env(self) -> str:
        """--env, else $CRYSTAL_ENV (folded in by the shell), else the inventory's default."""
        if self.env:
            env = self.env.strip()
            if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", env):
                raise errors.TargetNotFound(
                    f"{env[:80]!r} is not an environment name",
                    hint="use lower-case letters, digits, - and _",
                )
            return env
        return self.inventory.default_environment or FALLBACK_ENV

    def load_runbook(self, name_or_path: str, *, allow_paths: bool = True) -> loader.LoadedRunbook:
        """A runbook by name (from the runbooks directory) or, if allowed, by path."""
        path = loader.resolve_path(name_or_path, self.runbooks_dir, allow_paths=allow_paths)
        return loader.load(path, self.registry, display=display(path))

    def target(self, service: str) -> tuple[str, dict[str, Any]]:
        """(environment, the service's block there).

        Raises:
            errors.TargetNotFound: unknown service or environment.
        """
        env = self.resolve_env()
        return env, self.target_block(service, env)

    def target_block(self, service: str, env: str) -> dict[str, Any]:
        """The service's block in ``env`` as a run journals it: host files as absolute paths.

        Raises:
            errors.TargetNotFound: unknown service or environment.
        """
        block = self.inventory.target(service, env).model_dump(mode="json")
        if block.get("hosts"):
            from crystal_runbook.hosts import config as hosts_config

            block["hosts"] = hosts_config.resolve_block(
                block["hosts"], inventory_dir=self.inventory_dir, state_dir=self.state_dir
            )
        return block


SANDBOX_ENDPOINT = Path("sandbox") / "endpoint.json"
"""Where `sandbox up` (foreground or detached) writes its URL, under the state directory."""


def inventory_variables(state_dir: Path) -> dict[str, Callable[[], str]]:
    """The values of the inventory's ``{state_dir}`` and ``{sandbox_url}`` for ``state_dir``.

    ``{sandbox_url}`` is read from ``<state>/sandbox/endpoint.json`` when a block uses it;
    without a live sandbox for this state directory it is a ConfigurationError (exit 2,
    nothing changed) that says how to start one.
    """
    root = Path(os.path.abspath(state_dir.expanduser()))

    def sandbox_url() -> str:
        path = root / SANDBOX_ENDPOINT
        start = f"crystal-runbook --state-dir {root} sandbox up --detach"
        try:
            endpoint = json.loads(path.read_text(encoding="utf-8"))
            url = str(endpoint["url"])
            pid = int(endpoint.get("pid") or 0)
        except (OSError, ValueError, KeyError, TypeError):
            raise errors.ConfigurationError(
                f"no sandbox runs for the state directory {root} (no readable {path}); "
                "the inventory's {sandbox_url} needs one",
                hint=f"start it with `{start}` (add --port 0 if port 17443 is taken)",
            ) from None
        if pid and not journal_mod.process_alive(pid):
            raise errors.ConfigurationError(
                f"the sandbox of the state directory {root} is not running "
                f"(pid {pid} in {path} is gone)",
                hint=f"start it again with `{start}`",
            )
        return url.rstrip("/")

    return {"state_dir": lambda: str(root), "sandbox_url": sandbox_url}


def display(path: Path) -> str:
    """A path as a user would type it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
