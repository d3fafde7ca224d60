"""Fake rollback actions under the real names, so a whole rollback runs without a cluster.

They go through the real executor and journal (check, apply, verify, outputs, changes,
evidence), which is all the incident document reads. Loaded like any plugin, through
`CRYSTAL_ACTION_MODULES` (the CLI tests) or `Registry.register` (in-process tests).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field

from crystal_runbook import errors
from crystal_runbook.engine.journal import now_iso
from crystal_runbook.engine.registry import Action, Args, Change, Check, Outcome, StepContext

STATE = "fake-cluster.json"


def _state(ctx: StepContext) -> dict[str, Any]:
    path = ctx.state_dir / STATE
    return json.loads(path.read_text()) if path.exists() else {"revision": 2}


def _save(ctx: StepContext, data: dict[str, Any]) -> None:
    ctx.state_dir.mkdir(parents=True, exist_ok=True)
    (ctx.state_dir / STATE).write_text(json.dumps(data))


IMAGES = {1: "registry.local/maia:1.5.0", 2: "registry.local/maia:1.5.1-bad"}
MODES = {1: "legacy", 2: "hybrid"}


class UndoArgs(Args):
    to_revision: int = 0
    set_env: dict[str, str] = Field(default_factory=dict)
    fail_verify: bool = False


class FakeUndo(Action):
    """`k8s.rollout_undo` on a pretend Deployment kept in the state directory."""

    name = "k8s.rollout_undo"
    Args = UndoArgs

    def check(self, args: Any, ctx: StepContext) -> Check:
        current = int(_state(ctx)["revision"])
        target = args.to_revision or 1
        if target not in IMAGES:
            raise errors.PermanentActionError(f"revision {target} not found for deployment maia")
        outputs = {
            "deployment": "maia",
            "namespace": "crystal",
            "from_revision": int(ctx.resolved.get("from_revision", current)),
            "to_revision": target,
            "from_images": {"maia": IMAGES[int(ctx.resolved.get("from_revision", current))]},
            "to_images": {"maia": IMAGES[target]},
            "from_env": {"CRYSTAL_MODE": MODES[current]},
            "to_env": {"CRYSTAL_MODE": "legacy", **args.set_env},
            "target_replicaset": f"maia-{target}",
        }
        resolved = {"from_revision": outputs["from_revision"], "to_revision": target}
        if current == target:
            return Check(True, f"maia already runs revision {target}", outputs=outputs)
        changes = (
            Change("revision", current, target),
            Change("image[maia]", IMAGES[current], IMAGES[target]),
            Change("env[maia].CRYSTAL_MODE", MODES[current], "legacy"),
        )
        return Check(
            False,
            f"roll maia back from revision {current} to {target}",
            changes=changes,
            outputs=outputs,
            resolved=resolved,
        )

    def apply(self, args: Any, ctx: StepContext, check: Check) -> Outcome:
        _save(ctx, {"revision": check.outputs["to_revision"], "at": now_iso()})
        return Outcome(True, check.summary.replace("roll ", "rolled ", 1))

    def verify(self, args: Any, ctx: StepContext, outcome: Outcome | None) -> Check:
        if args.fail_verify:
            return Check(False, "0 of 3 new replicas are available (CrashLoopBackOff)")
        return Check(True, "rollout complete: 3 of 3 replicas available")


class SetEnvArgs(Args):
    env: dict[str, str]


class FakeSetEnv(Action):
    """`k8s.set_env` that finds the variables already set (the undo set them)."""

    name = "k8s.set_env"
    Args = SetEnvArgs

    def check(self, args: Any, ctx: StepContext) -> Check:
        text = ", ".join(f"{k}={v}" for k, v in args.env.items())
        return Check(True, f"maia already has {text}", outputs={"deployment": "maia"})

    def apply(self, args: Any, ctx: StepContext, check: Check) -> Outcome:
        raise AssertionError("never called: the check is satisfied")


class MetricArgs(Args):
    rule: str
    value: float
    threshold: float


class FakeMetric(Action):
    """`metrics.check` that sees a fixed value, with evidence shaped like the real one's."""

    name = "metrics.check"
    Args = MetricArgs
    poll_interval = 0.01

    def check(self, args: Any, ctx: StepContext) -> Check:
        at = now_iso()
        evidence = {
            "name": args.rule,
            "state": "inactive",
            "value": args.value,
            "threshold": args.threshold,
            "op": ">",
            "history": [[at, args.value]],
        }
        return Check(
            args.value <= args.threshold,
            f"{args.rule} is clear: {args.value:g}",
            outputs={
                "rule": args.rule,
                "state": "inactive",
                "value": args.value,
                "threshold": args.threshold,
            },
            evidence={"metrics": evidence},
        )


class NotifyArgs(Args):
    text: str


class FakeNotify(Action):
    """`slack.notify` without a token: the message goes to the outbox."""

    name = "slack.notify"
    Args = NotifyArgs

    def check(self, args: Any, ctx: StepContext) -> Check:
        return Check(False, "send a notice")

    def apply(self, args: Any, ctx: StepContext, check: Check) -> Outcome:
        path = Path(ctx.state_dir) / "outbox" / f"{ctx.run_id}-{ctx.step_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"text": args.text}))
        return Outcome(True, "queued in the outbox", outputs={"outbox": str(path)})


ACTIONS: tuple[type[Action], ...] = (FakeUndo, FakeSetEnv, FakeMetric, FakeNotify)
