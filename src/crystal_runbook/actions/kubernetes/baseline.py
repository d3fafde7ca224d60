"""`k8s.baseline` and `k8s.restore`: record a Deployment as it is, and roll forward to it.

A rollback drill must leave the service exactly as it found it. `kubectl rollout undo` a
second time would get close, but "previous" is then whatever the rollback left behind, and
the env overrides of the rollback (legacy mode) would stay. So a drill records a baseline
first and restores it by rolling *forward* to the recorded template:

- ``k8s.baseline`` (read-only) records the revision, the ReplicaSet that runs it, the pod
  template (its digest, and a copy with secret-looking env values masked: the journal never
  holds a secret), images, env, replicas, the HorizontalPodAutoscaler if any, the
  annotations, and which pods were not Ready. It refuses a paused Deployment or one whose
  rollout has not completed: there is no settled state to come back to.
- ``k8s.restore`` takes that record (``with: {baseline: "{{ steps.baseline.outputs }}"}``)
  and, in one JSON patch guarded by the resourceVersion, puts back the template (CRYSTAL_MODE
  as it was), the annotations and, unless an HPA owns them, the replicas. The template is
  read from the baseline's ReplicaSet and must match the recorded digest (the recorded copy
  is used when the ReplicaSet is gone and nothing in it was masked). Satisfied when the
  Deployment already runs the baseline; verified by watching the rollout, then by comparing
  the template's digest and the replicas with the record.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from crystal_runbook import errors
from crystal_runbook.actions.kubernetes import _common as common
from crystal_runbook.engine.model import Duration
from crystal_runbook.engine.registry import Action, Args, Change, Check, Outcome, StepContext
from crystal_runbook.engine.secrets import MASK, looks_secret
from crystal_runbook.kube import client as kube_client
from crystal_runbook.kube import resources, rollout

HIDDEN_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})
"""Annotations not recorded (large, and restored by whoever applies next)."""


def masked_template(template: dict[str, Any]) -> dict[str, Any]:
    """``template`` with the values of secret-looking env variables replaced by the mask."""
    result = copy.deepcopy(template)
    for container in result.get("spec", {}).get("containers") or []:
        for entry in container.get("env") or []:
            if "value" in entry and looks_secret(str(entry.get("name", ""))):
                entry["value"] = MASK
    return result


def _pods_not_ready(
    kube: kube_client.Kube, target: kube_client.KubeTarget, dep: dict[str, Any], ctx: StepContext
) -> tuple[int, list[str]]:
    """(Ready pods, names of pods that are not Ready), terminating pods left out."""
    pods, _ = resources.pods(kube, target, rollout.selector_string(dep), common.deadline(ctx))
    ready, not_ready = 0, []
    for pod in pods:
        if pod.get("metadata", {}).get("deletionTimestamp"):
            continue
        conditions = (pod.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            ready += 1
        else:
            not_ready.append(str(pod.get("metadata", {}).get("name", "?")))
    return ready, sorted(not_ready)


class BaselineArgs(common.KubeArgs):
    pass


class Baseline(Action):
    """Record a Deployment's settled state (read-only) for `k8s.restore` to come back to."""

    name = "k8s.baseline"
    summary = "Record a Deployment's revision, template, images, env, replicas and HPA."
    Args = BaselineArgs
    outputs = (
        "deployment",
        "namespace",
        "revision",
        "replicaset",
        "template",
        "template_digest",
        "images",
        "env",
        "replicas",
        "hpa",
        "annotations",
        "pods_ready",
        "pods_not_ready",
    )

    def check(self, args: Any, ctx: StepContext) -> Check:
        target = common.target_of(args, ctx)
        kube = kube_client.connect(target)
        dep = common.deployment(kube, target, ctx)
        name = target.deployment
        spec = dep.get("spec") or {}
        if spec.get("paused"):
            raise errors.PermanentActionError(
                f"deployment {name!r} is paused: a drill needs a settled state to restore",
                hint=f"resume it first: kubectl -n {target.namespace} rollout resume "
                f"deployment/{name}",
            )
        progress = rollout.rollout_progress(dep)
        if not progress.done:
            raise errors.PermanentActionError(
                f"deployment {name!r} is not settled ({progress.message}): a drill needs a "
                "completed rollout to come back to",
                hint="wait for the rollout (`kubectl rollout status`), then start the drill",
            )
        template = spec.get("template") or {}
        owned = common.replicasets(kube, target, dep, ctx)
        running = next(
            (
                rs
                for rs in owned
                if rollout.templates_equal(rs.get("spec", {}).get("template") or {}, template)
            ),
            None,
        )
        ready, not_ready = _pods_not_ready(kube, target, dep, ctx)
        hpa = common.hpa_for(kube, target, ctx)
        annotations = {
            k: v
            for k, v in (dep.get("metadata", {}).get("annotations") or {}).items()
            if k not in HIDDEN_ANNOTATIONS
        }
        revision = rollout.revision_of(dep)
        images = rollout.images(template)
        outputs: dict[str, Any] = {
            "deployment": name,
            "namespace": target.namespace,
            "revision": revision,
            "replicaset": None if running is None else running["metadata"]["name"],
            "template": masked_template(
                rollout.rollback_template({"spec": {"template": template}})
            ),
            "template_digest": rollout.template_digest(template),
            "images": images,
            "env": {k: common.mask(k, v) for k, v in rollout.env_of(template).items()},
            "replicas": int(spec.get("replicas", 1)),
            "hpa": hpa,
            "annotations": annotations,
            "pods_ready": ready,
            "pods_not_ready": not_ready,
        }
        unready = f"; not Ready: {', '.join(not_ready)}" if not_ready else ""
        return Check(
            satisfied=True,
            summary=f"{name} at revision {revision} ({common.image_list(template)}), "
            f"{outputs['replicas']} replicas, {ready} Ready{unready}"
            + (f", HPA {hpa['name']} {hpa['min']}..{hpa['max']}" if hpa else ""),
            outputs=outputs,
            evidence={"pods_not_ready": not_ready} if not_ready else {},
        )


class Recorded(BaseModel):
    """What `k8s.baseline` recorded (its outputs), as `k8s.restore` needs it."""

    model_config = ConfigDict(extra="ignore")

    deployment: str
    namespace: str
    revision: int
    replicaset: str | None = None
    template: dict[str, Any]
    template_digest: str
    images: dict[str, str] = Field(default_factory=dict)
    replicas: int = Field(ge=0)
    hpa: dict[str, Any] | None = None
    annotations: dict[str, str] = Field(default_factory=dict)


class RestoreArgs(Args):
    baseline: Recorded = Field(description='The baseline: "{{ steps.<baseline step>.outputs }}"')
    crash_grace: Duration = Field(default=15.0, description="Fail fast after pods crash this long")


def _annotations(current: dict[str, Any], recorded: dict[str, str]) -> dict[str, str]:
    """The recorded annotations, with the controller's (revision and the like) as they are now."""
    kept = {
        k: v
        for k, v in current.items()
        if k in rollout.SKIPPED_ANNOTATIONS or k in HIDDEN_ANNOTATIONS
    }
    ours = {k: v for k, v in recorded.items() if k not in rollout.SKIPPED_ANNOTATIONS}
    return {**kept, **ours}


class Restore(Action):
    """Roll a Deployment forward to a baseline recorded by `k8s.baseline` (not a second undo)."""

    name = "k8s.restore"
    summary = "Roll a Deployment forward to a recorded baseline: template, annotations, replicas."
    Args = RestoreArgs
    outputs = (
        "deployment",
        "from_revision",
        "baseline_revision",
        "images",
        "env",
        "replicas",
        "revision",
        "pods_ready",
    )
    default_timeout = 300.0

    def _target(self, args: Any, ctx: StepContext) -> kube_client.KubeTarget:
        recorded: Recorded = args.baseline
        return common.target_of(
            common.KubeArgs(deployment=recorded.deployment, namespace=recorded.namespace), ctx
        )

    def _desired(
        self, recorded: Recorded, owned: list[dict[str, Any]], name: str
    ) -> dict[str, Any]:
        rs = next((r for r in owned if r["metadata"]["name"] == recorded.replicaset), None)
        if rs is not None:
            template = rollout.rollback_template(rs)
            if rollout.template_digest(template) == recorded.template_digest:
                return template
        if rollout.template_digest(recorded.template) == recorded.template_digest:
            return copy.deepcopy(recorded.template)
        raise errors.PermanentActionError(
            f"cannot restore {name!r}: the baseline's ReplicaSet {recorded.replicaset} no longer "
            "holds its template, and the recorded copy has masked secret values",
            hint=f"roll forward by hand: kubectl rollout undo deployment/{name} "
            f"--to-revision=<the revision running {', '.join(recorded.images.values())}>",
        )

    def check(self, args: Any, ctx: StepContext) -> Check:
        recorded: Recorded = args.baseline
        target = self._target(args, ctx)
        kube = kube_client.connect(target)
        dep = common.deployment(kube, target, ctx)
        name = target.deployment
        current = dep.get("spec", {}).get("template") or {}
        desired = self._desired(recorded, common.replicasets(kube, target, dep, ctx), name)
        replicas = None if recorded.hpa else recorded.replicas
        now_replicas = int((dep.get("spec") or {}).get("replicas", 1))
        annotations = dep.get("metadata", {}).get("annotations") or {}
        wanted = _annotations(annotations, recorded.annotations)
        from_revision = rollout.revision_of(dep)
        outputs: dict[str, Any] = {
            "deployment": name,
            "from_revision": from_revision,
            "baseline_revision": recorded.revision,
            "images": rollout.images(desired),
            "env": {k: common.mask(k, v) for k, v in rollout.env_of(desired).items()},
            "replicas": now_replicas if replicas is None else replicas,
        }
        changes: list[Change] = []
        if not rollout.templates_equal(current, desired):
            changes.append(
                Change(
                    "template",
                    f"revision {from_revision}",
                    f"baseline (revision {recorded.revision})",
                )
            )
            changes += common.image_changes(current, desired)
            changes += common.env_changes(current, desired)
        if replicas is not None and replicas != now_replicas:
            changes.append(Change("replicas", now_replicas, replicas))
        for key in sorted(set(annotations) | set(wanted)):
            if annotations.get(key) != wanted.get(key):
                changes.append(Change(f"annotation[{key}]", annotations.get(key), wanted.get(key)))
        if not changes:
            return Check(
                satisfied=True,
                outputs=outputs,
                summary=f"{name} already runs its baseline ({common.image_list(desired)}, "
                f"{outputs['replicas']} replicas)",
            )
        mode = outputs["env"].get("CRYSTAL_MODE")
        return Check(
            satisfied=False,
            changes=tuple(changes),
            outputs=outputs,
            summary=f"roll {name} forward to its baseline ({common.image_list(desired)}"
            + (f", CRYSTAL_MODE={mode}" if mode is not None else "")
            + f", {outputs['replicas']} replicas)",
        )

    def apply(self, args: Any, ctx: StepContext, check: Check) -> Outcome:
        recorded: Recorded = args.baseline
        target = self._target(args, ctx)
        kube = kube_client.connect(target)
        for _attempt in range(3):
            dep = common.deployment(kube, target, ctx)
            desired = self._desired(
                recorded, common.replicasets(kube, target, dep, ctx), target.deployment
            )
            annotations = _annotations(
                dep.get("metadata", {}).get("annotations") or {}, recorded.annotations
            )
            patch: list[dict[str, Any]] = [
                {
                    "op": "test",
                    "path": "/metadata/resourceVersion",
                    "value": dep["metadata"]["resourceVersion"],
                },
                {"op": "replace", "path": "/spec/template", "value": desired},
                {"op": "replace", "path": "/metadata/annotations", "value": annotations},
            ]
            if not recorded.hpa:
                patch.append(
                    {"op": "replace", "path": "/spec/replicas", "value": recorded.replicas}
                )
            try:
                common.patch(kube, target, ctx, patch, "application/json-patch+json")
            except (kube_client.ConflictError, errors.PermanentActionError) as exc:
                # 409, or 422 from the `test` op: the Deployment changed since we read it
                if isinstance(exc, kube_client.ConflictError) or " 422 " in exc.message:
                    ctx.progress("deployment changed while restoring; re-reading")
                    continue
                raise
            return Outcome(changed=True, summary=check.summary.replace("roll ", "rolled ", 1))
        raise errors.TemporaryActionError(
            f"deployment {target.deployment!r} kept changing while restoring its baseline",
            hint="someone else is changing it; stop them, then resume this run",
        )

    def verify(self, args: Any, ctx: StepContext, outcome: Outcome | None) -> Check:
        recorded: Recorded = args.baseline
        target = self._target(args, ctx)
        kube = kube_client.connect(target)
        done = common.wait_done(kube, target, ctx, args.crash_grace)
        if not done.satisfied:
            return done
        dep = common.deployment(kube, target, ctx)
        template = dep.get("spec", {}).get("template") or {}
        replicas = int((dep.get("spec") or {}).get("replicas", 1))
        if rollout.template_digest(template) != recorded.template_digest:
            return Check(
                satisfied=False,
                summary=f"{target.deployment} runs {common.image_list(template)}, not its "
                f"baseline ({', '.join(recorded.images.values())})",
            )
        if not recorded.hpa and replicas != recorded.replicas:
            return Check(
                satisfied=False,
                summary=f"{target.deployment} has {replicas} replicas, its baseline "
                f"{recorded.replicas}",
            )
        ready, not_ready = _pods_not_ready(kube, target, dep, ctx)
        unready = f"; not Ready: {', '.join(not_ready)}" if not_ready else ""
        return Check(
            satisfied=True,
            summary=f"{target.deployment} runs its baseline again at revision "
            f"{rollout.revision_of(dep)} ({common.image_list(template)}, {ready} Ready{unready})",
            outputs={"revision": rollout.revision_of(dep), "pods_ready": ready},
            evidence={"pods_not_ready": not_ready} if not_ready else {},
        )
