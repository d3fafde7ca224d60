"""`k8s.set_env` and `k8s.set_image`: one template change, checked first, verified by watch."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from crystal_runbook import errors
from crystal_runbook.actions.kubernetes import _common as common
from crystal_runbook.engine import imageref
from crystal_runbook.engine.model import Duration
from crystal_runbook.engine.registry import Action, Check, Outcome, StepContext
from crystal_runbook.kube import client as kube_client
from crystal_runbook.kube import rollout


class SetEnvArgs(common.KubeArgs):
    env: dict[str, str] = Field(min_length=1)
    containers: list[str] | None = None
    crash_grace: Duration = 15.0

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        return common.valid_env(value)


class _TemplateChange(Action):
    """Shared check/apply/verify of actions that change the pod template."""

    default_timeout = 300.0

    def desired(self, args: Any, template: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def check(self, args: Any, ctx: StepContext) -> Check:
        target = common.target_of(args, ctx)
        deployment = common.deployment(kube_client.connect(target), target, ctx)
        template = deployment.get("spec", {}).get("template") or {}
        wanted = self.desired(args, template)
        changes = common.image_changes(template, wanted) + common.env_changes(template, wanted)
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
        target = common.target_of(args, ctx)
        kube = kube_client.connect(target)
        template = common.deployment(kube, target, ctx).get("spec", {}).get("template") or {}
        common.patch(
            kube, target, ctx, self.patch(args, template), "application/strategic-merge-patch+json"
        )
        return Outcome(changed=True, summary=check.summary.replace("set ", "did set ", 1))

    def verify(self, args: Any, ctx: StepContext, outcome: Outcome | None) -> Check:
        target = common.target_of(args, ctx)
        return common.wait_done(kube_client.connect(target), target, ctx, args.crash_grace)


class SetEnv(_TemplateChange):
    """Set environment variables on a Deployment's containers (`kubectl set env`)."""

    name = "k8s.set_env"
    summary = "Set env vars on a Deployment's containers; satisfied when already equal."
    Args = SetEnvArgs
    outputs = ("deployment", "images", "revision")

    def desired(self, args: Any, template: dict[str, Any]) -> dict[str, Any]:
        return rollout.apply_env(template, args.env, args.containers)

    def describe(self, args: Any) -> str:
        return ", ".join(f"{k}={common.mask(k, v)}" for k, v in args.env.items())


class SetImageArgs(common.KubeArgs):
    images: dict[str, str] = Field(default_factory=dict, description="container -> image")
    image: str | None = Field(default=None, description="image for every container")
    crash_grace: Duration = 15.0

    @field_validator("image")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        if value is not None:
            _check_reference(value)
        return value

    @field_validator("images")
    @classmethod
    def _references(cls, value: dict[str, str]) -> dict[str, str]:
        for image in value.values():
            _check_reference(image)
        return value


def _check_reference(image: str) -> None:
    wrong = imageref.problem(image)
    if wrong is not None:
        raise ValueError(f"{image[:80]!r} is not a valid image reference: {wrong}")


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
