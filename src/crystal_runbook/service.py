"""The service layer: the one place that wires settings, inventory, engine and sinks.

The CLI, the Slack app and the scheduler are thin shells over ``Workspace``: they parse
their input, call one method here, and turn errors into exit codes or replies. Nothing in
this module knows about terminals or Slack.
"""

from __future__ import annotations

import getpass
import importlib
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crystal_runbook import errors
from crystal_runbook.engine import executor as executor_mod
from crystal_runbook.engine import inventory as inventory_mod
from crystal_runbook.engine import journal as journal_mod
from crystal_runbook.engine import loader, model, yamlsource
from crystal_runbook.engine import locks as locks_mod
from crystal_runbook.engine import params as params_mod
from crystal_runbook.engine.events import Sink
from crystal_runbook.engine.registry import Action, Registry, StepContext
from crystal_runbook.engine.secrets import Redactor

if TYPE_CHECKING:
    from crystal_runbook.incident import generate as incident_generate
    from crystal_runbook.notify import slack as slack_notify
    from crystal_runbook.triggers.evaluator import Report
    from crystal_runbook.triggers.loader import Bound
    from crystal_runbook.triggers.watch import Notice, WatchSettings

ACTION_MODULES_ENV = "CRYSTAL_ACTION_MODULES"
"""Comma-separated modules whose ``ACTIONS`` tuple adds actions (plugins, test fakes)."""
FALLBACK_ENV = "local"
"""Environment of runs when neither --env, $CRYSTAL_ENV nor the inventory names one."""


def default_actor() -> str:
    """Who is running this: $CRYSTAL_ACTOR, else the login name."""
    actor = os.environ.get("CRYSTAL_ACTOR")
    if actor:
        return actor[:100]
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "unknown"


def build_registry(extra_modules: Iterable[str] = ()) -> Registry:
    """The built-in actions plus those of ``extra_modules``.

    Raises:
        errors.ConfigurationError: a module cannot be imported or has no ``ACTIONS``.
    """
    registry = Registry()
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

    # -- wiring ------------------------------------------------------------------------------

    @cached_property
    def registry(self) -> Registry:
        from crystal_runbook.actions import incident as incident_action
        from crystal_runbook.actions import metrics
        from crystal_runbook.actions import slack as slack_action

        registry = build_registry(self.action_modules)
        checker = registry.get("metrics.check") if "metrics.check" in registry else None
        if isinstance(checker, metrics.MetricsCheck):  # its rules: this workspace's triggers
            checker.triggers_file = self.inventory_dir / "triggers.yaml"
        notifier = registry.get("slack.notify") if "slack.notify" in registry else None
        if isinstance(notifier, slack_action.Notify):  # Slack or, without a token, the outbox
            notifier.notifier = self.notifier
        writer = registry.get("incident.write") if "incident.write" in registry else None
        if isinstance(writer, incident_action.IncidentWrite):  # this workspace's journal
            writer.journal = lambda: self.journal
            writer.redactor = self.redactor
        return registry

    @cached_property
    def notifier(self) -> slack_notify.Notifier:
        """Notifications of this state directory: Slack with SLACK_BOT_TOKEN, else the outbox."""
        from crystal_runbook.notify import slack

        return slack.Notifier(state_dir=self.state_dir, redactor=self.redactor)

    @cached_property
    def inventory(self) -> inventory_mod.Inventory:
        return inventory_mod.load(self.inventory_dir)

    @cached_property
    def redactor(self) -> Redactor:
        return Redactor()

    @cached_property
    def journal(self) -> journal_mod.SqliteJournal:
        return journal_mod.open_journal(self.state_dir, redactor=self.redactor)

    @cached_property
    def local_locks(self) -> locks_mod.SqliteLocks:
        """This machine's locks, in the journal database (one connection per workspace)."""
        return locks_mod.SqliteLocks(self.journal.path)

    def lock_backends(self, target: Mapping[str, Any] | None = None) -> list[locks_mod.LockBackend]:
        """This machine's lock, plus a Kubernetes Lease when the target lives in a cluster."""
        backends: list[locks_mod.LockBackend] = [self.local_locks]
        if target and target.get("kubernetes"):
            from crystal_runbook.kube import client as kube_client
            from crystal_runbook.kube import lease

            backends.append(lease.LeaseLocks(kube_client.KubeTarget.from_target(target)))
        return backends

    def executor(self, request: executor_mod.Request | None = None) -> executor_mod.Executor:
        return executor_mod.Executor(
            registry=self.registry,
            journal=self.journal,
            lock_backends=self.lock_backends(request.target if request else None),
            state_dir=self.state_dir,
            sink=self.sink,
            confirm=self.confirm,
            redactor=self.redactor,
        )

    def close(self) -> None:
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

    # -- runbooks ----------------------------------------------------------------------------

    def load_runbook(self, name_or_path: str, *, allow_paths: bool = True) -> loader.LoadedRunbook:
        path = loader.resolve_path(name_or_path, self.runbooks_dir, allow_paths=allow_paths)
        return loader.load(path, self.registry, display=_display(path))

    def request(
        self,
        runbook: str,
        params: Mapping[str, Any],
        *,
        assume_yes: bool = False,
        allow_paths: bool = True,
        drill: bool = False,
        meta: Mapping[str, Any] | None = None,
    ) -> executor_mod.Request:
        """Load, resolve parameters and target: everything before the first step.

        Raises:
            errors.InputError: any bad input (exit 2); nothing has been changed.
        """
        loaded = self.load_runbook(runbook, allow_paths=allow_paths)
        typed = params_mod.resolve(loaded.runbook.params, params, runbook=loaded.runbook.name)
        for name, spec in loaded.runbook.params.items():
            if spec.secret and isinstance(typed.get(name), str):
                self.redactor.add(typed[name])
        env = self.resolve_env()
        service = typed.get("service") if "service" in loaded.runbook.params else None
        target: dict[str, Any] = {}
        service_info: dict[str, Any] = {}
        if service is not None:
            block = self.inventory.target(str(service), env)
            target = block.model_dump(mode="json")
            found = self.inventory.services[str(service)]
            service_info = {"description": found.description, "owner": found.owner}
        return executor_mod.Request(
            loaded=loaded,
            params=typed,
            env=env,
            actor=self.actor,
            service=None if service is None else str(service),
            service_info=service_info,
            target=target,
            assume_yes=assume_yes,
            interactive=self.interactive,
            drill=drill,
            meta=dict(meta or {}),
            redacted_params=params_mod.redact(loaded.runbook.params, typed),
        )

    def plan(
        self, runbook: str, params: Mapping[str, Any], *, allow_paths: bool = True
    ) -> tuple[executor_mod.Request, list[executor_mod.PlannedStep]]:
        request = self.request(runbook, params, allow_paths=allow_paths)
        return request, self.executor(request).plan(request)

    def run(
        self,
        runbook: str,
        params: Mapping[str, Any],
        *,
        assume_yes: bool = False,
        allow_paths: bool = True,
        drill: bool = False,
        meta: Mapping[str, Any] | None = None,
    ) -> executor_mod.RunResult:
        request = self.request(
            runbook, params, assume_yes=assume_yes, allow_paths=allow_paths, drill=drill, meta=meta
        )
        return self.executor(request).run(request)

    def resume(self, run_id: str, *, assume_yes: bool = False) -> executor_mod.RunResult:
        """Continue a run from the journal, with the runbook text and target it started with."""
        run = self.journal.get_run(run_id)
        if run.status == "ok":
            return executor_mod.RunResult(run)
        loaded = loader.load_text(run.runbook_text, self.registry, path=run.runbook_path)
        secret = [n for n, s in loaded.runbook.params.items() if s.secret]
        if secret:
            raise errors.InputError(
                f"run {run.id} has secret parameters ({', '.join(secret)}) that the journal "
                "does not keep; it cannot be resumed",
                hint="start a new run",
            )
        typed = params_mod.resolve(
            loaded.runbook.params,
            {k: v for k, v in run.params.items() if v is not None},
            runbook=loaded.runbook.name,
        )
        request = executor_mod.Request(
            loaded=loaded,
            params=typed,
            env=run.env,
            actor=self.actor,
            service=run.service,
            service_info=dict(run.meta.get("service_info", {})),
            target=dict(run.meta.get("target", {})),
            assume_yes=assume_yes,
            interactive=self.interactive,
            drill=run.drill,
            meta=run.meta,
            redacted_params=run.params,
        )
        return self.executor(request).resume(run, request)

    # -- on-call commands that are not runbooks ----------------------------------------------

    def target(self, service: str) -> tuple[str, dict[str, Any]]:
        """(environment, the service's block there) for `health` and `logs`.

        Raises:
            errors.TargetNotFound: unknown service or environment.
        """
        env = self.resolve_env()
        return env, self.inventory.target(service, env).model_dump(mode="json")

    def _context(
        self, service: str, env: str, target: Mapping[str, Any], step: str, timeout: float
    ) -> StepContext:
        return StepContext(
            run_id="health",
            step_id=step,
            env=env,
            actor=self.actor,
            service=service,
            target=target,
            state_dir=self.state_dir,
            dry_run=True,
            deadline=time.monotonic() + timeout,
        )

    def health(self, service: str) -> dict[str, Any]:
        """The service now: its health URL, its Deployment's rollout, its trigger rules.

        Returns the `health` JSON document of design.md section 4.
        """
        env, target = self.target(service)
        checks: list[dict[str, Any]] = []
        probes = [
            ("health_url", "http.health", bool(target.get("health_url"))),
            ("deployment", "k8s.rollout_status", bool(target.get("kubernetes"))),
        ]
        for name, uses, present in probes:
            if not present:
                continue
            action = self.registry.get(uses)
            ctx = self._context(service, env, target, name, timeout=10.0)
            try:
                found = action.check(action.Args.model_validate({}), ctx)
                checks.append(
                    {
                        "name": name,
                        "ok": found.satisfied,
                        "detail": found.summary,
                        "outputs": dict(found.outputs),
                    }
                )
            except errors.CrystalError as exc:
                checks.append({"name": name, "ok": False, "detail": exc.message, "outputs": {}})
        rules: list[dict[str, Any]] = []
        rules_healthy = True
        if (self.inventory_dir / "triggers.yaml").exists():
            try:
                report = self.trigger_report(service)
            except errors.CrystalError as exc:  # rules that cannot run are not healthy
                failed = {"name": "triggers", "ok": False, "detail": exc.message, "outputs": {}}
                checks.append(failed)
                report = None
            if report is not None:
                rules, rules_healthy = report.as_json()["rules"], report.healthy
        healthy = (bool(checks) or bool(rules)) and all(c["ok"] for c in checks) and rules_healthy
        return {
            "service": service,
            "env": env,
            "healthy": healthy,
            "checks": checks,
            "rules": rules,
        }

    def logs(
        self,
        service: str,
        *,
        since: float | None,
        tail: int | None,
        grep: str | None,
        follow: bool,
        emit: Callable[[str], None],
        stop: threading.Event,
        until: float | None = None,
    ) -> int:
        """Print the logs of every pod of the service (following across rollouts)."""
        from crystal_runbook.kube import client as kube_client
        from crystal_runbook.kube import logs as kube_logs

        _, target = self.target(service)
        kube_target = kube_client.KubeTarget.from_target(target)
        kube = kube_client.connect(kube_target)
        if follow:
            kube_logs.follow(
                kube,
                kube_target,
                since=since,
                tail=tail,
                grep=grep,
                container=kube_target.container,
                emit=emit,
                stop=stop,
                until=until,
            )
            return 0
        count = 0
        for line in kube_logs.recent(
            kube,
            kube_target,
            since=since,
            tail=tail,
            grep=grep,
            container=kube_target.container,
            limit=100_000,
            deadline=time.monotonic() + 60,
        ):
            emit(line)
            count += 1
        return count

    # -- rollback triggers -------------------------------------------------------------------

    def bound_triggers(self, service: str, *, path: Path | None = None) -> Bound:
        """``service``'s trigger rules for this environment, each with its source decided.

        Raises:
            errors.InputError: unknown service or environment, an invalid triggers file
                (file:line:column), or a source whose URL variable is not set (exit 2).
        """
        from crystal_runbook.triggers import loader as triggers_loader

        env = self.resolve_env()
        target = self.inventory.target(service, env)
        file = path or self.inventory_dir / triggers_loader.FILENAME
        loaded = triggers_loader.load(file, display=_display(file))
        return triggers_loader.bind(loaded, service, env, target)

    def trigger_report(self, service: str, *, path: Path | None = None) -> Report | None:
        """One evaluation of the service's rules now (for `health`), reading saved windows.

        Returns None when the triggers file has no rules for ``service``.
        """
        from crystal_runbook.triggers import evaluator, store, watch

        try:
            bound = self.bound_triggers(service, path=path)
        except errors.TargetNotFound:
            if service in self.inventory.services:
                return None  # the service exists, it simply has no rules
            raise
        with evaluator.Evaluator(bound, redactor=self.redactor) as ev:
            saved = store.load(store.path_for(self.state_dir, service, bound.env))
            rules_data = saved.get("rules")
            if isinstance(rules_data, dict):
                ev.restore(rules_data, now=time.time(), max_age=watch.WatchSettings().state_ttl)
            return ev.evaluate()

    def watch(
        self,
        service: str,
        *,
        settings: WatchSettings,
        notify: Callable[[Notice], None],
        on_report: Callable[[Report], None],
        path: Path | None = None,
        once: bool = False,
        stop: threading.Event | None = None,
        approve: Callable[[str], bool] | None = None,
    ) -> Report:
        """Evaluate the service's rules every ``settings.interval`` (or once); returns the last
        report. A firing rollback rule runs `rollback` through ``run`` when auto-rollback is on.
        """
        from crystal_runbook.triggers import evaluator, store
        from crystal_runbook.triggers import watch as watch_mod

        bound = self.bound_triggers(service, path=path)

        def rollback(reason: str, evidence: dict[str, Any]) -> watch_mod.RollbackAttempt:
            try:
                result = self.run(
                    "rollback",
                    {"service": service, "reason": reason},
                    assume_yes=True,  # --auto-rollback is the operator's consent
                    allow_paths=False,
                    meta={"trigger": evidence},
                )
            except errors.CrystalError as exc:
                return watch_mod.RollbackAttempt(None, "refused", self.redactor.text(str(exc)))
            if result.run.status == "interrupted":
                raise errors.Interrupted(f"rollback run {result.run.id} interrupted")
            return watch_mod.RollbackAttempt(result.run.id, result.run.status, result.run.error)

        with evaluator.Evaluator(bound, redactor=self.redactor) as ev:
            watcher = watch_mod.Watcher(
                ev,
                settings=settings,
                notify=notify,
                rollback=rollback,
                approve=approve,
                state_path=store.path_for(self.state_dir, service, bound.env),
            )
            return watcher.run(once=once, stop=stop, on_report=on_report)

    # -- history -----------------------------------------------------------------------------

    def runs(self, *, service: str | None = None, limit: int = 20) -> list[journal_mod.RunRecord]:
        return self.journal.list_runs(service=service, limit=limit)

    def show(self, run_id: str) -> journal_mod.RunRecord:
        return self.journal.get_run(run_id)

    def incident(self, run_id: str, *, write: bool = True) -> incident_generate.Rendered:
        """The incident document of a run, generated from the journal as it is now.

        With ``write`` its files (Markdown, JSON, chart) are written to
        `<state dir>/incidents/` where they differ.

        Raises:
            errors.RunNotFound: no such run (exit 2).
            errors.ConfigurationError: the files cannot be written.
        """
        from crystal_runbook.incident import files, generate

        prepared = generate.prepare(
            self.journal, run_id, directory=self.state_dir / files.DIRECTORY
        )
        rendered = generate.render(prepared, redactor=self.redactor, draw=write)
        if write:
            try:
                generate.write(rendered)
            except OSError as exc:
                raise errors.ConfigurationError(
                    f"cannot write the incident document to {prepared.paths.markdown.parent}: "
                    f"{exc.strerror or exc}",
                    hint="check the state directory (--state-dir) is writable",
                ) from None
        return rendered

    # -- the outbox (notifications not yet on Slack) -----------------------------------------

    def outbox(self, *, include_sent: bool = False) -> slack_notify.Listing:
        """Notifications waiting in ``<state dir>/outbox/`` (and, if asked, those delivered)."""
        return self.notifier.listing(include_sent=include_sent)

    def flush_outbox(
        self, *, progress: Callable[[str], None] | None = None
    ) -> list[slack_notify.Result]:
        """Deliver what waits in the outbox (needs SLACK_BOT_TOKEN); idempotent.

        Raises:
            errors.ConfigurationError: no token is configured (exit 2).
        """
        return self.notifier.flush(progress=progress or (lambda _message: None))

    # -- validation --------------------------------------------------------------------------

    def validate(self, paths: Sequence[Path] = ()) -> tuple[int, list[errors.Problem]]:
        """Check runbooks and inventory files; returns (files checked, problems)."""
        targets = list(paths) or [self.runbooks_dir, self.inventory_dir]
        files: list[Path] = []
        for target in targets:
            if target.is_dir():
                files.extend(
                    sorted(
                        p for p in target.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()
                    )
                )
            elif target.exists():
                files.append(target)
            else:
                files.append(target)  # reported as "file not found"
        problems: list[errors.Problem] = []
        for path in files:
            try:
                self._validate_file(path)
            except errors.RunbookInvalid as exc:
                problems.extend(exc.problems)
        return len(files), problems

    def _validate_file(self, path: Path) -> None:
        source = yamlsource.read_file(path, display=_display(path))
        kind = source.data.get("kind") if isinstance(source.data, dict) else None
        if kind == "Runbook" or (isinstance(source.data, dict) and "steps" in source.data):
            loader.load_source(source, self.registry)
        elif path.name == inventory_mod.SERVICES_FILE:
            inventory_mod.parse(source)
        elif path.name == "triggers.yaml":
            from crystal_runbook.triggers import loader as triggers_loader

            triggers_loader.parse(source)
        elif path.parent.resolve() == self.inventory_dir.resolve():
            return  # other inventory files are validated by the features that own them
        else:
            raise errors.RunbookInvalid(
                [source.problem((), "not a runbook (kind: Runbook) nor a known inventory file")]
            )

    def schema(self) -> dict[str, Any]:
        """JSON Schema of runbooks, with each action's `with:` schema attached by `uses:`."""
        schema = model.json_schema()
        branches = []
        for name in self.registry.names():
            action = self.registry.get(name)
            branches.append(
                {
                    "if": {"properties": {"uses": {"const": name}}, "required": ["uses"]},
                    "then": {"properties": {"with": action.Args.model_json_schema()}},
                }
            )
        for definition in ("Step", "FailureStep"):
            schema.get("$defs", {}).get(definition, {})["allOf"] = branches
        schema.setdefault("$defs", {})
        schema["x-actions"] = {
            n: self.registry.get(n).summary or (self.registry.get(n).__doc__ or "").strip()
            for n in self.registry.names()
        }
        return schema


def _display(path: Path) -> str:
    """A path as a user would type it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
