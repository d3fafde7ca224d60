"""Fake actions with observable side effects, for testing the engine's guarantees.

``fake.set`` keeps a key/value store in a JSON file under the state directory: its check reads
the key, its apply writes it and appends one line per completed apply to ``fake-applies.log``,
so a test can prove that resume never applied a finished step twice. Delays make each phase
slow enough to be killed in; ``fail_times`` and ``never_satisfied`` drive retries and failures.
"""

from __future__ import annotations

import fcntl
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import Field

from crystal_runbook import errors
from crystal_runbook.engine.registry import Action, Args, Change, Check, Outcome, StepContext

STATE_FILE = "fake-state.json"
APPLIES_LOG = "fake-applies.log"


@contextmanager
def _locked_state(state_dir: Path) -> Iterator[dict[str, Any]]:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / STATE_FILE
    with (state_dir / (STATE_FILE + ".lock")).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        before = json.dumps(data, sort_keys=True)
        yield data
        if json.dumps(data, sort_keys=True) != before:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            tmp.replace(path)


def read_state(state_dir: Path) -> dict[str, Any]:
    """The fake store's contents."""
    path = state_dir / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def applies(state_dir: Path) -> list[str]:
    """One line per completed ``fake.set`` apply: ``key=value run_id``."""
    path = state_dir / APPLIES_LOG
    return path.read_text().splitlines() if path.exists() else []


class FakeSetArgs(Args):
    key: str
    value: str
    check_delay: float = Field(default=0.0, ge=0)
    apply_delay: float = Field(default=0.0, ge=0, description="Half before the write, half after.")
    verify_delay: float = Field(default=0.0, ge=0)
    verify_after: float = Field(
        default=0.0, ge=0, description="Verify holds only this long after the write."
    )
    fail_times: int = Field(default=0, ge=0, description="Apply fails temporarily this many times.")
    never_satisfied: bool = False


class FakeSet(Action):
    """Set a key in the fake store: idempotent, observable, optionally slow or failing."""

    name = "fake.set"
    Args = FakeSetArgs
    outputs = ("key", "value", "previous")
    poll_interval = 0.05

    def check(self, args: Any, ctx: StepContext) -> Check:
        time.sleep(args.check_delay)
        with _locked_state(ctx.state_dir) as data:
            current = data.get(args.key)
        previous = ctx.resolved.get("previous", current)
        outputs = {"key": args.key, "value": args.value, "previous": previous}
        if current == args.value:
            return Check(
                satisfied=True,
                summary=f"{args.key} is {args.value}",
                outputs=outputs,
                resolved={"previous": previous},
            )
        return Check(
            satisfied=False,
            summary=f"set {args.key} to {args.value}",
            changes=(Change(args.key, current, args.value),),
            outputs=outputs,
            resolved={"previous": previous},
        )

    def apply(self, args: Any, ctx: StepContext, check: Check) -> Outcome:
        if args.fail_times:
            with _locked_state(ctx.state_dir) as data:
                failures = data.setdefault("_failures", {})
                seen = failures.get(f"{ctx.run_id}/{args.key}", 0)
                failures[f"{ctx.run_id}/{args.key}"] = seen + 1
            if seen < args.fail_times:
                raise errors.TemporaryActionError(
                    f"fake failure {seen + 1} of {args.fail_times}", retry_after=0.01
                )
        time.sleep(args.apply_delay / 2)
        with _locked_state(ctx.state_dir) as data:
            data[args.key] = args.value
            data.setdefault("_written_at", {})[args.key] = time.time()
        with (ctx.state_dir / APPLIES_LOG).open("a") as log:
            log.write(f"{args.key}={args.value} {ctx.run_id}\n")
        time.sleep(args.apply_delay / 2)
        return Outcome(changed=True, summary=f"set {args.key} to {args.value}")

    def verify(self, args: Any, ctx: StepContext, outcome: Outcome | None) -> Check:
        time.sleep(args.verify_delay)
        with _locked_state(ctx.state_dir) as data:
            current = data.get(args.key)
            written = data.get("_written_at", {}).get(args.key, 0.0)
        if args.never_satisfied:
            return Check(
                satisfied=False, summary=f"{args.key} never settles", evidence={"current": current}
            )
        if current != args.value or time.time() - written < args.verify_after:
            return Check(
                satisfied=False,
                summary=f"{args.key} is {current!r}, not yet settled",
                evidence={"current": current},
            )
        return Check(satisfied=True, summary=f"{args.key} is {args.value}")


class FakeGateArgs(Args):
    key: str
    value: str = "open"


class FakeGate(Action):
    """Read-only: holds once the fake store has ``key`` = ``value`` (a test opens the gate)."""

    name = "fake.gate"
    Args = FakeGateArgs
    poll_interval = 0.05

    def check(self, args: Any, ctx: StepContext) -> Check:
        current = read_state(ctx.state_dir).get(args.key)
        return Check(
            satisfied=current == args.value,
            summary=f"{args.key} is {current!r} (wanted {args.value!r})",
            evidence={"current": current},
        )


def set_state(state_dir: Path, key: str, value: str) -> None:
    """Set a key in the fake store from a test (e.g. to open a gate)."""
    with _locked_state(state_dir) as data:
        data[key] = value


class FakeNoopArgs(Args):
    note: str = ""


class FakeNoop(Action):
    """Read-only and always satisfied at once: measures the engine's own overhead."""

    name = "fake.noop"
    Args = FakeNoopArgs

    def check(self, args: Any, ctx: StepContext) -> Check:
        return Check(satisfied=True, summary="nothing to do")


class FakeFailArgs(Args):
    message: str = "fake failure"
    temporary: bool = False


class FakeFail(Action):
    """Always fails (permanently unless ``temporary``)."""

    name = "fake.fail"
    Args = FakeFailArgs

    def check(self, args: Any, ctx: StepContext) -> Check:
        return Check(satisfied=False, summary="fail")

    def apply(self, args: Any, ctx: StepContext, check: Check) -> Outcome:
        cls = errors.TemporaryActionError if args.temporary else errors.PermanentActionError
        raise cls(args.message, evidence="last lines\nof the fake's output")


class FakeGuardArgs(Args):
    key: str
    refuse_if: str = "refuse"
    message: str = "refused by fake.guard"
    temporary: bool = False


class FakeGuard(Action):
    """Changes nothing, but its check refuses while the fake store has ``key`` = ``refuse_if``
    (permanently, or with a temporary error): the engine's preflight and plan are tested on it."""

    name = "fake.guard"
    Args = FakeGuardArgs
    poll_interval = 0.05

    def check(self, args: Any, ctx: StepContext) -> Check:
        if read_state(ctx.state_dir).get(args.key) == args.refuse_if:
            cls = errors.TemporaryActionError if args.temporary else errors.PermanentActionError
            raise cls(args.message, hint=f"set {args.key} to something else")
        return Check(satisfied=False, summary=f"pass the guard on {args.key}")

    def apply(self, args: Any, ctx: StepContext, check: Check) -> Outcome:
        return Outcome(changed=False, summary=f"passed the guard on {args.key}")


class FakeOutputArgs(Args):
    values: dict[str, Any] = Field(default_factory=dict)


class FakeOutput(Action):
    """Read-only; returns ``values`` as its outputs (for template tests)."""

    name = "fake.output"
    Args = FakeOutputArgs
    outputs = None

    def check(self, args: Any, ctx: StepContext) -> Check:
        return Check(
            satisfied=True, summary=f"outputs {sorted(args.values)}", outputs=dict(args.values)
        )


FAKE_ROLLBACK_RUNBOOK = """\
apiVersion: crystal-runbook/v1
kind: Runbook
name: rollback
params:
  service: {type: string, required: true}
  reason: {type: string, default: "", max_length: 1000}
lock: "{{ service.name }}/{{ env }}"
steps:
  - id: undo
    uses: fake.set
    with: {key: release, value: "rolled-back-{{ run.id }}"}
"""
"""A `rollback` runbook made of `fake.set`: what `watch --auto-rollback` runs in tests; each
rollback writes key `release` in the fake store, so a test can count them."""

ACTIONS: tuple[type[Action], ...] = (
    FakeSet,
    FakeGate,
    FakeNoop,
    FakeFail,
    FakeGuard,
    FakeOutput,
)
