"""Running one step: check, apply only if needed, verify, journalling every transition.

This is where the engine's step guarantees live (design.md section 1):

- ``check`` is read-only and decides whether ``apply`` runs at all, so a second run of the
  same runbook applies nothing and says so;
- the intent (the changes the check found) is committed to the journal before ``apply``;
- a temporary failure (429, 5xx, dropped connection) is retried, re-checking first, because a
  request that "failed" may have taken effect;
- ``verify`` (or a read-only check) is retried with tenacity within the step's `retry` and
  `timeout` until it holds, and fails with the last evidence when it does not;
- decisions the first check made (``Check.resolved``, e.g. the rollback's target revision)
  are journalled and handed back on resume, so a resumed step never re-resolves its target.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from tenacity import RetryCallState, Retrying, retry_if_exception, retry_if_result

from crystal_runbook import errors
from crystal_runbook.engine import durations, templating, validation
from crystal_runbook.engine import journal as journal_mod
from crystal_runbook.engine.events import Event, Sink
from crystal_runbook.engine.model import FailureStep, Retry, Step
from crystal_runbook.engine.registry import (
    Action,
    Change,
    Check,
    Outcome,
    Registry,
    StepContext,
)
from crystal_runbook.engine.secrets import MASK, Redactor

if TYPE_CHECKING:
    from crystal_runbook.engine.executor import Request

APPLY_TRIES = 3
"""Tries of an apply (or a single check) that fails with a temporary error."""

Loc = tuple[str | int, ...]


class StepFailed(Exception):
    """A step failed; ``error`` is what ended it (its exit code is the run's)."""

    def __init__(self, error: errors.CrystalError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass
class RunState:
    """What a run knows while it goes: its record, and what templates can see."""

    request: Request
    run: journal_mod.RunRecord
    steps_vars: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed_step: dict[str, Any] | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    drift_others: list[journal_mod.RunRecord] = field(default_factory=list)
    """Runs on the same lock key that finished since this one started (`resume`)."""
    journalled: bool = False
    """Whether the run is in the journal yet (its lock is taken before it is created)."""
    early_warnings: list[str] = field(default_factory=list)
    """Warnings raised before the run was journalled (a lock taken over), kept for it."""
    warmed: bool = False
    """Whether the later steps' actions were warmed up (once per run, see ``_warm_later``)."""

    def template_vars(self) -> dict[str, Any]:
        return template_vars(
            self.request,
            run_id=self.run.id,
            started_at=self.run.started_at,
            steps=self.steps_vars,
            failed_step=self.failed_step,
        )

    def remember(self, rec: journal_mod.StepRecord) -> None:
        """Make a main step's outcome visible to later templates as ``steps.<id>``."""
        if rec.phase == "main":
            self.steps_vars[rec.id] = {
                "outputs": rec.outputs,
                "status": rec.status,
                "changed": rec.changed,
            }


def template_vars(
    request: Request,
    *,
    run_id: str,
    started_at: str,
    steps: Mapping[str, Any],
    failed_step: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The names a template sees (design.md section 5)."""
    names: dict[str, Any] = {
        "params": request.params,
        "env": request.env,
        "service": {"name": request.service, **request.service_info},
        "target": request.target,
        "run": {
            "id": run_id,
            "actor": request.actor,
            "started_at": started_at,
            "drill": request.drill,
        },
        "steps": steps,
    }
    if failed_step is not None:
        names["failed_step"] = failed_step
    return names


class StepRunner:
    """Runs single steps for the executor and journals each transition."""

    def __init__(
        self,
        *,
        registry: Registry,
        journal: journal_mod.Journal,
        state_dir: Path,
        sink: Sink,
        redactor: Redactor,
        confirm: Callable[[str], bool] | None,
    ) -> None:
        self.registry = registry
        self.journal = journal
        self.state_dir = state_dir
        self.sink = sink
        self.redactor = redactor
        self.confirm = confirm
        self._settle_lock = threading.Lock()

    # -- journal and events ------------------------------------------------------------------

    def save(
        self,
        state: RunState,
        rec: journal_mod.StepRecord,
        message: str,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        """Commit the step's new state, then tell the sinks."""
        self.journal.save_step(rec, message=message, data=data)
        self.emit(state, "step", rec.status, message, rec, data=data)

    def emit(
        self,
        state: RunState,
        kind: str,
        status: str,
        message: str,
        step: journal_mod.StepRecord | None = None,
        *,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        extra: dict[str, Any] = dict(data or {})
        if step is not None:
            extra.update(attempts=step.attempts, started_at=step.started_at)
        self.sink(
            Event(
                kind=kind,
                run_id=state.run.id,
                status=status,
                message=self.redactor.text(message),
                at=journal_mod.now_iso(),
                step_id=step.id if step else None,
                uses=step.uses if step else None,
                phase=step.phase if step else "main",
                data=self.redactor.data(extra),
            )
        )

    def progress(self, state: RunState, rec: journal_mod.StepRecord, message: str) -> None:
        """A line of progress from inside a step: journalled and shown."""
        self.journal.add_event(
            state.run.id, step_id=rec.id, kind="progress", status=rec.status, message=message
        )
        self.emit(state, "progress", rec.status, message, rec)

    def settle(
        self,
        state: RunState,
        rec: journal_mod.StepRecord,
        summary: str,
        outputs: Mapping[str, Any],
    ) -> None:
        """Journal the final outputs of work a finished step left going on (called from the
        thread that did it): the step's outputs become these, and an event says so."""
        with self._settle_lock:
            rec.outputs = dict(outputs)
            self.save(state, rec, f"settled: {summary}")
            state.remember(rec)

    # -- one step ----------------------------------------------------------------------------

    def run_step(
        self, state: RunState, step: Step | FailureStep, rec: journal_mod.StepRecord, loc: Loc
    ) -> None:
        """Run ``step``; on failure journal it and raise ``StepFailed``.

        KeyboardInterrupt and ``errors.DiskFull`` (the journal cannot record the next
        transition) pass through untouched: the executor journals the interruption.
        """
        try:
            self._execute(state, step, rec, loc)
        except errors.DiskFull:
            raise
        except errors.CrystalError as exc:
            self._fail(state, rec, exc)
        except Exception as exc:  # noqa: BLE001 - an action's bug must fail the step, not the tool
            self._fail(
                state,
                rec,
                errors.ActionError(
                    f"unexpected {type(exc).__name__}: {exc}",
                    hint="this is a bug in the action; the journal has the details",
                ),
            )

    def _fail(self, state: RunState, rec: journal_mod.StepRecord, exc: errors.CrystalError) -> None:
        if isinstance(exc, errors.ActionError):
            exc.step = rec.id
        rec.status = "failed"
        rec.error = f"step {rec.id!r} ({rec.uses}): {exc.message}"
        rec.ended_at = journal_mod.now_iso()
        evidence = getattr(exc, "evidence", None)
        if evidence:
            rec.evidence = {**rec.evidence, "tail": evidence}
        self.save(state, rec, rec.error + (f" (hint: {exc.hint})" if exc.hint else ""))
        state.remember(rec)
        raise StepFailed(exc)

    def _execute(
        self, state: RunState, step: Step | FailureStep, rec: journal_mod.StepRecord, loc: Loc
    ) -> None:
        action = self.registry.get(step.uses)
        names = state.template_vars()
        rec.started_at = rec.started_at or journal_mod.now_iso()
        rec.error = None
        rec.ended_at = None
        if step.when is not None and not self._evaluate(state, step.when, names, (*loc, "when")):
            rec.status, rec.changed, rec.ended_at = "skipped", False, journal_mod.now_iso()
            self.save(state, rec, "skipped: `when` is false")
            state.remember(rec)
            return
        # a change this run journalled as intended (or applied) before it stopped: if the
        # check now finds it done, it is this run's change, not "already so" (resume)
        intended = list(rec.changes) if rec.status in _STOPPED_MIDWAY else []
        args = self._render_args(state, step, action, names, (*loc, "with"))
        ctx = self._context(state, step, action, rec)
        policy = step.retry or Retry.model_construct(  # bounded by the deadline instead
            attempts=1_000_000, delay=action.poll_interval, backoff=1.0, max_delay=30.0
        )
        outcome: Outcome | None = None

        rec.status = "checking"
        self.save(state, rec, "checking")
        if action.read_only:
            check = self._poll(
                state, rec, lambda: action.check(args, ctx), policy=policy, ctx=ctx, what="check"
            )
            rec.changed = False
        else:
            check = self._call(lambda: action.check(args, ctx), ctx.deadline)
            if check.resolved and not rec.resolved:
                rec.resolved = dict(check.resolved)
                ctx.resolved = dict(check.resolved)
            if check.satisfied and intended and check.by_this_run is not False:
                outcome = self._applied_before(state, rec, check)
                check = dataclasses.replace(check, summary=outcome.summary)
            elif check.satisfied:
                rec.changes = [_change(c) for c in check.changes]
                rec.changed = False
                rec.attempts = max(rec.attempts, 1)
            else:
                rec.changes = [_change(c) for c in check.changes]
                outcome = self._apply(state, rec, action, args, ctx=ctx, check=check)
        rec.summary = check.summary
        rec.evidence = {**rec.evidence, **check.evidence}
        outputs = {**check.outputs, **(outcome.outputs if outcome else {})}
        if action.verifies:
            rec.status = "verifying"
            self.save(state, rec, "verifying")
            warming = self._warm_later(state, rec)
            verified = self._poll(
                state,
                rec,
                lambda: action.verify(args, ctx, outcome),
                policy=policy,
                ctx=ctx,
                what="verify",
            )
            if warming is not None:  # normally long done: the wait took longer
                warming.join()
            outputs.update(verified.outputs)
            rec.evidence = {**rec.evidence, **verified.evidence}
        self._done(state, rec, outputs, outcome)

    def _warm_later(self, state: RunState, rec: journal_mod.StepRecord) -> threading.Thread | None:
        """While this step waits for the world (a rollout), load what the later steps and
        the `on_failure` steps will need (``Action.warm``) on a background thread, once per
        run: the wait is idle time, the loading would otherwise come after it."""
        if state.warmed or rec.phase != "main":
            return None
        state.warmed = True
        runbook = state.request.loaded.runbook
        later = [s.uses for s in runbook.steps[rec.index + 1 :]]
        later += [s.uses for s in runbook.on_failure]
        if not later:
            return None
        thread = threading.Thread(
            target=self.registry.warm, args=(later,), name="warm-up", daemon=True
        )
        thread.start()
        return thread

    def _done(
        self,
        state: RunState,
        rec: journal_mod.StepRecord,
        outputs: dict[str, Any],
        outcome: Outcome | None,
    ) -> None:
        rec.outputs = outputs
        rec.status = "ok"
        rec.ended_at = journal_mod.now_iso()
        if outcome is not None:
            message = f"done: {outcome.summary or rec.summary}"
        elif self.registry.get(rec.uses).read_only:
            message = f"holds: {rec.summary}" if rec.summary else "holds"
        else:
            message = f"no change needed: {rec.summary}" if rec.summary else "no change needed"
        self.save(state, rec, message)
        state.remember(rec)

    def _context(
        self,
        state: RunState,
        step: Step | FailureStep,
        action: Action,
        rec: journal_mod.StepRecord,
    ) -> StepContext:
        """What the action may know, with the deadline from `timeout` (or its default)."""
        request = state.request
        if step.timeout is not None:
            timeout: float | None = step.timeout
        else:
            timeout = None if step.retry is not None else action.default_timeout
        return StepContext(
            run_id=state.run.id,
            step_id=rec.id,
            env=request.env,
            actor=request.actor,
            service=request.service,
            target=request.target,
            state_dir=self.state_dir,
            assume_yes=request.assume_yes,
            interactive=request.interactive,
            drill=request.drill,
            resolved=dict(rec.resolved),
            confirm=self.confirm,
            cancelled=state.cancelled,
            deadline=time.monotonic() + timeout if timeout else None,
            progress=lambda message: self.progress(state, rec, message),
            settled_at=self._settled_at(state, rec),
            settle=lambda summary, outputs: self.settle(state, rec, summary, outputs),
        )

    def recheck(
        self,
        state: RunState,
        step: Step | FailureStep,
        rec: journal_mod.StepRecord,
        loc: Loc,
        *,
        seconds: float,
    ) -> Check:
        """The step's check now, read-only, as the run sees it (its earlier steps' outputs,
        its journalled decisions): what `resume` asks to find drift.

        Raises:
            errors.CrystalError: the check could not be made.
        """
        action = self.registry.get(step.uses)
        args = self._render_args(state, step, action, state.template_vars(), (*loc, "with"))
        ctx = self._context(state, step, action, rec)
        ctx.dry_run = True
        ctx.deadline = time.monotonic() + seconds
        return self._call(lambda: action.check(args, ctx), ctx.deadline)

    def _settled_at(self, state: RunState, current: journal_mod.StepRecord) -> float | None:
        """When the run's latest step that may have changed something ended (epoch seconds).

        Any step with an ``apply`` counts, changed or not (its verify may have waited on a
        change); a `uses:` this registry does not know counts too.
        """
        ends = [
            journal_mod.parse_iso(rec.ended_at).timestamp()
            for rec in state.run.steps
            if rec is not current
            and rec.ended_at
            and rec.status != "skipped"
            and (rec.uses not in self.registry or not self.registry.get(rec.uses).read_only)
        ]
        return max(ends, default=None)

    def _evaluate(
        self, state: RunState, expression: str, names: Mapping[str, Any], loc: Loc
    ) -> Any:
        try:
            return templating.evaluate(expression, names, loc)
        except templating.RenderError as exc:
            problem = state.request.loaded.source.problem(exc.loc, exc.message)
            raise errors.PermanentActionError(str(problem)) from None

    def _render_args(
        self,
        state: RunState,
        step: Step | FailureStep,
        action: Action,
        names: Mapping[str, Any],
        loc: Loc,
    ) -> Any:
        source = state.request.loaded.source
        try:
            rendered = templating.render(step.with_, names, loc, markup=action.markup)
        except templating.RenderError as exc:
            raise errors.PermanentActionError(str(source.problem(exc.loc, exc.message))) from None
        try:
            return action.Args.model_validate(rendered)
        except ValidationError as exc:
            problems = validation.problems(source, exc, prefix=loc)
            raise errors.PermanentActionError("; ".join(str(p) for p in problems)) from None

    def _apply(
        self,
        state: RunState,
        rec: journal_mod.StepRecord,
        action: Action,
        args: Any,
        *,
        ctx: StepContext,
        check: Check,
    ) -> Outcome:
        deadline = ctx.deadline
        for attempt in range(1, APPLY_TRIES + 1):
            rec.status = "applying"
            rec.attempts += 1
            intent = "; ".join(c.render() for c in check.changes) or check.summary or "apply"
            self.save(
                state,
                rec,
                f"applying: {intent}",
                data={"intent": rec.changes, "summary": check.summary},
            )
            try:
                outcome = action.apply(args, ctx, check)
            except errors.TemporaryActionError as exc:
                if attempt == APPLY_TRIES or _past(deadline):
                    raise
                self.progress(state, rec, f"temporary failure, retrying: {exc.message}")
                time.sleep(_bounded(exc.retry_after or float(attempt), deadline))
                check = self._call(lambda: action.check(args, ctx), deadline)
                if not check.satisfied:
                    continue
                outcome = Outcome(changed=True, summary=check.summary or "applied")
            rec.status = "applied"
            rec.changed = outcome.changed
            rec.evidence = {**rec.evidence, **outcome.evidence}
            self.save(state, rec, f"applied: {outcome.summary or check.summary}")
            return outcome
        raise AssertionError("unreachable")  # pragma: no cover

    def _applied_before(
        self, state: RunState, rec: journal_mod.StepRecord, check: Check
    ) -> Outcome:
        """The check finds done what this run had journalled as its intent before it
        stopped (killed mid-apply, or interrupted after it): the run's own change, kept in
        the journal as applied with its intent, and not applied a second time."""
        summary = f"applied by this run before it stopped: {check.summary}"
        rec.status = "applied"
        rec.changed = True
        rec.attempts = max(rec.attempts, 1)
        self.save(state, rec, f"applied: {summary}", data={"intent": rec.changes})
        return Outcome(changed=True, summary=summary)

    def _call(self, fn: Callable[[], Check], deadline: float | None) -> Check:
        """Call a read-only ``fn``, retrying temporary errors a few times within ``deadline``."""
        for attempt in range(1, APPLY_TRIES + 1):
            try:
                return fn()
            except errors.TemporaryActionError as exc:
                if attempt == APPLY_TRIES or _past(deadline):
                    raise
                time.sleep(_bounded(exc.retry_after or 0.5 * attempt, deadline))
        raise AssertionError("unreachable")  # pragma: no cover

    def _poll(
        self,
        state: RunState,
        rec: journal_mod.StepRecord,
        fn: Callable[[], Check],
        *,
        policy: Retry,
        ctx: StepContext,
        what: str,
    ) -> Check:
        """Call ``fn`` until it is satisfied, the attempts run out or the deadline passes.

        A read-only step's checks are its attempts (``rec.attempts``); the polls of a
        verification are not: a step that applied once and then waited for its rollout made
        one attempt, however often the rollout was looked at.
        """
        deadline = ctx.deadline
        started = time.monotonic()
        polls = 0

        def stop(retry_state: RetryCallState) -> bool:
            return retry_state.attempt_number >= policy.attempts or _past(deadline)

        def wait(retry_state: RetryCallState) -> float:
            outcome = retry_state.outcome
            failure = outcome.exception() if outcome is not None and outcome.failed else None
            retry_after = getattr(failure, "retry_after", None)
            base = policy.delay * policy.backoff ** (retry_state.attempt_number - 1)
            return _bounded(float(retry_after or min(base, policy.max_delay)), deadline)

        def attempt() -> Check:
            nonlocal polls
            polls += 1
            if what == "check":
                rec.attempts += 1
            result = fn()
            if not result.satisfied and polls % 5 == 0:
                self.progress(state, rec, f"{what} try {polls}: {result.summary}")
            return result

        def give_up(retry_state: RetryCallState) -> Check | None:
            return retry_state.outcome.result() if retry_state.outcome is not None else None

        retrying = Retrying(
            stop=stop,
            wait=wait,
            reraise=True,
            retry=retry_if_result(lambda c: not c.satisfied)
            | retry_if_exception(lambda e: isinstance(e, errors.TemporaryActionError)),
            retry_error_callback=give_up,
        )
        result: Check | None = retrying(attempt)
        if result is not None and result.satisfied:
            return result
        elapsed = durations.format_duration(time.monotonic() - started)
        summary = result.summary if result is not None else "no result"
        evidence = dict(result.evidence) if result is not None else {}
        if evidence:
            rec.evidence = {**rec.evidence, **evidence}
        raise errors.VerificationFailed(
            f"{what} did not hold after {polls} tr{'y' if polls == 1 else 'ies'} in {elapsed}: "
            f"{summary}",
            hint="the journal has the evidence; fix the cause, then "
            f"`crystal-runbook resume {state.run.id}` tries again",
            evidence=str(evidence) if evidence else None,
        )


_STOPPED_MIDWAY = frozenset({"applying", "applied", "verifying", "interrupted", "failed"})
"""Step states in which a journalled intent may have been applied already."""


def _change(change: Change) -> dict[str, Any]:
    """A change as journalled: a secret one keeps only whether it was set (never its value)."""

    def shown(value: Any) -> Any:
        return MASK if change.secret and value is not None else value

    return {
        "field": change.field,
        "before": shown(change.before),
        "after": shown(change.after),
        "secret": change.secret,
    }


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _bounded(delay: float, deadline: float | None) -> float:
    if deadline is None:
        return max(0.0, delay)
    return max(0.0, min(delay, deadline - time.monotonic()))
