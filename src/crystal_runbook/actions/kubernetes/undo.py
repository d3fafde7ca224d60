"""`k8s.rollout_undo`: kubectl's `rollout undo`, checked first, one patch, verified by watch.

Requests before the patch: the check reads the Deployment and its ReplicaSets once (the
preflight's check reads them, the step's check moments later reuses them), and the apply
patches with what the check read, guarded by the Deployment's resourceVersion.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, field_validator

from crystal_runbook import errors
from crystal_runbook.actions.kubernetes import _common as common
from crystal_runbook.engine.journal import now_iso
from crystal_runbook.engine.model import Duration
from crystal_runbook.engine.registry import Action, Change, Check, Outcome, StepContext
from crystal_runbook.kube import client as kube_client
from crystal_runbook.kube import rollout


class RolloutUndoArgs(common.KubeArgs):
    to_revision: int = Field(default=0, ge=0, description="0: the previous revision")
    set_env: dict[str, str] = Field(
        default_factory=dict, description="Env overrides applied in the same patch"
    )
    containers: list[str] | None = Field(
        default=None, description="Containers for set_env; default all"
    )
    crash_grace: Duration = Field(default=15.0, description="Fail fast after pods crash this long")

    @field_validator("set_env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        return common.valid_env(value)


class RolloutUndo(Action):
    """Roll a Deployment back to a previous revision, with `kubectl rollout undo` semantics."""

    name = "k8s.rollout_undo"
    summary = (
        "Roll back a Deployment (kubectl rollout undo semantics, env overrides in the same patch)."
    )
    Args = RolloutUndoArgs
    outputs = (
        "deployment",
        "namespace",
        "from_revision",
        "to_revision",
        "from_images",
        "to_images",
        "from_env",
        "to_env",
        "target_replicaset",
        "released_at",
    )
    default_timeout = 300.0

    def __init__(self) -> None:
        self.reads = common.SharedReads()
        """What the last check of a step read, for its next check and its apply."""

    def check(self, args: Any, ctx: StepContext) -> Check:
        target = common.target_of(args, ctx)
        kube = kube_client.connect(target)
        shared = self.reads.get(ctx)  # the preflight's reads, moments ago, if any
        deployment = shared[0] if shared else common.deployment(kube, target, ctx)
        name = target.deployment
        if (deployment.get("spec") or {}).get("paused"):
            raise errors.PermanentActionError(
                f"deployment {name!r} is paused; a rollback would not roll out",
                hint=f"resume it first: kubectl -n {target.namespace} rollout resume "
                f"deployment/{name}",
            )
        owned = shared[1] if shared else common.replicasets(kube, target, deployment, ctx)
        self.reads.keep(ctx, deployment, owned)
        current_template = deployment.get("spec", {}).get("template") or {}
        if ctx.resolved.get("target_replicaset"):
            # resume: the target was decided by the first check and journalled
            chosen = next(
                (rs for rs in owned if rs["metadata"]["name"] == ctx.resolved["target_replicaset"]),
                None,
            )
            if chosen is None:
                raise errors.PermanentActionError(
                    f"replicaset {ctx.resolved['target_replicaset']} chosen by this run is gone",
                    hint="start a new rollback run",
                )
            from_revision = int(ctx.resolved["from_revision"])
            to_revision = int(ctx.resolved["to_revision"])
            released = _released_from(ctx.resolved, current_template)
        else:
            self._refuse_second_rollback(deployment, args.to_revision)
            chosen = rollout.pick_target(name, owned, args.to_revision)
            from_revision = rollout.revision_of(deployment)
            to_revision = rollout.revision_of(chosen)
            released = _released_from({}, current_template)
        desired = rollout.rollback_template(chosen, args.set_env, args.containers)
        outputs = {
            "deployment": name,
            "namespace": target.namespace,
            "from_revision": from_revision,
            "to_revision": to_revision,
            "from_images": released["from_images"],
            "to_images": rollout.images(desired),
            "from_env": released["from_env"],
            "to_env": _masked_env(desired),
            "target_replicaset": chosen["metadata"]["name"],
            # when the release being rolled back went out: its ReplicaSet's creation (the
            # incident document of a manual rollback reads the metrics from there on)
            "released_at": next(
                (
                    rs["metadata"].get("creationTimestamp")
                    for rs in owned
                    if rollout.revision_of(rs) == from_revision
                ),
                None,
            ),
        }
        resolved = {
            "target_replicaset": chosen["metadata"]["name"],
            "from_revision": from_revision,
            "to_revision": to_revision,
            # what resume reports of the release rolled back from: its images and masked env,
            # never its whole template (whose env values may hold secrets)
            **released,
        }
        if rollout.templates_equal(current_template, desired):
            ours = _rolled_back_by(deployment) == ctx.run_id
            return Check(
                satisfied=True,
                outputs=outputs,
                resolved=resolved,
                summary=f"{name} already runs revision {to_revision}'s template "
                f"({common.image_list(desired)})"
                + (" (rolled back by this run)" if ours else ""),
                by_this_run=ours,
            )
        changes = [Change("revision", from_revision, to_revision)]
        changes += common.image_changes(current_template, desired)
        changes += common.env_changes(current_template, desired)
        return Check(
            satisfied=False,
            changes=tuple(changes),
            outputs=outputs,
            resolved=resolved,
            summary=f"roll {name} back from revision {from_revision} to {to_revision} "
            f"({common.image_list(desired)})",
            evidence={"from_images": outputs["from_images"]},
        )

    @staticmethod
    def _refuse_second_rollback(deployment: Mapping[str, Any], to_revision: int) -> None:
        """Refuse `rollback` (to the previous revision) when what runs is our own rollback."""
        if to_revision:
            return
        annotations = deployment.get("metadata", {}).get("annotations") or {}
        ours = annotations.get(rollout.ROLLED_BACK_TEMPLATE)
        current = deployment.get("spec", {}).get("template") or {}
        if ours and ours == rollout.template_digest(current):
            raise errors.PermanentActionError(
                f"already rolled back from revision {annotations.get(rollout.ROLLED_BACK_FROM)} "
                f"by run {annotations.get(rollout.ROLLBACK_RUN)} at "
                f"{annotations.get(rollout.ROLLBACK_AT)}; rolling back again would return to "
                "the release that was rolled back",
                hint="pass --to-revision N to go further back (`kubectl rollout history` lists "
                "revisions)",
            )

    def apply(self, args: Any, ctx: StepContext, check: Check) -> Outcome:
        """One JSON patch of the template and annotations, guarded by a resourceVersion
        `test`. The first patch is built from what the check just read (no second read: the
        `test` refuses it if the Deployment changed since). Before every re-patch the
        Deployment is read again and, like the check, compared with the target: a patch that
        outlived its timeout (and was retried into a 409 or 422) has already done the work,
        and patching again would be a second rollout of the same template."""
        target = common.target_of(args, ctx)
        kube = kube_client.connect(target)
        shared = self.reads.get(ctx, take=True)  # the check's reads: the patch's `test` guards
        for attempt in range(3):
            if attempt == 0 and shared is not None:
                deployment, owned = shared
            else:
                deployment = common.deployment(kube, target, ctx)
                owned = common.replicasets(kube, target, deployment, ctx)
            chosen = next(
                rs for rs in owned if rs["metadata"]["name"] == check.resolved["target_replicaset"]
            )
            desired = rollout.rollback_template(chosen, args.set_env, args.containers)
            current = deployment.get("spec", {}).get("template") or {}
            if rollout.templates_equal(current, desired):
                return self._already(deployment, ctx, check, attempt)
            annotations = rollout.rollback_annotations(
                deployment,
                chosen,
                {
                    rollout.ROLLED_BACK_FROM: str(check.resolved["from_revision"]),
                    rollout.ROLLED_BACK_TO: str(check.resolved["to_revision"]),
                    rollout.ROLLED_BACK_TEMPLATE: rollout.template_digest(desired),
                    rollout.ROLLBACK_RUN: ctx.run_id,
                    rollout.ROLLBACK_AT: now_iso(),
                },
            )
            patch = [
                {
                    "op": "test",
                    "path": "/metadata/resourceVersion",
                    "value": deployment["metadata"]["resourceVersion"],
                },
                {"op": "replace", "path": "/spec/template", "value": desired},
                {"op": "replace", "path": "/metadata/annotations", "value": annotations},
            ]
            try:
                common.patch(kube, target, ctx, patch, "application/json-patch+json")
            except (kube_client.ConflictError, errors.PermanentActionError) as exc:
                # 409, or 422 from the `test` op: the Deployment changed since we read it
                # (perhaps by our own patch, answered too late): read it again, check again
                if isinstance(exc, kube_client.ConflictError) or " 422 " in exc.message:
                    ctx.progress("deployment changed while rolling back; reading it again")
                    continue
                raise
            return Outcome(changed=True, summary=check.summary.replace("roll ", "rolled ", 1))
        raise errors.TemporaryActionError(
            f"deployment {target.deployment!r} kept changing while rolling back",
            hint="someone else is changing it; stop them, then resume this run",
        )

    @staticmethod
    def _already(
        deployment: Mapping[str, Any], ctx: StepContext, check: Check, attempt: int
    ) -> Outcome:
        """The Deployment already has the rollback's template: no patch. Ours (an earlier
        attempt of this run took effect) is this run's change; anyone else's is not."""
        by = _rolled_back_by(deployment)
        if by == ctx.run_id:
            if attempt:
                ctx.progress("an earlier attempt of this rollback took effect; not patching again")
            return Outcome(
                changed=True,
                summary=check.summary.replace("roll ", "rolled ", 1)
                + " (an earlier attempt of this run took effect)",
            )
        who = f"run {by}" if by else "someone else"
        return Outcome(
            changed=False,
            summary=f"{deployment.get('metadata', {}).get('name')} already runs the target "
            f"template ({who} rolled it back meanwhile); nothing patched",
        )

    def verify(self, args: Any, ctx: StepContext, outcome: Outcome | None) -> Check:
        target = common.target_of(args, ctx)
        return common.wait_done(kube_client.connect(target), target, ctx, args.crash_grace)


def _masked_env(template: Mapping[str, Any]) -> dict[str, str]:
    """The first container's env with secret-named values masked (`valueFrom` stays so)."""
    return {k: common.mask(k, v) for k, v in rollout.env_of(template).items()}


def _released_from(
    resolved: Mapping[str, Any], current: Mapping[str, Any]
) -> dict[str, dict[str, str]]:
    """The images and masked env of the release being rolled back from: journalled by the
    first check (resume reports those, not what it finds); a run journalled before this
    (its whole ``from_template``) or a first check reads them from ``current``."""
    if isinstance(resolved.get("from_images"), Mapping):
        return {
            "from_images": dict(resolved["from_images"]),
            "from_env": dict(resolved.get("from_env") or {}),
        }
    template = resolved.get("from_template") or current
    return {"from_images": rollout.images(template), "from_env": _masked_env(template)}


def _rolled_back_by(deployment: Mapping[str, Any]) -> str | None:
    """The run id our last rollback of this Deployment recorded in its annotations."""
    annotations = deployment.get("metadata", {}).get("annotations") or {}
    value = annotations.get(rollout.ROLLBACK_RUN)
    return str(value) if value else None
