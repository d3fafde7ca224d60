"""The executor: plan, run and resume runbooks with the engine's guarantees.

- Nothing runs until the whole runbook renders and validates for this environment
  (``prepare``): an undefined name or a wrong type is exit 2 with file:line:column.
- Steps run one after another through ``steps.StepRunner`` (check, apply only if needed,
  verify; every transition journalled before the next starts).
- ``resume`` continues from the journal with the runbook text, parameters and target the run
  started with; finished steps are not run again.
- The runbook's `lock:` is held for the whole run; SIGINT/SIGTERM (a KeyboardInterrupt here)
  journals `interrupted`, releases the lock and ends the run with exit 130. So does a journal
  whose disk fills mid-run (``errors.DiskFull``): no step may start whose transitions cannot
  be journalled, and the journal gives back its space reserve so the end can be recorded.
- When a step fails, the `on_failure` steps run (their own failures are journalled but do
  not replace the original error).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from crystal_runbook import errors
from crystal_runbook.engine import journal as journal_mod
from crystal_runbook.engine import locks as locks_mod
from crystal_runbook.engine import orphans, templating, validation
from crystal_runbook.engine.events import Sink
from crystal_runbook.engine.loader import LoadedRunbook
from crystal_runbook.engine.model import FailureStep, Step
from crystal_runbook.engine.registry import Action, Change, Check, Registry, StepContext
from crystal_runbook.engine.secrets import Redactor
from crystal_runbook.engine.steps import RunState, StepFailed, StepRunner, template_vars


@dataclass
class Request:
    """Everything a run needs, resolved by the service layer."""

    loaded: LoadedRunbook
    params: dict[str, Any]
    env: str
    actor: str
    service: str | None = None
    service_info: dict[str, Any] = field(default_factory=dict)
    target: dict[str, Any] = field(default_factory=dict)
    assume_yes: bool = False
    interactive: bool = False
    drill: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    redacted_params: dict[str, Any] | None = None
    """``params`` as they may be journalled (secret ones masked)."""
    force: bool = False
    """`resume --force`: re-apply from the first step that drifted instead of refusing."""
    break_lock: bool = False
    """Take over a lock held by a live-looking run on another host (`--break-lock`), once
    confirmed (``assume_yes`` or an interactive yes)."""


@dataclass(frozen=True)
class PlannedStep:
    """What `plan` found for one step."""

    id: str
    uses: str
    status: str  # change | ok | check | skip | deferred | refused | error
    summary: str
    changes: tuple[Change, ...] = ()
    error: str | None = None
    exception: errors.CrystalError | None = field(default=None, compare=False, repr=False)
    """What the check raised (``refused``, ``error``)."""

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "uses": self.uses,
            "status": self.status,
            "summary": self.summary,
            "error": self.error,
            "changes": [
                {
                    "field": c.field,
                    "before": "*****" if c.secret else c.before,
                    "after": "*****" if c.secret else c.after,
                }
                for c in self.changes
            ],
        }


@dataclass(frozen=True)
class RunResult:
    """A finished (or interrupted) run and the error that ended it, if any."""

    run: journal_mod.RunRecord
    error: errors.CrystalError | None = None
    redactor: Redactor = field(default_factory=Redactor, compare=False, repr=False)
    """The run's redactor (it knows the run's secret parameters): ``run`` is the in-memory
    record, not yet masked the way the journal is, so whoever prints it masks it with this."""

    @property
    def exit_code(self) -> int:
        """0 ok; 3, 4 and 130 as the error says; any other failure of a started run is 1
        (a step failed), even when its cause was bad configuration found mid-run."""
        if self.run.status == "ok":
            return 0
        if self.error is not None and self.error.exit_code in (3, 4, 130):
            return self.error.exit_code
        return 1


INTERVENING_RUNS = 200
"""How many recent runs of the service `resume` reads to find runs on the same lock since."""


@dataclass(frozen=True)
class Drift:
    """A step of a resumed run whose effect no longer holds."""

    index: int
    step_id: str
    what: str


def _intent(rec: journal_mod.StepRecord) -> str:
    """What a step changed (or meant to), from its journalled intent."""
    changes = [
        f"{c.get('field')}: ***** -> *****"
        if c.get("secret")
        else f"{c.get('field')}: {c.get('before')!r} -> {c.get('after')!r}"
        for c in rec.changes
    ]
    return "; ".join(changes) or rec.summary or "something"


PREFLIGHT_SECONDS = 10.0
"""Bound of one check in `plan` and in the preflight; a slower API is the run's to retry."""


def is_refusal(exc: errors.CrystalError) -> bool:
    """Whether a check's error is a permanent refusal (retrying cannot help) rather than a
    temporary failure: refused, not found, invalid, misconfigured."""
    return isinstance(exc, errors.PermanentActionError | errors.InputError)


def plan_exit_code(request: Request, planned: Sequence[PlannedStep]) -> int:
    """The exit code of `plan` / `--dry-run` (design.md section 4).

    0 when every check succeeded; 1 when a check failed or refused; 2 when the first check
    that failed did so on bad input (``errors.InputError``: no kubeconfig, an unknown
    context), as the run itself would exit; 4 when the environment needs a confirmation that
    was not given and everything else is fine. (Other bad input is exit 2 before any check
    runs.) So `... --dry-run && ... --yes` is a safe idiom.
    """
    first = next((p for p in planned if p.status in ("refused", "error")), None)
    if first is not None:
        return 2 if isinstance(first.exception, errors.InputError) else 1
    if request.env in request.loaded.runbook.confirm and not request.assume_yes:
        return 4
    return 0


def _covered(step: PlannedStep, earlier: Sequence[PlannedStep]) -> PlannedStep:
    """``step`` as "no change" when every change it would make an earlier step makes."""
    if step.status != "change" or not step.changes:
        return step
    made = {(c.field, repr(c.after)): p.id for p in earlier for c in p.changes}
    by = [made.get((c.field, repr(c.after))) for c in step.changes]
    if any(b is None for b in by):
        return step
    fields = ", ".join(c.field for c in step.changes)
    owners = ", ".join(dict.fromkeys(str(b) for b in by))
    return PlannedStep(
        step.id, step.uses, "ok", f"no change: step {owners} already sets {fields}"
    )


def _deferred_steps(steps: list[Step]) -> dict[str, dict[str, templating.Deferred]]:
    return {
        s.id: {
            name: templating.Deferred(f"steps.{s.id}.{name}")
            for name in ("outputs", "status", "changed")
        }
        for s in steps
    }


class Executor:
    """Runs runbooks against a registry of actions, a journal and lock backends."""

    def __init__(
        self,
        *,
        registry: Registry,
        journal: journal_mod.Journal,
        lock_backends: list[locks_mod.LockBackend],
        state_dir: Path,
        sink: Sink | None = None,
        confirm: Callable[[str], bool] | None = None,
        redactor: Redactor | None = None,
        lock_ttl: float = locks_mod.DEFAULT_TTL,
    ) -> None:
        self.registry = registry
        self.journal = journal
        self.lock_backends = lock_backends
        self.state_dir = state_dir
        self.confirm = confirm
        self.lock_ttl = lock_ttl
        self.steps = StepRunner(
            registry=registry,
            journal=journal,
            state_dir=state_dir,
            sink=sink or (lambda _event: None),
            redactor=redactor or Redactor(),
            confirm=confirm,
        )

    # -- preparation -------------------------------------------------------------------------

    def prepare(self, request: Request) -> dict[str, dict[str, Any]]:
        """Render every step for this environment (unknown outputs deferred) and validate it.

        Returns:
            The rendered `with:` of each main step, by step id.
        Raises:
            errors.TargetNotFound: the runbook does not run in this environment.
            errors.RunbookInvalid: an undefined name, a failing filter or a wrong type.
        """
        loaded = request.loaded
        runbook = loaded.runbook
        if runbook.environments is not None and request.env not in runbook.environments:
            raise errors.TargetNotFound(
                f"runbook {runbook.name!r} does not run in environment {request.env!r}",
                hint=f"its environments: {', '.join(runbook.environments)}",
            )
        names = template_vars(
            request,
            run_id="<run.id>",
            started_at="<run.started_at>",
            steps=_deferred_steps(runbook.steps),
            failed_step={"id": "<id>", "uses": "<uses>", "error": "<error>"},
        )
        problems: list[errors.Problem] = []
        if runbook.lock is not None:
            try:
                templating.render(runbook.lock, names, ("lock",))
            except templating.RenderError as exc:
                problems.append(loaded.source.problem(exc.loc, exc.message))
        rendered: dict[str, dict[str, Any]] = {}
        groups: list[tuple[str, Sequence[Step | FailureStep]]] = [
            ("steps", runbook.steps),
            ("on_failure", runbook.on_failure),
        ]
        for group, steps in groups:
            for i, step in enumerate(steps):
                loc: tuple[str | int, ...] = (group, i, "with")
                action = self.registry.get(step.uses)
                try:
                    args = templating.render(step.with_, names, loc, markup=action.markup)
                except templating.RenderError as exc:
                    problems.append(loaded.source.problem(exc.loc, exc.message))
                    continue
                problems.extend(self._type_problems(loaded, action, args, loc))
                if isinstance(step, Step):
                    rendered[step.id] = args
        if problems:
            raise errors.RunbookInvalid(
                problems, hint="nothing was run; fix the runbook or the parameters and try again"
            )
        return rendered

    @staticmethod
    def _type_problems(
        loaded: LoadedRunbook, action: Action, args: Mapping[str, Any], loc: tuple[str | int, ...]
    ) -> list[errors.Problem]:
        deferred = {k for k, v in args.items() if templating.is_deferred(v)}
        try:
            action.Args.model_validate(dict(args))
        except ValidationError as exc:
            found = []
            for error in exc.errors():
                if error["loc"] and error["loc"][0] in deferred:
                    continue
                full = (*loc, *error["loc"])
                line, col = loaded.source.where(full)
                message = validation.describe({**error, "loc": full})
                found.append(errors.Problem(loaded.path, line, col, message))
            return found
        return []

    # -- plan --------------------------------------------------------------------------------

    def plan(self, request: Request) -> list[PlannedStep]:
        """Check every step and say what it would change; changes nothing, journals nothing.

        A change an earlier step already makes (legacy mode set by the rollback's own patch)
        is not listed again as a later step's change.
        """
        rendered = self.prepare(request)
        runbook = request.loaded.runbook
        names = template_vars(
            request,
            run_id="<plan>",
            started_at=journal_mod.now_iso(),
            steps=_deferred_steps(runbook.steps),
        )
        planned: list[PlannedStep] = []
        for i, step in enumerate(runbook.steps):
            found = self._plan_step(request, step, rendered[step.id], names, i, run_id="plan")
            planned.append(_covered(found, planned))
        return planned

    def _checkable(
        self, step: Step, args: dict[str, Any], names: Mapping[str, Any], index: int
    ) -> PlannedStep | None:
        """Why ``step`` cannot be checked before the run (None: it can)."""
        if step.when is not None:
            decided = templating.evaluate(step.when, names, ("steps", index, "when"))
            if isinstance(decided, templating.Deferred):
                return PlannedStep(
                    step.id, step.uses, "deferred", "decided at run time (`when` uses outputs)"
                )
            if not decided:
                return PlannedStep(step.id, step.uses, "skip", "skipped: `when` is false")
        if templating.is_deferred(args):
            return PlannedStep(
                step.id, step.uses, "deferred", "checked at run time (uses earlier outputs)"
            )
        return None

    def _dry_check(
        self,
        request: Request,
        step: Step,
        action: Action,
        args: dict[str, Any],
        run_id: str,
        *,
        preflight: bool = False,
    ) -> Check:
        """The step's check, read-only, as `plan` and the preflight call it."""
        ctx = StepContext(
            run_id=run_id,
            step_id=step.id,
            env=request.env,
            actor=request.actor,
            service=request.service,
            target=request.target,
            state_dir=self.state_dir,
            dry_run=True,
            assume_yes=request.assume_yes,
            drill=request.drill,
            deadline=time.monotonic() + PREFLIGHT_SECONDS,
            preflight=preflight,
        )
        return action.check(action.Args.model_validate(args), ctx)

    def _plan_step(
        self,
        request: Request,
        step: Step,
        args: dict[str, Any],
        names: Mapping[str, Any],
        index: int,
        *,
        run_id: str,
        preflight: bool = False,
    ) -> PlannedStep:
        action = self.registry.get(step.uses)
        unknown = self._checkable(step, args, names, index)
        if unknown is not None:
            return unknown
        try:
            check = self._dry_check(request, step, action, args, run_id, preflight=preflight)
        except errors.CrystalError as exc:
            if is_refusal(exc):
                return PlannedStep(
                    step.id, step.uses, "refused", f"refuses: {exc.message}", error=str(exc),
                    exception=exc,
                )
            return PlannedStep(
                step.id, step.uses, "error", f"check failed: {exc.message}", error=str(exc),
                exception=exc,
            )
        if action.read_only:
            state = "holds now" if check.satisfied else "does not hold now"
            return PlannedStep(step.id, step.uses, "check", f"{state}: {check.summary}")
        if check.satisfied:
            return PlannedStep(step.id, step.uses, "ok", f"no change: {check.summary}")
        summary = f"would {check.summary}" if check.summary else "would apply"
        return PlannedStep(step.id, step.uses, "change", summary, changes=check.changes)

    # -- preflight ---------------------------------------------------------------------------

    def preflight(self, request: Request, *, run_id: str) -> tuple[int, PlannedStep] | None:
        """The first step whose check refuses now, found before anything is applied.

        Checked: every step that would change something and whose inputs are known before
        the run (its `with:` and `when:` use no earlier step's outputs). Read-only steps are
        left out: their check is a condition the run waits for (health, metrics), not a
        refusal, and a rollback must not wait on a misconfigured verification. The checks
        are read-only and independent, so they run at once, each within
        ``PREFLIGHT_SECONDS``; only a permanent error (refused, not found, invalid) counts:
        a temporary one (API unreachable) is left to the run's own retries.
        """
        runbook = request.loaded.runbook
        rendered = self.prepare(request)
        names = template_vars(
            request,
            run_id=run_id,
            started_at=journal_mod.now_iso(),
            steps=_deferred_steps(runbook.steps),
        )
        chosen: list[tuple[int, Step]] = []
        for i, step in enumerate(runbook.steps):
            action = self.registry.get(step.uses)
            if not action.in_preflight:
                continue
            if self._checkable(step, rendered[step.id], names, i) is None:
                chosen.append((i, step))
        found: dict[int, PlannedStep] = {}

        def check(index: int, step: Step) -> None:
            found[index] = self._plan_step(
                request, step, rendered[step.id], names, index, run_id=run_id, preflight=True
            )

        if len(chosen) == 1:
            check(*chosen[0])
        else:
            threads = [
                threading.Thread(
                    target=check, args=item, name=f"preflight-{item[1].id}", daemon=True
                )
                for item in chosen
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        for index, _step in chosen:
            planned = found.get(index)
            if planned is not None and planned.status == "refused":
                return index, planned
        return None

    # -- run and resume ----------------------------------------------------------------------

    def run(self, request: Request) -> RunResult:
        """Run a runbook from the start.

        Raises (before anything is journalled or changed):
            errors.InputError: invalid for this environment (exit 2).
            errors.ConfirmationRequired: a confirm environment without a yes (exit 4).
            errors.LockHeld: another run holds the lock (exit 3).
        """
        self.prepare(request)
        runbook = request.loaded.runbook
        if request.env in runbook.confirm and not request.assume_yes:
            self._confirm(request)
        run_id = journal_mod.new_run_id()
        run = journal_mod.RunRecord(
            id=run_id,
            runbook=runbook.name,
            env=request.env,
            actor=request.actor,
            status="running",
            started_at=journal_mod.now_iso(),
            params=request.params if request.redacted_params is None else request.redacted_params,
            service=request.service,
            host=socket.gethostname(),
            pid=os.getpid(),
            runbook_path=request.loaded.path,
            runbook_digest=request.loaded.digest,
            runbook_text=request.loaded.text,
            drill=request.drill,
            meta={**request.meta, "target": request.target, "service_info": request.service_info},
            steps=[
                journal_mod.StepRecord(run_id=run_id, phase="main", index=i, id=s.id, uses=s.uses)
                for i, s in enumerate(runbook.steps)
            ],
        )
        state = RunState(request=request, run=run)
        run.lock_key = self._lock_key(state)
        with self._locked(state, create=False):
            refusal = self.preflight(request, run_id=run_id)
            if refusal is not None:
                return self._refuse(state, *refusal)
            self._create(state)
            self.steps.emit(
                state,
                "run",
                "running",
                f"run {run.id} of {runbook.name} in {run.env} started by {run.actor}",
            )
            return self._drive(state)

    def _refuse(self, state: RunState, index: int, planned: PlannedStep) -> RunResult:
        """Journal the run as `refused` by step ``index``: nothing was applied or announced."""
        run = state.run
        now = journal_mod.now_iso()
        exc = planned.exception or errors.PermanentActionError(planned.error or planned.summary)
        rec = run.steps[index]
        rec.status, rec.started_at, rec.ended_at = "refused", now, now
        rec.error = f"step {rec.id!r} ({rec.uses}) refused: {exc.message}"
        rec.summary = exc.message
        run.status, run.ended_at = "refused", now
        run.error = rec.error + (f" (hint: {exc.hint})" if exc.hint else "")
        self._create(state)
        self.journal.update_run(run, event="refused", message=run.error)
        self.steps.emit(state, "step", "refused", rec.error, rec)
        self.steps.emit(
            state,
            "run",
            "refused",
            f"run {run.id} refused before any change: {exc.message}",
        )
        return RunResult(run, exc, self.steps.redactor)

    def _confirm(self, request: Request) -> None:
        runbook = request.loaded.runbook
        on = f" on {request.service!r}" if request.service else ""
        question = f"Run {runbook.name!r}{on} in {request.env!r}? Type yes to continue"
        if request.interactive and self.confirm is not None and self.confirm(question):
            return
        raise errors.ConfirmationRequired(
            f"{request.env!r} needs confirmation to run {runbook.name!r}; nothing was changed",
            hint="add --yes (or answer yes at the prompt); --dry-run shows the plan without it",
        )

    def resume(self, run: journal_mod.RunRecord, request: Request) -> RunResult:
        """Continue ``run`` (interrupted, failed, or killed while running) from the journal.

        Raises:
            errors.LockHeld: the run is still going in a live process, or its lock is held.
        """
        if run.status == "ok":
            return RunResult(run, None, self.steps.redactor)
        alive = run.host == socket.gethostname() and journal_mod.process_alive(run.pid)
        if run.status == "running" and alive and run.pid != os.getpid():
            raise errors.LockHeld(
                run.lock_key or f"run/{run.id}",
                run_id=run.id,
                actor=run.actor,
                host=run.host,
                started_at=run.started_at,
            )
        state = RunState(request=request, run=run, journalled=True)
        run.steps = [s for s in run.steps if s.phase == "main"]
        for step in run.steps:
            if step.status in journal_mod.TERMINAL_STEP:
                state.remember(step)
        with self._locked(state, create=False):
            drifted = self._drift(state)
            if drifted:
                self._drifted(state, drifted)
            run.status, run.ended_at, run.error = "running", None, None
            run.host, run.pid = socket.gethostname(), os.getpid()
            self.journal.update_run(
                run,
                event="resumed",
                message=f"resumed by {request.actor}",
                data={"actor": request.actor, "host": run.host, "pid": run.pid},
            )
            self.steps.emit(state, "run", "resumed", f"resuming run {run.id} of {run.runbook}")
            return self._drive(state)

    # -- drift (resume) ----------------------------------------------------------------------

    def _intervening(self, run: journal_mod.RunRecord) -> list[journal_mod.RunRecord]:
        """Runs on the same lock key that started after ``run`` and finished (newest first):
        someone else acted on the same target since. Refused runs changed nothing."""
        if run.lock_key is None:
            return []
        found = self.journal.list_runs(service=run.service, limit=INTERVENING_RUNS)
        return [
            other
            for other in found
            if other.id != run.id
            and other.lock_key == run.lock_key
            and other.started_at > run.started_at
            and other.status in ("ok", "failed", "interrupted")
        ]

    def _drift(self, state: RunState) -> list[Drift]:
        """Steps whose effect no longer holds.

        Every finished step that changed something is checked again: if its check now wants
        to change something, the world no longer matches what the run left. The step the run
        stopped in, if its change was journalled as intended or applied, counts too when
        another run on the same lock key finished since (re-applying it would undo theirs).
        """
        run = state.run
        runbook = state.request.loaded.runbook
        others = self._intervening(run)
        found: list[Drift] = []
        stopped = next((r for r in run.steps if r.status not in journal_mod.TERMINAL_STEP), None)
        for i, (step, rec) in enumerate(zip(runbook.steps, run.steps, strict=False)):
            action = self.registry.get(step.uses)
            if action.read_only or not action.recheck_on_resume:
                continue
            finished = rec.status == "ok" and bool(rec.changed)
            intended = rec is stopped and bool(rec.changes) and bool(others)
            if not (finished or intended):
                continue
            try:
                check = self.steps.recheck(state, step, rec, ("steps", i), seconds=30.0)
            except errors.CrystalError as exc:
                found.append(Drift(i, step.id, f"cannot be checked again: {exc.message}"))
                continue
            if not check.satisfied:
                now = "; ".join(c.render() for c in check.changes) or check.summary
                what = "it changed" if finished else "it was changing"
                found.append(
                    Drift(i, step.id, f"{what} {_intent(rec)}; now it would have to {now}")
                )
        if found:
            state.drift_others = others
        return found

    def _drifted(self, state: RunState, drifted: list[Drift]) -> None:
        """Refuse to resume (RunDrifted, exit 1), or with --force reset from the first drift."""
        run, request = state.run, state.request
        others = state.drift_others
        lines = [f"step {d.step_id}: {d.what}" for d in drifted]
        if others:
            by = ", ".join(
                f"run {o.id} ({o.runbook} by {o.actor}, {o.status} at {o.ended_at or '?'})"
                for o in others
            )
            cause = f"{by} acted on {run.lock_key} since this run started"
        else:
            cause = "no run in the journal did it: it was changed outside crystal-runbook"
        message = (
            f"run {run.id} no longer matches the world: " + "; ".join(lines) + f" ({cause})"
        )
        first = min(d.index for d in drifted)
        first_id = run.steps[first].id
        data = {"drift": [d.__dict__ for d in drifted], "others": [o.id for o in others]}
        if not request.force:
            self.journal.add_event(
                run.id, kind="run", status="resume refused", message=message, data=data
            )
            raise errors.RunDrifted(
                message + "; nothing was changed",
                hint=f"look first (`crystal-runbook runs show {others[0].id}`), then start a "
                f"new run, or `crystal-runbook resume {run.id} --force` to re-apply from step "
                f"{first_id}"
                if others
                else f"start a new run, or `crystal-runbook resume {run.id} --force` to "
                f"re-apply from step {first_id}",
            )
        if request.env in request.loaded.runbook.confirm and not request.assume_yes:
            self._confirm(request)
        for rec in run.steps[first:]:
            rec.status, rec.changed, rec.error = "pending", None, None
            rec.started_at = rec.ended_at = None
            rec.outputs, rec.evidence = {}, {}
            state.steps_vars.pop(rec.id, None)
            self.journal.save_step(rec, message=f"reset by resume --force ({request.actor})")
        self.journal.add_event(
            run.id,
            kind="run",
            status="resume forced",
            message=f"{message}; re-applying from step {first_id} (resume --force by "
            f"{request.actor})",
            data={**data, "actor": request.actor},
        )
        self.steps.emit(
            state,
            "warning",
            "warning",
            f"{message}; re-applying from step {first_id} (--force)",
        )

    def _lock_key(self, state: RunState) -> str | None:
        template = state.request.loaded.runbook.lock
        if template is None:
            return None
        try:
            return str(templating.render(template, state.template_vars(), ("lock",)))
        except templating.RenderError as exc:
            problem = state.request.loaded.source.problem(exc.loc, exc.message)
            raise errors.RunbookInvalid([problem]) from None

    @contextmanager
    def _locked(self, state: RunState, *, create: bool) -> Iterator[None]:
        """Hold the run's lock (if it has one) and journal the run's creation under it."""

        def warn(message: str) -> None:
            self.steps.emit(state, "warning", "warning", message)
            if not state.journalled:  # journalled with the run when it is created
                state.early_warnings.append(message)
                return
            with suppress(Exception):  # a warning must not end the run
                self.journal.add_event(
                    state.run.id, kind="warning", status="warning", message=message
                )

        def break_lock(held: errors.LockHeld) -> bool:
            request = state.request
            if not request.break_lock:
                return False
            question = (
                f"{held.message}. Break it and take it over for this run? Type yes to continue"
            )
            if request.assume_yes or (
                request.interactive and self.confirm is not None and self.confirm(question)
            ):
                return True
            raise errors.ConfirmationRequired(
                f"--break-lock takes over {held.key!r} from run {held.holder_run_id} "
                f"({held.holder_actor} on {held.holder_host}) and needs confirmation; "
                "nothing was changed",
                hint="add --yes, or answer yes at the prompt, once you know that run is dead",
            )

        def taken_over(old_run_id: str, why: str) -> None:
            if old_run_id == state.run.id:  # a resumed run journals its own restart
                return
            try:
                orphans.journal_interrupted(self.journal, old_run_id, why)
            except errors.CrystalError as exc:  # bookkeeping must not block this run
                warn(f"could not journal run {old_run_id} as interrupted: {exc.message}")

        key = state.run.lock_key
        if key is None:
            if create:
                self._create(state)
            yield
            return
        with locks_mod.hold_all(
            self.lock_backends,
            key,
            run_id=state.run.id,
            actor=state.request.actor,
            ttl=self.lock_ttl,
            warn=warn,
            break_lock=break_lock,
            taken_over=taken_over,
        ):
            if create:
                self._create(state)
            yield

    def _create(self, state: RunState) -> None:
        """Journal the new run, then the warnings its lock raised before it existed."""
        self.journal.create_run(state.run)
        state.journalled = True
        for message in state.early_warnings:
            with suppress(Exception):  # a warning must not end the run
                self.journal.add_event(
                    state.run.id, kind="warning", status="warning", message=message
                )
        state.early_warnings.clear()

    def _drive(self, state: RunState) -> RunResult:
        run = state.run
        runbook = state.request.loaded.runbook
        error: errors.CrystalError | None = None
        try:
            for i, step in enumerate(runbook.steps):
                rec = run.steps[i]
                if rec.status in journal_mod.TERMINAL_STEP:
                    continue
                try:
                    self.steps.run_step(state, step, rec, ("steps", i))
                except StepFailed as failed:
                    error = failed.error
                    run.error = rec.error
                    state.failed_step = {"id": step.id, "uses": step.uses, "error": rec.error}
                    break
        except KeyboardInterrupt:
            return self._interrupted(state)
        except errors.DiskFull as full:
            return self._interrupted(state, full=full)
        if error is not None:
            with suppress(errors.DiskFull):  # the failure itself is journalled: report it
                self._on_failure(state)
            return self._finish(state, "failed", error)
        return self._finish(state, "ok", None)

    def _interrupted(self, state: RunState, *, full: errors.DiskFull | None = None) -> RunResult:
        """End the run `interrupted`: by a signal, or because the journal's disk is full."""
        state.cancelled.set()
        run = state.run
        reason = "interrupted by a signal" if full is None else f"interrupted: {full.message}"
        busy = ("checking", "applying", "applied", "verifying")
        for rec in run.steps:
            if rec.status in busy:
                rec.status = "interrupted"
                rec.ended_at = journal_mod.now_iso()
                rec.error = reason
                with suppress(errors.DiskFull):  # the run's own end is what must be recorded
                    self.steps.save(state, rec, f"interrupted ({rec.summary or 'in progress'})")
        run.error = reason
        if full is None:
            error = errors.Interrupted(
                f"run {run.id} interrupted",
                hint=f"continue it with `crystal-runbook resume {run.id}`",
            )
        else:
            error = errors.Interrupted(
                f"run {run.id} interrupted: {full.message}; no further step was started",
                hint=f"free disk space where the journal lives, then `crystal-runbook resume "
                f"{run.id}` continues it",
            )
        return self._finish(state, "interrupted", error)

    def _finish(self, state: RunState, status: str, error: errors.CrystalError | None) -> RunResult:
        run = state.run
        run.status = status
        run.ended_at = journal_mod.now_iso()
        if error is None:
            run.error = None
        try:
            self.journal.update_run(run, event=status, message=run.error or f"run {status}")
        except errors.DiskFull as full:
            # the journal gave its space reserve back when the disk filled: try once more,
            # else say the journal still shows the run as running (resume continues it)
            try:
                self.journal.update_run(run, event=status, message=run.error or f"run {status}")
            except errors.DiskFull:
                message = (
                    f"run {run.id} ended {status}, but the journal could not record it: "
                    f"{full.message}"
                )
                self.steps.emit(state, "run", status, message)
                return RunResult(
                    run, errors.DiskFull(message, hint=full.hint), self.steps.redactor
                )
        changed = sum(1 for s in run.steps if s.changed and s.phase == "main")
        detail = f"{changed} step(s) changed something" if changed else "nothing needed changing"
        message = {
            "ok": f"run {run.id} ok: {detail}",
            "failed": f"run {run.id} failed: {run.error}",
            "interrupted": f"run {run.id} interrupted; `crystal-runbook resume {run.id}` "
            "continues it",
            "refused": f"run {run.id} refused: {run.error}",
        }[status]
        self.steps.emit(state, "run", status, message)
        return RunResult(run, error, self.steps.redactor)

    def _on_failure(self, state: RunState) -> None:
        for i, fstep in enumerate(state.request.loaded.runbook.on_failure):
            rec = journal_mod.StepRecord(
                run_id=state.run.id,
                phase="on_failure",
                index=i,
                id=fstep.id or f"on_failure-{i + 1}",
                uses=fstep.uses,
            )
            state.run.steps.append(rec)
            with suppress(StepFailed):  # journalled; the original failure stays the run's error
                self.steps.run_step(state, fstep, rec, ("on_failure", i))
