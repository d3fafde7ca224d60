"""Kubernetes actions: rollback, set env, set image, scale, rollout status, logs.

Each action reads the Deployment named by the runbook's `target.kubernetes` (overridable in
`with:`) through ``crystal_runbook.kube``, which owns the client, error translation and
retries. The semantics follow kubectl (design.md section 5); what we add is what kubectl
leaves to the on-call engineer: a check before every change (so a second run changes
nothing), the change made in one patch (rollback and legacy mode: one rollout, not two),
verification by watch with a fast failure for pods that will never start, and a record on the
Deployment of what a rollback rolled back from, so that a second `rollback` does not flip
back to the bad release.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, field_validator

from crystal_runbook import errors
from crystal_runbook.engine import model
from crystal_runbook.engine.journal import now_iso
from crystal_runbook.engine.model import MAX_INPUT_LENGTH, Duration
from crystal_runbook.engine.registry import Action, Args, Change, Check, Outcome, StepContext
from crystal_runbook.engine.secrets import looks_secret
from crystal_runbook.kube import client as kube_client
from crystal_runbook.kube import resources, rollout, wait

MAX_REPLICAS = 1000
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,252}$")


class _KubeArgs(Args):
    deployment: str | None = Field(
        default=None, description="Default: target.kubernetes.deployment"
    )
    namespace: str | None = Field(default=None, description="Default: target.kubernetes.namespace")


def _target(args: _KubeArgs, ctx: StepContext) -> kube_client.KubeTarget:
    base = kube_client.KubeTarget.from_target(ctx.target) if ctx.target.get("kubernetes") else None
    if base is None and args.deployment is None:
        raise errors.ConfigurationError(
            "no deployment: the service has no `kubernetes:` block for this environment and "
            "the step names none",
            hint="add kubernetes: {namespace, deployment} to "
            "inventory/services.yaml or `deployment:` to the step's `with:`",
        )
    return kube_client.KubeTarget(
        deployment=args.deployment or (base.deployment if base else ""),
        namespace=args.namespace or (base.namespace if base else "default"),
        context=base.context if base else None,
        kubeconfig=base.kubeconfig if base else None,
        container=base.container if base else None,
    )


def _deadline(ctx: StepContext, default: float = 60.0) -> float:
    return ctx.deadline if ctx.deadline is not None else time.monotonic() + default


def _deployment(
    kube: kube_client.Kube, target: kube_client.KubeTarget, ctx: StepContext
) -> dict[str, Any]:
    return resources.deployment(kube, target, _deadline(ctx))


def _replicasets(
    kube: kube_client.Kube,
    target: kube_client.KubeTarget,
    deployment: dict[str, Any],
    ctx: StepContext,
) -> list[dict[str, Any]]:
    return resources.replicasets(kube, target, deployment, _deadline(ctx))


def _patch(
    kube: kube_client.Kube,
    target: kube_client.KubeTarget,
    ctx: StepContext,
    body: Any,
    content_type: str,
    *,
    sub: str | None = None,
) -> dict[str, Any]:
    return kube.json(
        "PATCH",
        target.path(resources.APPS, "deployments", target.deployment, sub),
        body=body,
        content_type=content_type,
        what=f"patch deployment {target.deployment}" + (f"/{sub}" if sub else ""),
        where=target.where,
        deadline=_deadline(ctx),
    )


def _wait(
    kube: kube_client.Kube, target: kube_client.KubeTarget, ctx: StepContext, crash_grace: float
) -> Check:
    state = wait.wait_rollout(
        kube, target, deadline=_deadline(ctx, 300.0), crash_grace=crash_grace, progress=ctx.progress
    )
    return Check(satisfied=state.done, summary=state.message)


def _valid_env(value: dict[str, str]) -> dict[str, str]:
    for key, item in value.items():
        if not ENV_NAME.fullmatch(key):
            raise ValueError(f"{key[:60]!r} is not a valid environment variable name")
        if len(str(item)) > MAX_INPUT_LENGTH:
            raise ValueError(f"value of {key} is longer than {MAX_INPUT_LENGTH} characters")
    return {k: str(v) for k, v in value.items()}


def _mask(name: str, value: Any) -> Any:
    return "*****" if looks_secret(name) and value is not None else value


# --- rollback ------------------------------------------------------------------------------


class RolloutUndoArgs(_KubeArgs):
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
        return _valid_env(value)


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
    )
    default_timeout = 300.0

    def check(self, args: Any, ctx: StepContext) -> Check:
        target = _target(args, ctx)
        kube = kube_client.connect(target)
        deployment = _deployment(kube, target, ctx)
        name = target.deployment
        if (deployment.get("spec") or {}).get("paused"):
            raise errors.PermanentActionError(
                f"deployment {name!r} is paused; a rollback would not roll out",
                hint=f"resume it first: kubectl -n {target.namespace} rollout resume "
                f"deployment/{name}",
            )
        owned = _replicasets(kube, target, deployment, ctx)
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
            from_template = ctx.resolved.get("from_template") or current_template
        else:
            self._refuse_second_rollback(deployment, args.to_revision)
            chosen = rollout.pick_target(name, owned, args.to_revision)
            from_revision = rollout.revision_of(deployment)
            to_revision = rollout.revision_of(chosen)
            from_template = current_template
        desired = rollout.rollback_template(chosen, args.set_env, args.containers)
        outputs = {
            "deployment": name,
            "namespace": target.namespace,
            "from_revision": from_revision,
            "to_revision": to_revision,
            "from_images": rollout.images(from_template),
            "to_images": rollout.images(desired),
            "from_env": {k: _mask(k, v) for k, v in rollout.env_of(from_template).items()},
            "to_env": {k: _mask(k, v) for k, v in rollout.env_of(desired).items()},
            "target_replicaset": chosen["metadata"]["name"],
        }
        resolved = {
            "target_replicaset": chosen["metadata"]["name"],
            "from_revision": from_revision,
            "to_revision": to_revision,
            "from_template": from_template,
        }
        if rollout.templates_equal(current_template, desired):
            return Check(
                satisfied=True,
                outputs=outputs,
                resolved=resolved,
                summary=f"{name} already runs revision {to_revision}'s template "
                f"({_image_list(desired)})",
            )
        changes = [Change("revision", from_revision, to_revision)]
        changes += _image_changes(current_template, desired)
        changes += _env_changes(current_template, desired)
        return Check(
            satisfied=False,
            changes=tuple(changes),
            outputs=outputs,
            resolved=resolved,
            summary=f"roll {name} back from revision {from_revision} to {to_revision} "
            f"({_image_list(desired)})",
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
        target = _target(args, ctx)
        kube = kube_client.connect(target)
        for _attempt in range(3):
            deployment = _deployment(kube, target, ctx)
            owned = _replicasets(kube, target, deployment, ctx)
            chosen = next(
                rs for rs in owned if rs["metadata"]["name"] == check.resolved["target_replicaset"]
            )
            desired = rollout.rollback_template(chosen, args.set_env, args.containers)
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
                _patch(kube, target, ctx, patch, "application/json-patch+json")
            except (kube_client.ConflictError, errors.PermanentActionError) as exc:
                # 409, or 422 from the `test` op: the Deployment changed since we read it
                if isinstance(exc, kube_client.ConflictError) or " 422 " in exc.message:
                    ctx.progress("deployment changed while rolling back; re-reading")
                    continue
                raise
            return Outcome(changed=True, summary=check.summary.replace("roll ", "rolled ", 1))
        raise errors.TemporaryActionError(
            f"deployment {target.deployment!r} kept changing while rolling back",
            hint="someone else is changing it; stop them, then resume this run",
        )

    def verify(self, args: Any, ctx: StepContext, outcome: Outcome | None) -> Check:
        target = _target(args, ctx)
        return _wait(kube_client.connect(target), target, ctx, args.crash_grace)


def _image_list(template: Mapping[str, Any]) -> str:
    return ", ".join(rollout.images(template).values())


def _image_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Change]:
    old, new = rollout.images(before), rollout.images(after)
    return [
        Change(f"image[{name}]", old.get(name), image)
        for name, image in new.items()
        if old.get(name) != image
    ]


def _env_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Change]:
    changes = []
    for container in after.get("spec", {}).get("containers") or []:
        name = container.get("name")
        old, new = rollout.env_of(before, name), rollout.env_of(after, name)
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                changes.append(
                    Change(
                        f"env[{name}].{key}", old.get(key), new.get(key), secret=looks_secret(key)
                    )
                )
    return changes


# --- set env / set image -------------------------------------------------------------------


class SetEnvArgs(_KubeArgs):
    env: dict[str, str] = Field(min_length=1)
    containers: list[str] | None = None
    crash_grace: Duration = 15.0

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        return _valid_env(value)


class _TemplateChange(Action):
    """Shared check/apply/verify of actions that change the pod template."""

    default_timeout = 300.0

    def desired(self, args: Any, template: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def check(self, args: Any, ctx: StepContext) -> Check:
        target = _target(args, ctx)
        deployment = _deployment(kube_client.connect(target), target, ctx)
        template = deployment.get("spec", {}).get("template") or {}
        wanted = self.desired(args, template)
        changes = _image_changes(template, wanted) + _env_changes(template, wanted)
        outputs = {
            "deployment": target.deployment,
            "images": rollout.images(wanted),
            "revision": rollout.revision_of(deployment),
        }
        if not changes:
            return Check(
                satisfied=True,
                summary=f"{target.deployment} already has {self.describe(args)}",
                outputs=outputs,
            )
        return Check(
            satisfied=False,
            changes=tuple(changes),
            outputs=outputs,
            summary=f"set {self.describe(args)} on {target.deployment}",
        )

    def describe(self, args: Any) -> str:
        raise NotImplementedError

    def patch(self, args: Any, template: dict[str, Any]) -> dict[str, Any]:
        wanted = self.desired(args, template)
        containers = []
        for container in wanted.get("spec", {}).get("containers") or []:
            containers.append(
                {
                    "name": container["name"],
                    "image": container.get("image"),
                    "env": container.get("env") or [],
                }
            )
        return {"spec": {"template": {"spec": {"containers": containers}}}}

    def apply(self, args: Any, ctx: StepContext, check: Check) -> Outcome:
        target = _target(args, ctx)
        kube = kube_client.connect(target)
        template = _deployment(kube, target, ctx).get("spec", {}).get("template") or {}
        _patch(
            kube, target, ctx, self.patch(args, template), "application/strategic-merge-patch+json"
        )
        return Outcome(changed=True, summary=check.summary.replace("set ", "did set ", 1))

    def verify(self, args: Any, ctx: StepContext, outcome: Outcome | None) -> Check:
        target = _target(args, ctx)
        return _wait(kube_client.connect(target), target, ctx, args.crash_grace)


class SetEnv(_TemplateChange):
    """Set environment variables on a Deployment's containers (`kubectl set env`)."""

    name = "k8s.set_env"
    summary = "Set env vars on a Deployment's containers; satisfied when already equal."
    Args = SetEnvArgs
    outputs = ("deployment", "images", "revision")

    def desired(self, args: Any, template: dict[str, Any]) -> dict[str, Any]:
        return rollout.apply_env(template, args.env, args.containers)

    def describe(self, args: Any) -> str:
        return ", ".join(f"{k}={_mask(k, v)}" for k, v in args.env.items())


class SetImageArgs(_KubeArgs):
    images: dict[str, str] = Field(default_factory=dict, description="container -> image")
    image: str | None = Field(default=None, description="image for every container")
    crash_grace: Duration = 15.0


class SetImage(_TemplateChange):
    """Set container images of a Deployment (`kubectl set image`)."""

    name = "k8s.set_image"
    summary = "Set container images of a Deployment; satisfied when already equal."
    Args = SetImageArgs
    outputs = ("deployment", "images", "revision")

    def desired(self, args: Any, template: dict[str, Any]) -> dict[str, Any]:
        if not args.images and not args.image:
            raise errors.PermanentActionError("k8s.set_image needs `images:` or `image:`")
        result = {**template, "spec": {**template.get("spec", {})}}
        containers = []
        for container in template.get("spec", {}).get("containers") or []:
            image = args.images.get(container.get("name"), args.image or container.get("image"))
            containers.append({**container, "image": image})
        unknown = set(args.images) - {c.get("name") for c in containers}
        if unknown:
            raise errors.PermanentActionError(
                f"no container named {', '.join(sorted(unknown))}",
                hint=f"containers: {', '.join(c.get('name', '?') for c in containers)}",
            )
        result["spec"]["containers"] = containers
        return result

    def describe(self, args: Any) -> str:
        return ", ".join(f"{k}={v}" for k, v in args.images.items()) or f"image {args.image}"


# --- scale ---------------------------------------------------------------------------------


class ScaleArgs(_KubeArgs):
    replicas: int = Field(ge=0)
    force: bool = Field(default=False, description=f"allow more than {MAX_REPLICAS} replicas")
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
        target = _target(args, ctx)
        if args.replicas > MAX_REPLICAS and not args.force:
            raise errors.PermanentActionError(
                f"{args.replicas} replicas is more than {MAX_REPLICAS}",
                hint="pass force (--force) if you really mean it",
            )
        kube = kube_client.connect(target)
        deployment = _deployment(kube, target, ctx)
        current = int((deployment.get("spec") or {}).get("replicas", 1))
        hpa = self._hpa(kube, target, ctx)
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

    def _hpa(
        self, kube: kube_client.Kube, target: kube_client.KubeTarget, ctx: StepContext
    ) -> dict[str, Any] | None:
        listed = kube.json(
            "GET",
            target.path(resources.HPAS, "horizontalpodautoscalers"),
            what="list horizontalpodautoscalers",
            where=target.where,
            deadline=_deadline(ctx),
        )
        for hpa in listed.get("items", []):
            ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
            if ref.get("kind") == "Deployment" and ref.get("name") == target.deployment:
                spec = hpa["spec"]
                return {
                    "name": hpa["metadata"]["name"],
                    "min": int(spec.get("minReplicas", 1)),
                    "max": int(spec.get("maxReplicas", 1)),
                }
        return None

    def apply(self, args: Any, ctx: StepContext, check: Check) -> Outcome:
        target = _target(args, ctx)
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
                    deadline=_deadline(ctx),
                )
        _patch(
            kube,
            target,
            ctx,
            {"spec": {"replicas": args.replicas}},
            "application/merge-patch+json",
            sub="scale",
        )
        return Outcome(changed=True, summary=check.summary.replace("scale ", "scaled ", 1))

    def verify(self, args: Any, ctx: StepContext, outcome: Outcome | None) -> Check:
        target = _target(args, ctx)
        return _wait(kube_client.connect(target), target, ctx, args.crash_grace)


# --- rollout status ------------------------------------------------------------------------


class RolloutStatusArgs(_KubeArgs):
    crash_grace: Duration = 15.0


class RolloutStatus(Action):
    """Wait until a Deployment's rollout completes (by watch); read-only."""

    name = "k8s.rollout_status"
    summary = "Wait for a Deployment's rollout to complete (watch; fails fast on crash loops)."
    Args = RolloutStatusArgs
    outputs = ("deployment", "revision", "images", "replicas")
    default_timeout = 300.0

    def check(self, args: Any, ctx: StepContext) -> Check:
        target = _target(args, ctx)
        kube = kube_client.connect(target)
        if ctx.dry_run:
            state = rollout.rollout_progress(_deployment(kube, target, ctx))
            return Check(satisfied=state.done, summary=state.message)
        state = wait.wait_rollout(
            kube,
            target,
            deadline=_deadline(ctx, 300.0),
            crash_grace=args.crash_grace,
            progress=ctx.progress,
        )
        deployment = _deployment(kube, target, ctx)
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


class LogsArgs(_KubeArgs):
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

        target = _target(args, ctx)
        lines = list(
            kube_logs.recent(
                kube_client.connect(target),
                target,
                since=args.since,
                tail=args.tail,
                grep=args.grep,
                container=args.container or target.container,
                limit=args.max_lines,
                deadline=_deadline(ctx),
            )
        )
        pods = sorted({line.split(" ", 1)[0] for line in lines})
        return Check(
            satisfied=True,
            summary=f"{len(lines)} lines from {len(pods)} pods",
            outputs={"lines": lines, "pods": pods},
        )


ACTIONS: tuple[type[Action], ...] = (RolloutUndo, SetEnv, SetImage, Scale, RolloutStatus, Logs)
