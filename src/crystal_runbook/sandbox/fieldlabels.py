"""Which fields each kind can be selected on (``fieldSelector``), and the value of each.

A real API server does not accept a field selector on any field: every kind has a short
list of "field labels" and anything else is answered ``400 BadRequest`` with the message of
that kind's conversion function. Most kinds have only ``metadata.name`` and
``metadata.namespace`` (upstream ``runtime.DefaultMetaV1FieldSelectorConversion``); pods,
events, secrets, services, namespaces, nodes and jobs have their own lists
(``AddFieldLabelConversionFunc`` calls in ``pkg/apis/core/v1/conversion.go`` and
``pkg/apis/batch/v1/conversion.go``), and the value of a label is what the kind's
``SelectableFields`` function puts in its field set (``pkg/registry/<group>/<kind>/strategy.go``),
which is not always the plain field (``status.successful`` is a Job's ``status.succeeded``;
a missing boolean is ``false``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from crystal_runbook.sandbox import resources, selectors

Obj = Mapping[str, Any]
Getter = Callable[[Obj], str]


def _path(path: str, default: str = "") -> Getter:
    def get(obj: Obj) -> str:
        return selectors.field_value(obj, path) or default

    return get


def _default_reject(label: str) -> str:
    # runtime.DefaultMetaV1FieldSelectorConversion
    return f'"{label}" is not a known field selector: only "metadata.name", "metadata.namespace"'


def _core_reject(label: str) -> str:
    # the core/v1 conversion funcs (pkg/apis/core/v1/conversion.go)
    return f"field label not supported: {label}"


def _job_reject(label: str) -> str:
    # pkg/apis/batch/v1/conversion.go
    return f'field label "{label}" not supported for batchv1.Job'


@dataclass(frozen=True)
class FieldLabels:
    """The selectable fields of one kind, and how a refused one is reported."""

    getters: Mapping[str, Getter]
    reject: Callable[[str], str]


_META: dict[str, Getter] = {
    "metadata.name": _path("metadata.name"),
    "metadata.namespace": _path("metadata.namespace"),
}

# pkg/apis/core/v1/conversion.go (Pod) and pkg/registry/core/pod/strategy.go ToSelectableFields
_POD = {
    **_META,
    "spec.nodeName": _path("spec.nodeName"),
    "spec.restartPolicy": _path("spec.restartPolicy"),
    "spec.schedulerName": _path("spec.schedulerName"),
    "spec.serviceAccountName": _path("spec.serviceAccountName"),
    "spec.hostNetwork": _path("spec.hostNetwork", "false"),
    "status.phase": _path("status.phase"),
    "status.podIP": _path("status.podIP"),
    "status.podIPs": _path("status.podIP"),
    "status.nominatedNodeName": _path("status.nominatedNodeName"),
}
# AddFieldLabelConversionsForEvent and pkg/registry/core/event/strategy.go ToSelectableFields
_EVENT = {
    **_META,
    **{
        f"involvedObject.{key}": _path(f"involvedObject.{key}")
        for key in (
            "kind",
            "namespace",
            "name",
            "uid",
            "apiVersion",
            "resourceVersion",
            "fieldPath",
        )
    },
    "reason": _path("reason"),
    "reportingComponent": _path("reportingComponent"),
    "source": _path("source.component"),
    "type": _path("type"),
}

_RULES: dict[str, FieldLabels] = {
    "Pod": FieldLabels(_POD, _core_reject),
    "Event": FieldLabels(_EVENT, _core_reject),
    # AddFieldLabelConversionsForSecret
    "Secret": FieldLabels({**_META, "type": _path("type")}, _core_reject),
    # AddFieldLabelConversionsForService
    "Service": FieldLabels(
        {**_META, "spec.clusterIP": _path("spec.clusterIP"), "spec.type": _path("spec.type")},
        _core_reject,
    ),
    # AddFieldLabelConversionsForNamespace
    "Namespace": FieldLabels(
        {"metadata.name": _path("metadata.name"), "status.phase": _path("status.phase")},
        _core_reject,
    ),
    # the Node conversion func: cluster-scoped, so no metadata.namespace
    "Node": FieldLabels(
        {
            "metadata.name": _path("metadata.name"),
            "spec.unschedulable": _path("spec.unschedulable", "false"),
        },
        _core_reject,
    ),
    # batch/v1 Job: status.successful is status.succeeded (JobToSelectableFields)
    "Job": FieldLabels({**_META, "status.successful": _path("status.succeeded", "0")}, _job_reject),
}
_DEFAULT = FieldLabels(_META, _default_reject)


def rules(res: resources.Resource) -> FieldLabels:
    """The field labels of ``res``'s kind."""
    return _RULES.get(res.kind, _DEFAULT)


class UnsupportedLabel(ValueError):
    """A field selector names a field its kind does not support (message as upstream)."""


def bind(res: resources.Resource, selector: selectors.FieldSelector) -> selectors.FieldSelector:
    """``selector`` with each requirement bound to its kind's value getter.

    Raises ``UnsupportedLabel`` for the first label the kind does not support.
    """
    kind_rules = rules(res)
    bound = []
    for req in selector.requirements:
        getter = kind_rules.getters.get(req.path)
        if getter is None:
            raise UnsupportedLabel(kind_rules.reject(req.path))
        bound.append(selectors.FieldRequirement(req.path, req.value, req.negate, getter))
    return selectors.FieldSelector(tuple(bound))
