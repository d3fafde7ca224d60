"""`metrics.check`: a runbook step that proves a trigger rule is clear (or firing).

A rollback is not done when the rollout is: the checklist's verification is "errors ceased,
performance restored". This action evaluates the same rules that started the rollback
(`inventory/triggers.yaml`, by name) or an inline query, through the same sources, and holds
when the condition is clear (``expect: clear``) or holds (``expect: firing``) now, optionally
without interruption for ``for``. Missing data never passes: "no data" is not "clear".

``rule: "*"`` checks every rollback rule of the service at once (a go/no-go gate, as
`runbooks/phase.yaml` uses it): clear when none of them holds, and with
``fail_on_firing: true`` the step fails as soon as one of them fires (its own ``for`` window
passed) instead of polling on until its timeout.

Read-only (only ``check``): the executor polls it until it holds or the step times out.
Between polls it keeps each step's rule states (trend windows, ``for``). The scrape source's
samples are kept per run and source, so the checks of one run share them: "errors ceased"
waits for the two samples ``rate()`` needs, and "performance restored" after it reuses them
instead of waiting for its own (one sample gap per rollback, not one per check). Samples
taken before the run's latest change ended (``StepContext.settled_at``: the rollout
completed) are dropped first, so every check judges only the world after the change.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

from crystal_runbook import errors
from crystal_runbook.engine.inventory import Target
from crystal_runbook.engine.model import MAX_INPUT_LENGTH, Duration
from crystal_runbook.engine.registry import Action, Args, Check, StepContext
from crystal_runbook.triggers import model
from crystal_runbook.triggers.sources import SourceKind, SourceSpec

if TYPE_CHECKING:  # loaded by the first check (or ``warm``), not when a runbook is validated
    from crystal_runbook.triggers import evaluator as evaluator_mod
    from crystal_runbook.triggers import loader, scrape

ALL_RULES = "*"
"""``rule: "*"``: every rollback rule of the service (a go/no-go gate)."""
MEMORY_STEPS = 32
"""Steps whose rule states are remembered between polls (oldest forgotten first)."""
MEMORY_RINGS = 8
"""Runs' scrape samples (per source) remembered between checks (oldest forgotten first)."""


class MetricsCheckArgs(Args):
    rule: str | None = Field(
        default=None,
        description='A rule of triggers.yaml for the run\'s service, by name; "*": every '
        "rollback rule of the service (a go/no-go gate).",
    )
    query: str | None = Field(
        default=None,
        max_length=model.MAX_QUERY_LENGTH,
        description="Inline PromQL instead of a rule (with op and threshold).",
    )
    op: model.Op = ">"
    threshold: float | None = None
    source: SourceKind | None = Field(
        default=None, description="Inline query's source; default: the environment's."
    )
    expect: Literal["clear", "firing"] = Field(
        default="clear", description="clear: the condition does not hold; firing: it holds."
    )
    for_: Duration = Field(
        default=0.0,
        alias="for",
        le=3600,
        description="The expectation must hold at every poll for this long.",
    )
    triggers: str | None = Field(
        default=None,
        max_length=MAX_INPUT_LENGTH,
        description="Triggers file (default: the workspace's inventory/triggers.yaml).",
    )
    fail_on_firing: bool = Field(
        default=False,
        description="A gate: fail at once when a checked rule fires, instead of polling on.",
    )

    @model_validator(mode="after")
    def _one_of(self) -> MetricsCheckArgs:
        if (self.rule is None) == (self.query is None):
            raise ValueError("give either `rule` (a name from triggers.yaml) or `query`")
        if self.query is not None and self.threshold is None:
            raise ValueError("an inline `query` needs a `threshold`")
        return self


class MetricsCheck(Action):
    """Holds when a trigger rule (or inline query) is clear, or firing, as expected."""

    name = "metrics.check"
    summary = "Check a trigger rule or a query (with: {rule: error-rate, expect: clear})."
    Args = MetricsCheckArgs
    outputs = ("rule", "state", "value", "threshold")
    default_timeout = 300.0
    poll_interval = 5.0
    triggers_path: ClassVar[Path] = Path("inventory") / model.FILENAME

    def __init__(self) -> None:
        self.triggers_file: Path = self.triggers_path
        """Set by the service layer to the workspace's inventory (instances are per registry)."""
        self._memory: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        self._rings: OrderedDict[tuple[str, tuple[str, ...], str], scrape.Ring] = OrderedDict()
        self._rings_lock = threading.Lock()
        self._files: dict[Path, tuple[tuple[int, int], loader.LoadedTriggers]] = {}

    def warm(self) -> None:
        """Load the trigger machinery, the Prometheus text parser, the HTTP client and the
        workspace's triggers file."""
        import prometheus_client.parser  # noqa: F401 - loaded now, used by the first scrape

        from crystal_runbook import web
        from crystal_runbook.triggers import evaluator, scrape  # noqa: F401 - loaded now

        web.client()
        self._load(self.triggers_file)

    def check(self, args: Any, ctx: StepContext) -> Check:
        from crystal_runbook.triggers import evaluator as evaluator_mod
        from crystal_runbook.triggers import scrape
        from crystal_runbook.triggers.sources import open_source

        bound = self._bind(args, ctx)
        memory = self._remember(ctx)
        ev = evaluator_mod.Evaluator(bound, states=memory.setdefault("states", {}))
        for kind in {b.source for b in bound.rules}:
            if kind == "scrape":
                ev.sources[kind] = scrape.ScrapeSource(
                    bound.specs[kind],
                    redactor=ev.redactor,
                    needs_history=ev.needs_history(kind),
                    ring=self._ring(ctx, bound.specs[kind]),
                )
            else:
                ev.sources[kind] = open_source(bound.specs[kind], redactor=ev.redactor)
        with ev:
            report = ev.evaluate()
        if args.rule == ALL_RULES:
            return self._judge_all(args, list(report.rules), memory)
        result = report.rules[0]
        return self._judge(args, result, memory)

    def _judge_all(
        self, args: Any, results: list[evaluator_mod.RuleReport], memory: dict[str, Any]
    ) -> Check:
        """Every rollback rule at once: clear when none holds (or one holds, for `firing`)."""
        firing = [r for r in results if r.state == "firing"]
        if args.fail_on_firing and firing:
            fired = "; ".join(
                f"{r.name} {'no value' if r.value is None else f'{r.value:.4g}'} ({r.condition})"
                for r in firing
            )
            raise errors.PermanentActionError(
                f"the gate fired: {fired}",
                hint="the change did not hold up; see the rules with `crystal-runbook watch "
                "SERVICE --once`",
                evidence=str([r.evidence() for r in firing])[:2000],
            )
        holding = [r for r in results if r.state in ("pending", "firing")]
        unknown = [r for r in results if r.state in ("no_data", "error")]
        ok_now = not unknown and (bool(holding) if args.expect == "firing" else not holding)
        now = time.monotonic()
        if not ok_now:
            memory.pop("ok_since", None)
        elif "ok_since" not in memory:
            memory["ok_since"] = now
        held_for = now - memory["ok_since"] if ok_now else 0.0
        satisfied = ok_now and held_for >= args.for_
        worst = (holding or unknown or results)[0]
        if unknown:
            summary = "; ".join(f"{r.name}: {r.state}: {r.message}" for r in unknown)
        elif holding:
            summary = "; ".join(
                f"{r.name} holds: {'no value' if r.value is None else f'{r.value:.4g}'} "
                f"({r.condition})"
                for r in holding
            )
        else:
            summary = f"all {len(results)} rollback rules clear"
        summary += f" (wanted {args.expect})"
        if ok_now and not satisfied:
            summary += f", held {held_for:.0f}s of {args.for_:g}s"
        return Check(
            satisfied=satisfied,
            summary=summary,
            outputs={
                "rule": ", ".join(r.name for r in results),
                "state": worst.state,
                "value": worst.as_json()["value"],
                "threshold": worst.threshold,
            },
            evidence={"metrics": worst.evidence()},
        )

    def _judge(self, args: Any, result: evaluator_mod.RuleReport, memory: dict[str, Any]) -> Check:
        holds_now = result.state in ("pending", "firing")
        known = result.state not in ("no_data", "error")
        ok_now = known and (holds_now if args.expect == "firing" else not holds_now)
        now = time.monotonic()
        if not ok_now:
            memory.pop("ok_since", None)
        elif "ok_since" not in memory:
            memory["ok_since"] = now
        held_for = now - memory["ok_since"] if ok_now else 0.0
        satisfied = ok_now and held_for >= args.for_
        value = "no value" if result.value is None else f"{result.value:.4g}"
        what = "holds" if holds_now else "is clear"
        if not known:
            summary = f"{result.name}: {result.state}: {result.message} (wanted {args.expect})"
        else:
            summary = f"{result.name} {what}: {value} ({result.condition}); wanted {args.expect}"
            if ok_now and not satisfied:
                summary += f", held {held_for:.0f}s of {args.for_:g}s"
        return Check(
            satisfied=satisfied,
            summary=summary,
            outputs={
                "rule": result.name,
                "state": result.state,
                "value": result.as_json()["value"],
                "threshold": result.threshold,
            },
            evidence={"metrics": result.evidence()},
        )

    def _ring(self, ctx: StepContext, spec: SourceSpec) -> scrape.Ring:
        """The run's samples of this source, none older than the run's latest change.

        A dry run (`plan`, `health`) gets a fresh ring: its run id is not unique.
        """
        from crystal_runbook.triggers import scrape

        if ctx.dry_run:
            return scrape.Ring()
        key = (ctx.run_id, spec.urls or (spec.url,), spec.job)
        with self._rings_lock:
            ring = self._rings.pop(key, None) or scrape.Ring()
            self._rings[key] = ring
            while len(self._rings) > MEMORY_RINGS:
                self._rings.popitem(last=False)
        if ctx.settled_at is not None:
            ring.forget_before(ctx.settled_at)
        return ring

    def _remember(self, ctx: StepContext) -> dict[str, Any]:
        key = (ctx.run_id, ctx.step_id)
        memory = self._memory.pop(key, None) or {}
        self._memory[key] = memory
        while len(self._memory) > MEMORY_STEPS:
            self._memory.popitem(last=False)
        return memory

    def _load(self, path: Path) -> loader.LoadedTriggers:
        """The triggers file, parsed again only when it changed (size or modification time)."""
        from crystal_runbook.triggers import loader

        try:
            stat = path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            return loader.load(path)  # the loader says what is wrong with the path
        cached = self._files.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        loaded = loader.load(path)
        self._files[path] = (stamp, loaded)
        return loaded

    def _bind(self, args: Any, ctx: StepContext) -> loader.Bound:
        from crystal_runbook.triggers import loader

        if ctx.service is None:
            raise errors.PermanentActionError(
                "metrics.check needs the run's service (a runbook parameter named `service`)"
            )
        try:
            target = Target.model_validate(dict(ctx.target)) if ctx.target else None
        except ValueError:
            target = None
        if args.rule is not None:
            path = Path(args.triggers) if args.triggers else self.triggers_file
            bound = loader.bind(self._load(path), ctx.service, ctx.env, target)
            if args.rule == ALL_RULES:
                chosen = tuple(b for b in bound.rules if b.rule.action == "rollback")
                if not chosen:
                    raise errors.PermanentActionError(
                        f"{bound.path}: {ctx.service} has no rule with `action: rollback` in "
                        f"{ctx.env} for `rule: \"*\"` to check",
                        hint="give the rules that decide a rollback `action: rollback`",
                    )
                return loader.Bound(bound.service, bound.env, bound.path, chosen, bound.specs)
            one = bound.rule(args.rule)
            return loader.Bound(bound.service, bound.env, bound.path, (one,), bound.specs)
        inline = model.Rule(
            name="inline-query",
            query=args.query,
            op=args.op,
            threshold=args.threshold,
            source=args.source,
        )
        return loader.bind_inline(inline, ctx.service, ctx.env, target)
