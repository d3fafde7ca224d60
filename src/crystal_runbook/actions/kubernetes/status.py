"""`k8s.rollout_status` and `k8s.logs`: read-only steps."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from crystal_runbook.actions.kubernetes import _common as common
from crystal_runbook.engine import model
from crystal_runbook.engine.model import Duration
from crystal_runbook.engine.registry import Action, Check, StepContext
from crystal_runbook.kube import client as kube_client
from crystal_runbook.kube import rollout, wait


class RolloutStatusArgs(common.KubeArgs):
    crash_grace: Duration = 15.0


class RolloutStatus(Action):
    """Wait until a Deployment's rollout completes (by watch); read-only."""

    name = "k8s.rollout_status"
    summary = "Wait for a Deployment's rollout to complete (watch; fails fast on crash loops)."
    Args = RolloutStatusArgs
    outputs = ("deployment", "revision", "images", "replicas")
    default_timeout = 300.0

    def check(self, args: Any, ctx: StepContext) -> Check:
        target = common.target_of(args, ctx)
        kube = kube_client.connect(target)
        if ctx.dry_run:
            state = rollout.rollout_progress(common.deployment(kube, target, ctx))
            return Check(satisfied=state.done, summary=state.message)
        state = wait.wait_rollout(
            kube,
            target,
            deadline=common.deadline(ctx, 300.0),
            crash_grace=args.crash_grace,
            progress=ctx.progress,
        )
        deployment = common.deployment(kube, target, ctx)
        template = deployment.get("spec", {}).get("template") or {}
        return Check(
            satisfied=state.done,
            summary=state.message,
            outputs={
                "deployment": target.deployment,
                "revision": rollout.revision_of(deployment),
                "images": rollout.images(template),
                "replicas": (deployment.get("status") or {}).get("availableReplicas", 0),
            },
        )


# --- logs ----------------------------------------------------------------------------------


class LogsArgs(common.KubeArgs):
    since: Duration | None = Field(default=None, description="only lines newer than this")
    tail: int | None = Field(default=100, ge=1, le=10_000, description="lines per pod")
    grep: str | None = Field(default=None, max_length=200, description="regular expression")
    container: str | None = None
    max_lines: int = Field(default=1000, ge=1, le=100_000)

    @field_validator("grep")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        return model.regex(value, "grep")


class Logs(Action):
    """Recent log lines of every pod of a Deployment, prefixed with the pod name."""

    name = "k8s.logs"
    summary = "Collect recent logs of every pod of a Deployment (since, tail, grep)."
    Args = LogsArgs
    outputs = ("lines", "pods")

    def check(self, args: Any, ctx: StepContext) -> Check:
        from crystal_runbook.kube import logs as kube_logs

        target = common.target_of(args, ctx)
        lines = list(
            kube_logs.recent(
                kube_client.connect(target),
                target,
                since=args.since,
                tail=args.tail,
                grep=args.grep,
                container=args.container or target.container,
                limit=args.max_lines,
                deadline=common.deadline(ctx),
            )
        )
        pods = sorted({line.split(" ", 1)[0] for line in lines})
        return Check(
            satisfied=True,
            summary=f"{len(lines)} lines from {len(pods)} pods",
            outputs={"lines": lines, "pods": pods},
        )
