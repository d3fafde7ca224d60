"""`k8s.scale`: replicas, with the HorizontalPodAutoscaler warned about or adjusted."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from crystal_runbook import errors
from crystal_runbook.actions.kubernetes import _common as common
from crystal_runbook.engine.model import Duration
from crystal_runbook.engine.registry import Action, Change, Check, Outcome, StepContext
from crystal_runbook.kube import client as kube_client
from crystal_runbook.kube import resources


class ScaleArgs(common.KubeArgs):
    replicas: int = Field(ge=0, le=common.INT32_MAX)
    force: bool = Field(
        default=False, description=f"allow more than {common.MAX_REPLICAS} replicas"
    )
    hpa: Literal["warn", "adjust"] = Field(
        default="warn",
        description="when an HPA's bounds would undo the change: warn, or adjust its minReplicas",
    )
    crash_grace: Duration = 15.0


class Scale(Action):
    """Scale a Deployment (`kubectl scale`), aware of HorizontalPodAutoscalers."""

    name = "k8s.scale"
    summary = "Scale a Deployment; warns (or adjusts) when an HPA would undo it."
    Args = ScaleArgs
    outputs = ("deployment", "from_replicas", "to_replicas", "hpa")
    default_timeout = 300.0

    def check(self, args: Any, ctx: StepContext) -> Check:
        target = common.target_of(args, ctx)
        if args.replicas > common.MAX_REPLICAS and not args.force:
            raise errors.PermanentActionError(
                f"{args.replicas} replicas is more than {common.MAX_REPLICAS}",
                hint="pass force (--force) if you really mean it",
            )
        kube = kube_client.connect(target)
        deployment = common.deployment(kube, target, ctx)
        current = int((deployment.get("spec") or {}).get("replicas", 1))
        hpa = common.hpa_for(kube, target, ctx)
        outputs: dict[str, Any] = {
            "deployment": target.deployment,
            "from_replicas": current,
            "to_replicas": args.replicas,
            "hpa": hpa,
        }
        evidence: dict[str, Any] = {}
        changes = []
        summary = f"scale {target.deployment} from {current} to {args.replicas} replicas"
        if hpa is not None and not hpa["min"] <= args.replicas <= hpa["max"]:
            if args.hpa == "adjust" and args.replicas > hpa["min"]:
                changes.append(
                    Change(
                        f"hpa[{hpa['name']}].minReplicas",
                        hpa["min"],
                        min(args.replicas, hpa["max"]),
                    )
                )
            else:
                warning = (
                    f"HorizontalPodAutoscaler {hpa['name']} keeps replicas within "
                    f"{hpa['min']}..{hpa['max']} and will undo this; use --hpa adjust"
                )
                evidence["warning"] = warning
                ctx.progress(f"warning: {warning}")
                summary += f" (warning: {warning})"
        if current == args.replicas and not changes:
            return Check(
                satisfied=True,
                outputs=outputs,
                evidence=evidence,
                summary=f"{target.deployment} already has {current} replicas",
            )
        if current != args.replicas:
            changes.insert(0, Change("replicas", current, args.replicas))
        return Check(
            satisfied=False,
            changes=tuple(changes),
            outputs=outputs,
            evidence=evidence,
            summary=summary,
        )

    def apply(self, args: Any, ctx: StepContext, check: Check) -> Outcome:
        target = common.target_of(args, ctx)
        kube = kube_client.connect(target)
        hpa = check.outputs.get("hpa")
        for change in check.changes:
            if change.field.startswith("hpa[") and hpa:
                kube.json(
                    "PATCH",
                    target.path(resources.HPAS, "horizontalpodautoscalers", hpa["name"]),
                    body={"spec": {"minReplicas": change.after}},
                    content_type="application/merge-patch+json",
                    what=f"patch hpa {hpa['name']}",
                    where=target.where,
                    deadline=common.deadline(ctx),
                )
        common.patch(
            kube,
            target,
            ctx,
            {"spec": {"replicas": args.replicas}},
            "application/merge-patch+json",
            sub="scale",
        )
        return Outcome(changed=True, summary=check.summary.replace("scale ", "scaled ", 1))

    def verify(self, args: Any, ctx: StepContext, outcome: Outcome | None) -> Check:
        target = common.target_of(args, ctx)
        return common.wait_done(kube_client.connect(target), target, ctx, args.crash_grace)


# --- rollout status ------------------------------------------------------------------------
