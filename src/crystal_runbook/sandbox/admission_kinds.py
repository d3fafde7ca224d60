"""Defaults and validation of the kinds a deploy adds around its Deployment.

Secrets and ConfigMaps, ServiceAccounts, RBAC Roles and RoleBindings, batch Jobs and
CronJobs, PodDisruptionBudgets, Leases and HPAs: what the API server fills in and what it
refuses, after upstream's ``SetDefaults_*`` (``pkg/apis/<group>/v1/defaults.go``), the
strategies' ``PrepareForCreate`` and ``pkg/apis/<group>/validation``. No controller acts on
these kinds (``kubectl apply --dry-run=server`` and a dry run of a manifest need only this).
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from typing import Any

from crystal_runbook.sandbox import apierrors, resources, validation_apps
from crystal_runbook.sandbox import fielderr as fe

Obj = dict[str, Any]
Causes = list[fe.Cause]

_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
CONFIG_KEY_MSG = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
    "(e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
    "'[-._a-zA-Z0-9]+')"
)
JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


# --- defaults -------------------------------------------------------------------------


def _decode_secret_data(obj: Obj) -> None:
    """Secret ``data`` is bytes on the wire as base64: undecodable data is a 400."""
    for key, value in (obj.get("data") or {}).items():
        try:
            base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise apierrors.bad_request(
                f'Secret in version "v1" cannot be handled as a Secret: illegal base64 data '
                f"in data[{key!r}]: {exc}"
            ) from exc


def default_secret(obj: Obj) -> None:
    """``SetDefaults_Secret`` and ``Convert_v1_Secret_To_core_Secret`` (stringData wins)."""
    obj.setdefault("type", "Opaque")
    _decode_secret_data(obj)
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict) and string_data:
        data = obj.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


def default_job(obj: Obj, *, creating: bool) -> None:
    """``SetDefaults_Job`` and the job strategy's generated selector."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    spec.setdefault("parallelism", 1)
    if spec.get("backoffLimitPerIndex") is None:
        spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    spec.setdefault("manualSelector", None)
    if spec["manualSelector"] is None:
        del spec["manualSelector"]
    meta = obj.setdefault("metadata", {})
    if creating and not spec.get("manualSelector"):
        # batch/job strategy generateSelector: the uid is known before the object is stored
        uid = meta.setdefault("uid", str(uuid.uuid4()))
        template = spec.setdefault("template", {})
        labels = template.setdefault("metadata", {}).setdefault("labels", {})
        labels.update(
            {
                JOB_UID_LABEL: uid,
                JOB_NAME_LABEL: str(meta.get("name") or ""),
                "controller-uid": uid,
                "job-name": str(meta.get("name") or ""),
            }
        )
        spec.setdefault("selector", {"matchLabels": {JOB_UID_LABEL: uid}})


def default_cronjob(obj: Obj) -> None:
    """``SetDefaults_CronJob``."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)


# --- validation -----------------------------------------------------------------------


def _config_keys(data: Any, field: str) -> Causes:
    if data is None:
        return []
    if not isinstance(data, dict):
        return [fe.invalid(field, data, "must be a map")]
    causes: Causes = []
    for key, value in data.items():
        if not _CONFIG_KEY.match(key) or len(key) > 253:
            causes.append(fe.invalid(f"{field}[{key}]", key, CONFIG_KEY_MSG))
        if not isinstance(value, str):
            causes.append(fe.invalid(f"{field}[{key}]", value, "must be a string"))
    return causes


def _immutable(obj: Obj, old: Obj | None, *keys: str) -> Causes:
    if old is None:
        return []
    causes: Causes = []
    for key in keys:
        if obj.get(key) != old.get(key):
            causes.append(fe.invalid(key, obj.get(key), "field is immutable"))
    return causes


def _immutable_data(obj: Obj, old: Obj | None) -> Causes:
    """``immutable: true`` ConfigMaps and Secrets keep their data."""
    if old is None or not old.get("immutable"):
        return []
    causes: Causes = []
    if obj.get("data") != old.get("data") or obj.get("binaryData") != old.get("binaryData"):
        causes.append(fe.forbidden("data", "field is immutable when `immutable` is set"))
    if not obj.get("immutable"):
        causes.append(fe.forbidden("immutable", "field is immutable when `immutable` is set"))
    return causes


def configmap(obj: Obj, old: Obj | None) -> Causes:
    """``ValidateConfigMap``."""
    return (
        _config_keys(obj.get("data"), "data")
        + _config_keys(obj.get("binaryData"), "binaryData")
        + _immutable_data(obj, old)
    )


def secret(obj: Obj, old: Obj | None) -> Causes:
    """``ValidateSecret`` (keys, size) and ``ValidateSecretUpdate`` (type is immutable)."""
    causes = _config_keys(obj.get("data"), "data")
    size = sum(len(str(v)) * 3 // 4 for v in (obj.get("data") or {}).values())
    if size > 1024 * 1024:
        causes.append(fe.too_long("data", 1024 * 1024))
    return causes + _immutable(obj, old, "type") + _immutable_data(obj, old)


def role(obj: Obj, old: Obj | None) -> Causes:
    """``ValidateRole`` → ``ValidatePolicyRule`` for each rule."""
    causes: Causes = []
    for i, rule in enumerate(obj.get("rules") or []):
        where = f"rules[{i}]"
        if not isinstance(rule, dict):
            causes.append(fe.invalid(where, rule, "must be an object"))
            continue
        if not rule.get("verbs"):
            causes.append(fe.required(f"{where}.verbs", "verbs must contain at least one value"))
        if rule.get("nonResourceURLs"):
            causes.append(
                fe.invalid(
                    f"{where}.nonResourceURLs",
                    rule["nonResourceURLs"],
                    "namespaced rules cannot apply to non-resource URLs",
                )
            )
            continue
        if not rule.get("apiGroups"):
            causes.append(
                fe.required(
                    f"{where}.apiGroups", "resource rules must supply at least one api group"
                )
            )
        if not rule.get("resources"):
            causes.append(
                fe.required(
                    f"{where}.resources", "resource rules must supply at least one resource"
                )
            )
    return causes


def rolebinding(obj: Obj, old: Obj | None) -> Causes:
    """``ValidateRoleBinding`` and ``ValidateRoleBindingUpdate`` (roleRef is immutable)."""
    causes: Causes = []
    ref = obj.get("roleRef")
    if not isinstance(ref, dict):
        causes.append(fe.required("roleRef"))
        ref = {}
    if ref.get("apiGroup") != "rbac.authorization.k8s.io":
        causes.append(
            fe.not_supported(
                "roleRef.apiGroup", ref.get("apiGroup", ""), ["rbac.authorization.k8s.io"]
            )
        )
    if ref.get("kind") not in ("Role", "ClusterRole"):
        causes.append(
            fe.not_supported("roleRef.kind", ref.get("kind", ""), ["Role", "ClusterRole"])
        )
    if not ref.get("name"):
        causes.append(fe.required("roleRef.name"))
    for i, subject in enumerate(obj.get("subjects") or []):
        where = f"subjects[{i}]"
        if not isinstance(subject, dict):
            causes.append(fe.invalid(where, subject, "must be an object"))
            continue
        if not subject.get("name"):
            causes.append(fe.required(f"{where}.name"))
        kind = subject.get("kind")
        if kind not in ("ServiceAccount", "User", "Group"):
            causes.append(
                fe.not_supported(f"{where}.kind", kind, ["ServiceAccount", "User", "Group"])
            )
    if old is not None and old.get("roleRef") != obj.get("roleRef"):
        causes.append(fe.invalid("roleRef", obj.get("roleRef"), "cannot change roleRef"))
    return causes


_CRON_FIELDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_CRON_NAMES = {3: {m: i + 1 for i, m in enumerate(_MONTHS)}, 4: {d: i for i, d in enumerate(_DAYS)}}
_DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def _atoi_error(text: str) -> str:
    quoted = fe.go_value(text)
    return f"failed to parse int from {text}: strconv.Atoi: parsing {quoted}: invalid syntax"


def cron_error(schedule: str) -> str | None:
    """Why robfig/cron's ``ParseStandard`` would refuse ``schedule`` (None if it parses)."""
    text = schedule.strip()
    if text in _DESCRIPTORS or text.startswith("@every "):
        return None
    if text.startswith("@"):
        return f"unrecognized descriptor: {text}"
    fields = text.split()
    if len(fields) != 5:
        return f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]"
    for index, (field, (low, high)) in enumerate(zip(fields, _CRON_FIELDS, strict=True)):
        for part in field.split(","):
            base, _, step = part.partition("/")
            if step and not step.isdigit():
                return _atoi_error(step)
            if base in ("*", "?"):
                continue
            for bound in base.split("-", 1):
                value = _CRON_NAMES.get(index, {}).get(bound.lower())
                if value is None and not bound.isdigit():
                    return _atoi_error(bound)
                value = int(bound) if value is None else value
                if value > high:
                    return f"end of range ({value}) above maximum ({high}): {base}"
                if value < low:
                    return f"beginning of range ({value}) below minimum ({low}): {base}"
    return None


def _job_spec(spec: Any, path: str) -> Causes:
    """``ValidateJobSpec``'s checks of counts and the pod template's restart policy."""
    if not isinstance(spec, dict):
        return [fe.required(path)]
    causes: Causes = []
    for key in ("parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished"):
        causes += fe.nonnegative(f"{path}.{key}", spec.get(key))
    deadline = spec.get("activeDeadlineSeconds")
    if isinstance(deadline, int) and deadline <= 0:
        causes.append(
            fe.invalid(f"{path}.activeDeadlineSeconds", deadline, "must be greater than 0")
        )
    template = spec.get("template")
    if not isinstance(template, dict):
        return [*causes, fe.required(f"{path}.template")]
    causes += validation_apps.pod_spec(
        template.get("spec"), f"{path}.template.spec", restart=["OnFailure", "Never"]
    )
    return causes


def job(obj: Obj, old: Obj | None) -> Causes:
    """``ValidateJob`` (and, on update, the immutable selector and template)."""
    causes = _job_spec(obj.get("spec"), "spec")
    if old is not None:
        for key in ("selector", "completions", "completionMode"):
            before = (old.get("spec") or {}).get(key)
            after = (obj.get("spec") or {}).get(key)
            if before != after and not (key == "completions" and before is None):
                causes.append(fe.invalid(f"spec.{key}", after, "field is immutable"))
    return causes


def cronjob(obj: Obj, old: Obj | None) -> Causes:
    """``ValidateCronJobCreate``: name length, schedule, time zone, job template."""
    causes: Causes = []
    name = str((obj.get("metadata") or {}).get("name") or "")
    if len(name) > 52:
        causes.append(fe.invalid("metadata.name", name, "must be no more than 52 characters"))
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [*causes, fe.required("spec")]
    schedule = spec.get("schedule")
    if not schedule:
        causes.append(fe.required("spec.schedule"))
    elif isinstance(schedule, str):
        if re.search(r"\b(CRON_)?TZ=", schedule):
            causes.append(
                fe.invalid(
                    "spec.schedule",
                    schedule,
                    "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                )
            )
        elif (why := cron_error(schedule)) is not None:
            causes.append(fe.invalid("spec.schedule", schedule, why))
    policy = spec.get("concurrencyPolicy", "Allow")
    if policy not in ("Allow", "Forbid", "Replace"):
        causes.append(
            fe.not_supported("spec.concurrencyPolicy", policy, ["Allow", "Forbid", "Replace"])
        )
    for key in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        causes += fe.nonnegative(f"spec.{key}", spec.get(key))
    job_template = spec.get("jobTemplate")
    if not isinstance(job_template, dict):
        return [*causes, fe.required("spec.jobTemplate")]
    causes += _job_spec(job_template.get("spec"), "spec.jobTemplate.spec")
    return causes


def pdb(obj: Obj, old: Obj | None) -> Causes:
    """``ValidatePodDisruptionBudgetSpec``."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return []
    causes: Causes = []
    if "minAvailable" in spec and "maxUnavailable" in spec:
        causes.append(
            fe.invalid("spec", spec, "minAvailable and maxUnavailable cannot be both set")
        )
    for key in ("minAvailable", "maxUnavailable"):
        if key in spec:
            causes += fe.positive_int_or_percent(f"spec.{key}", spec[key])
            causes += fe.not_more_than_100_percent(f"spec.{key}", spec[key])
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in ("IfHealthyBudget", "AlwaysAllow"):
        causes.append(
            fe.not_supported(
                "spec.unhealthyPodEvictionPolicy", policy, ["AlwaysAllow", "IfHealthyBudget"]
            )
        )
    return causes


def lease(obj: Obj, old: Obj | None) -> Causes:
    """``ValidateLeaseSpec``."""
    spec = obj.get("spec") or {}
    causes: Causes = []
    duration = spec.get("leaseDurationSeconds")
    if isinstance(duration, int) and duration <= 0:
        causes.append(fe.invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    causes += fe.nonnegative("spec.leaseTransitions", spec.get("leaseTransitions"))
    return causes


def hpa(obj: Obj, old: Obj | None) -> Causes:
    """``ValidateHorizontalPodAutoscalerSpec``'s replica bounds."""
    spec = obj.get("spec") or {}
    causes: Causes = []
    low, high = spec.get("minReplicas"), spec.get("maxReplicas")
    if isinstance(low, int) and low < 1:
        causes.append(fe.invalid("spec.minReplicas", low, "must be greater than or equal to 1"))
    if not isinstance(high, int):
        causes.append(fe.required("spec.maxReplicas"))
    elif high < 1:
        causes.append(fe.invalid("spec.maxReplicas", high, "must be greater than 0"))
    elif isinstance(low, int) and high < low:
        causes.append(
            fe.invalid("spec.maxReplicas", high, "must be greater than or equal to `minReplicas`")
        )
    if not isinstance(spec.get("scaleTargetRef"), dict):
        causes.append(fe.required("spec.scaleTargetRef"))
    return causes


VALIDATORS = {  # by Resource.key: a Resource's own hash is costly on a hot path
    resources.CONFIGMAPS.key: configmap,
    resources.SECRETS.key: secret,
    resources.ROLES.key: role,
    resources.ROLEBINDINGS.key: rolebinding,
    resources.JOBS.key: job,
    resources.CRONJOBS.key: cronjob,
    resources.PDBS.key: pdb,
    resources.LEASES.key: lease,
    resources.HPAS.key: hpa,
}
VALIDATED = frozenset(VALIDATORS)
