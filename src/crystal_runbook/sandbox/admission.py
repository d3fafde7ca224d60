"""Defaulting and validation of incoming objects: what the API server does before storing.

Defaults matter beyond looks: kubectl's ``rollout undo`` compares a ReplicaSet's template
with the Deployment's, and the controller finds a Deployment's current ReplicaSet by
template, so the same template must always default to the same result (defaulting here is
idempotent). Validation covers what a wrong client or runbook would trip on: names, then each kind's
rules (``validation_apps`` for workloads, ``admission_kinds`` for the rest), worded as
upstream words them. Failures raise ``ApiError`` 422 with ``details.causes``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from crystal_runbook.sandbox import apierrors, fielderr, resources, validation_apps

Obj = dict[str, Any]

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
INT32_MAX = validation_apps.INT32_MAX
replicas_problem = validation_apps.replicas_problem


# --- defaulting -----------------------------------------------------------------------


def _default_probe(probe: Obj | None) -> None:
    if not isinstance(probe, dict):
        return
    if isinstance(probe.get("httpGet"), dict):
        probe["httpGet"].setdefault("scheme", "HTTP")
        probe["httpGet"].setdefault("path", "/")
    probe.setdefault("timeoutSeconds", 1)
    probe.setdefault("periodSeconds", 10)
    probe.setdefault("successThreshold", 1)
    probe.setdefault("failureThreshold", 3)


def _default_container(container: Obj) -> None:
    image = str(container.get("image") or "")
    tail = image.rsplit("/", 1)[-1]
    tag = tail.split(":", 1)[1] if ":" in tail and "@" not in tail else ""
    if "imagePullPolicy" not in container:
        container["imagePullPolicy"] = (
            "Always" if tag in ("", "latest") and "@" not in tail else "IfNotPresent"
        )
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
    for env in container.get("env") or []:
        ref = (env.get("valueFrom") or {}).get("fieldRef") if isinstance(env, dict) else None
        if isinstance(ref, dict):
            ref.setdefault("apiVersion", "v1")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        _default_probe(container.get(probe))


def default_pod_spec(spec: Obj) -> None:
    """``SetDefaults_PodSpec`` and its containers' defaults, in place."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for key in ("containers", "initContainers"):
        for container in spec.get(key) or []:
            if isinstance(container, dict):
                _default_container(container)


def _default_template(template: Obj | None) -> None:
    if not isinstance(template, dict):
        return
    template.setdefault("metadata", {})
    if isinstance(template.get("spec"), dict):
        default_pod_spec(template["spec"])


def default(
    res: resources.Resource, obj: Obj, *, cluster_ip: str | None = None, creating: bool = False
) -> None:
    """Apply the API server's defaults for ``res`` to ``obj``, in place.

    ``creating`` marks a create (the job strategy generates its selector only then).
    """
    spec = obj.get("spec")
    if res is resources.SECRETS:
        _kinds().default_secret(obj)
    elif res is resources.JOBS:
        _kinds().default_job(obj, creating=creating)
        if isinstance(spec, dict):
            _default_template(spec.get("template"))
    elif res is resources.CRONJOBS:
        _kinds().default_cronjob(obj)
        job_spec = ((spec or {}).get("jobTemplate") or {}).get("spec")
        if isinstance(job_spec, dict):
            _default_template(job_spec.get("template"))
    if res is resources.DEPLOYMENTS and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxUnavailable", "25%")
            rolling.setdefault("maxSurge", "25%")
        _default_template(spec.get("template"))
    elif res is resources.REPLICASETS and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        _default_template(spec.get("template"))
    elif res is resources.PODS and isinstance(spec, dict):
        default_pod_spec(spec)
        spec.setdefault("enableServiceLinks", True)
    elif res is resources.SERVICES and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if cluster_ip and spec["type"] != "ExternalName":
            spec.setdefault("clusterIP", cluster_ip)
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                if "port" in port:
                    port.setdefault("targetPort", port["port"])
    elif res is resources.NAMESPACES:
        meta = obj.setdefault("metadata", {})
        labels = meta.setdefault("labels", {})
        labels.setdefault("kubernetes.io/metadata.name", meta.get("name", ""))
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])


def initial_status(res: resources.Resource) -> Obj | None:
    """The status an object starts with when created (clients cannot set it on create)."""
    if res is resources.PODS:
        return {"phase": "Pending", "qosClass": "BestEffort"}
    if res is resources.NAMESPACES:
        return {"phase": "Active"}
    if res is resources.SERVICES:
        return {"loadBalancer": {}}
    if res is resources.HPAS:
        return {"desiredReplicas": 0}  # required (not omitempty) in autoscaling/v2
    if res.status_subresource:
        return {}
    return None


# --- validation -----------------------------------------------------------------------


def _name_causes(res: resources.Resource, name: str) -> list[tuple[str, str, str]]:
    pattern = _DNS_LABEL if res in (resources.NAMESPACES, resources.SERVICES) else _DNS_SUBDOMAIN
    limit = 63 if pattern is _DNS_LABEL else 253
    if not name:
        return [
            (
                "FieldValueRequired",
                "metadata.name",
                "Required value: name or generateName is required",
            )
        ]
    if len(name) > limit or not pattern.match(name):
        return [
            (
                "FieldValueInvalid",
                "metadata.name",
                f"Invalid value: {fielderr.go_value(name)}: a lowercase RFC 1123 "
                f"{'label' if limit == 63 else 'subdomain'} must consist of lower case "
                "alphanumeric characters, '-' or '.', and must start and end with an "
                "alphanumeric character",
            )
        ]
    return []


def _service_causes(obj: Obj) -> list[tuple[str, str, str]]:
    spec = obj.get("spec") or {}
    causes: list[tuple[str, str, str]] = []
    for i, port in enumerate(spec.get("ports") or []):
        if not isinstance(port, dict) or not isinstance(port.get("port"), int):
            causes.append(("FieldValueRequired", f"spec.ports[{i}].port", "Required value"))
    ip = spec.get("clusterIP")
    if ip not in (None, "", "None"):
        try:
            ipaddress.ip_address(str(ip))
        except ValueError:
            causes.append(("FieldValueInvalid", "spec.clusterIP", f"Invalid value: {ip!r}"))
    return causes


# the kinds admission_kinds validates (kept here so that module loads on first use: a
# sandbox that only runs its Deployments never imports it)
KIND_VALIDATED = frozenset(
    r.key
    for r in (
        resources.CONFIGMAPS,
        resources.SECRETS,
        resources.ROLES,
        resources.ROLEBINDINGS,
        resources.JOBS,
        resources.CRONJOBS,
        resources.PDBS,
        resources.LEASES,
        resources.HPAS,
    )
)


_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")


def _plain_data(obj: Obj) -> bool:
    """A new ConfigMap whose data are strings under valid keys and nothing else to check."""
    data = obj.get("data")
    return (
        isinstance(data, dict)
        and "binaryData" not in obj
        and all(isinstance(v, str) and _CONFIG_KEY.match(k) for k, v in data.items())
    )


def _kinds() -> Any:
    from crystal_runbook.sandbox import admission_kinds

    return admission_kinds


def validate(res: resources.Resource, obj: Obj, old: Obj | None = None) -> None:
    """Raise 422 Invalid if ``obj`` (replacing ``old``, if given) is not acceptable."""
    meta = obj.get("metadata") or {}
    name = str(meta.get("name") or "")
    causes = _name_causes(res, name)
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        causes.append(
            ("FieldValueInvalid", "metadata.labels", "Invalid value: label values must be strings")
        )
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(v, str) for v in annotations.values()
    ):
        causes.append(
            (
                "FieldValueInvalid",
                "metadata.annotations",
                "Invalid value: annotation values must be strings",
            )
        )
    if res is resources.DEPLOYMENTS:
        causes += validation_apps.deployment_spec(obj.get("spec"))
        causes += validation_apps.selector_immutable(obj, old)
    elif res is resources.REPLICASETS:
        causes += validation_apps.replicaset_spec(obj.get("spec"))
        causes += validation_apps.selector_immutable(obj, old)
    elif res is resources.PODS:
        causes += validation_apps.pod_spec(obj.get("spec"), "spec")
    elif res is resources.SERVICES:
        causes += _service_causes(obj)
    elif res is resources.CONFIGMAPS and old is None and _plain_data(obj):
        pass  # ValidateConfigMap: string data under valid keys (the seed's; no import needed)
    elif res.key in KIND_VALIDATED:
        causes += _kinds().VALIDATORS[res.key](obj, old)
    if causes:
        raise apierrors.invalid(res, name, causes)
