"""The resource types the sandbox serves, and the discovery documents built from them.

Every other module names resources through this registry instead of spelling paths, kinds
and plurals itself, so adding a resource is one entry here. Discovery comes in the two forms
clients ask for: aggregated discovery (``apidiscovery.k8s.io/v2``, what kubectl 1.37 requests
first from ``/api`` and ``/apis``) and the older per-group documents (``APIVersions``,
``APIGroupList``, ``APIGroup``, ``APIResourceList``) that the Python client and older tools use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
SUB_VERBS = ("get", "patch", "update")


@dataclass(frozen=True)
class Subresource:
    """A subresource such as ``deployments/scale``: its name, response kind and verbs."""

    name: str
    kind: str
    group: str = ""
    version: str = "v1"
    verbs: tuple[str, ...] = SUB_VERBS


@dataclass(frozen=True)
class Resource:
    """One served resource type (group, version, plural) and how the server treats it."""

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[Subresource, ...] = ()
    # spec and status are separate: the main endpoint keeps status, /status keeps the rest
    status_subresource: bool = False
    # metadata.generation is bumped when spec changes
    generation: bool = False
    verbs: tuple[str, ...] = ALL_VERBS
    # answered from other objects on each GET, never stored (metrics.k8s.io)
    computed: bool = False

    @property
    def api_version(self) -> str:
        """``apps/v1`` or ``v1`` for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """How error messages name the type: ``deployments.apps`` or ``pods``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def key(self) -> tuple[str, str]:
        """What the store files objects under (the group and plural, not the version)."""
        return (self.group, self.plural)

    def subresource(self, name: str) -> Subresource | None:
        for sub in self.subresources:
            if sub.name == name:
                return sub
        return None


_STATUS = Subresource("status", "")  # kind filled per resource in discovery
_SCALE = Subresource("scale", "Scale", group="autoscaling", version="v1")

NAMESPACES = Resource(
    "",
    "v1",
    "namespaces",
    "namespace",
    "Namespace",
    namespaced=False,
    short_names=("ns",),
    subresources=(_STATUS,),
    status_subresource=True,
)
PODS = Resource(
    "",
    "v1",
    "pods",
    "pod",
    "Pod",
    namespaced=True,
    short_names=("po",),
    categories=("all",),
    subresources=(
        _STATUS,
        Subresource("log", "Pod", verbs=("get",)),
        Subresource(
            "proxy", "PodProxyOptions", verbs=("create", "delete", "get", "patch", "update")
        ),
    ),
    status_subresource=True,
)
EVENTS = Resource("", "v1", "events", "event", "Event", namespaced=True, short_names=("ev",))
CONFIGMAPS = Resource(
    "", "v1", "configmaps", "configmap", "ConfigMap", namespaced=True, short_names=("cm",)
)
SERVICES = Resource(
    "",
    "v1",
    "services",
    "service",
    "Service",
    namespaced=True,
    short_names=("svc",),
    categories=("all",),
    subresources=(
        _STATUS,
        Subresource(
            "proxy", "ServiceProxyOptions", verbs=("create", "delete", "get", "patch", "update")
        ),
    ),
    status_subresource=True,
)
DEPLOYMENTS = Resource(
    "apps",
    "v1",
    "deployments",
    "deployment",
    "Deployment",
    namespaced=True,
    short_names=("deploy",),
    categories=("all",),
    subresources=(_SCALE, _STATUS),
    status_subresource=True,
    generation=True,
)
REPLICASETS = Resource(
    "apps",
    "v1",
    "replicasets",
    "replicaset",
    "ReplicaSet",
    namespaced=True,
    short_names=("rs",),
    categories=("all",),
    subresources=(_SCALE, _STATUS),
    status_subresource=True,
    generation=True,
)
LEASES = Resource("coordination.k8s.io", "v1", "leases", "lease", "Lease", namespaced=True)
HPAS = Resource(
    "autoscaling",
    "v2",
    "horizontalpodautoscalers",
    "horizontalpodautoscaler",
    "HorizontalPodAutoscaler",
    namespaced=True,
    short_names=("hpa",),
    categories=("all",),
    subresources=(_STATUS,),
    status_subresource=True,
    generation=True,
)

NODES = Resource(
    "",
    "v1",
    "nodes",
    "node",
    "Node",
    namespaced=False,
    short_names=("no",),
    subresources=(_STATUS,),
    status_subresource=True,
)
SECRETS = Resource("", "v1", "secrets", "secret", "Secret", namespaced=True)
SERVICEACCOUNTS = Resource(
    "",
    "v1",
    "serviceaccounts",
    "serviceaccount",
    "ServiceAccount",
    namespaced=True,
    short_names=("sa",),
)
RBAC = "rbac.authorization.k8s.io"
ROLES = Resource(RBAC, "v1", "roles", "role", "Role", namespaced=True)
ROLEBINDINGS = Resource(RBAC, "v1", "rolebindings", "rolebinding", "RoleBinding", namespaced=True)
JOBS = Resource(
    "batch",
    "v1",
    "jobs",
    "job",
    "Job",
    namespaced=True,
    categories=("all",),
    subresources=(_STATUS,),
    status_subresource=True,
    generation=True,
)
CRONJOBS = Resource(
    "batch",
    "v1",
    "cronjobs",
    "cronjob",
    "CronJob",
    namespaced=True,
    short_names=("cj",),
    categories=("all",),
    subresources=(_STATUS,),
    status_subresource=True,
    generation=True,
)
PDBS = Resource(
    "policy",
    "v1",
    "poddisruptionbudgets",
    "poddisruptionbudget",
    "PodDisruptionBudget",
    namespaced=True,
    short_names=("pdb",),
    subresources=(_STATUS,),
    status_subresource=True,
    generation=True,
)
# metrics.k8s.io is computed from the running pods, never stored (see ``podmetrics``)
READ_ONLY = ("get", "list")
POD_METRICS = Resource(
    "metrics.k8s.io",
    "v1beta1",
    "pods",
    "",
    "PodMetrics",
    namespaced=True,
    verbs=READ_ONLY,
    computed=True,
)
NODE_METRICS = Resource(
    "metrics.k8s.io",
    "v1beta1",
    "nodes",
    "",
    "NodeMetrics",
    namespaced=False,
    verbs=READ_ONLY,
    computed=True,
)

ALL: tuple[Resource, ...] = (
    NAMESPACES,
    NODES,
    PODS,
    EVENTS,
    CONFIGMAPS,
    SECRETS,
    SERVICEACCOUNTS,
    SERVICES,
    DEPLOYMENTS,
    REPLICASETS,
    JOBS,
    CRONJOBS,
    LEASES,
    HPAS,
    PDBS,
    ROLES,
    ROLEBINDINGS,
    POD_METRICS,
    NODE_METRICS,
)
COMPUTED = (POD_METRICS, NODE_METRICS)  # test with ``res.computed`` on hot paths


@dataclass
class Registry:
    """Look-ups over the served resources, and the discovery documents describing them."""

    resources: tuple[Resource, ...] = ALL
    _by_path: dict[tuple[str, str, str], Resource] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        for res in self.resources:
            self._by_path[(res.group, res.version, res.plural)] = res

    def find(self, group: str, version: str, plural: str) -> Resource | None:
        """The resource served at ``/apis/<group>/<version>/<plural>``, if any."""
        return self._by_path.get((group, version, plural))

    def groups(self) -> dict[str, list[str]]:
        """Named groups (not the core group) and their versions, preferred first."""
        out: dict[str, list[str]] = {}
        for res in self.resources:
            if res.group and res.version not in out.setdefault(res.group, []):
                out[res.group].append(res.version)
        return out

    def versions(self, group: str) -> list[str]:
        return self.groups().get(group, [])

    def in_group_version(self, group: str, version: str) -> list[Resource]:
        return [r for r in self.resources if r.group == group and r.version == version]

    # legacy discovery ------------------------------------------------------------------

    def api_versions(self, server_address: str) -> dict[str, Any]:
        """``GET /api``: the core group's versions."""
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
            ],
        }

    def api_group(self, group: str) -> dict[str, Any]:
        """``GET /apis/<group>``."""
        versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in self.versions(group)]
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": group,
            "versions": versions,
            "preferredVersion": versions[0],
        }

    def api_group_list(self) -> dict[str, Any]:
        """``GET /apis``: every named group."""
        groups = []
        for group in self.groups():
            doc = self.api_group(group)
            del doc["kind"], doc["apiVersion"]
            groups.append(doc)
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def api_resource_list(self, group: str, version: str) -> dict[str, Any]:
        """``GET /api/v1`` or ``GET /apis/<group>/<version>``."""
        resources: list[dict[str, Any]] = []
        for res in self.in_group_version(group, version):
            entry: dict[str, Any] = {
                "name": res.plural,
                "singularName": res.singular,
                "namespaced": res.namespaced,
                "kind": res.kind,
                "verbs": list(res.verbs),
            }
            if res.short_names:
                entry["shortNames"] = list(res.short_names)
            if res.categories:
                entry["categories"] = list(res.categories)
            resources.append(entry)
            for sub in res.subresources:
                sub_entry: dict[str, Any] = {
                    "name": f"{res.plural}/{sub.name}",
                    "singularName": "",
                    "namespaced": res.namespaced,
                    "kind": sub.kind or res.kind,
                    "verbs": list(sub.verbs),
                }
                if sub.group:
                    sub_entry["group"] = sub.group
                    sub_entry["version"] = sub.version
                resources.append(sub_entry)
        group_version = f"{group}/{version}" if group else version
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        }

    # aggregated discovery (apidiscovery.k8s.io/v2) -------------------------------------

    def aggregated(self, *, core: bool) -> dict[str, Any]:
        """``GET /api`` (core) or ``GET /apis`` as an ``APIGroupDiscoveryList``."""
        if core:
            items = [self._discovery_group("")]
        else:
            items = [self._discovery_group(g) for g in self.groups()]
        return {
            "kind": "APIGroupDiscoveryList",
            "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {},
            "items": items,
        }

    def _discovery_group(self, group: str) -> dict[str, Any]:
        versions = ["v1"] if not group else self.versions(group)
        metadata: dict[str, Any] = {"name": group} if group else {}
        metadata["creationTimestamp"] = None
        return {
            "metadata": metadata,
            "versions": [
                {
                    "version": version,
                    "resources": [
                        self._discovery_resource(r) for r in self.in_group_version(group, version)
                    ],
                    "freshness": "Current",
                }
                for version in versions
            ],
        }

    @staticmethod
    def _discovery_resource(res: Resource) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "resource": res.plural,
            "responseKind": {"group": res.group, "version": res.version, "kind": res.kind},
            "scope": "Namespaced" if res.namespaced else "Cluster",
            "singularResource": res.singular,
            "verbs": list(res.verbs),
        }
        if res.short_names:
            entry["shortNames"] = list(res.short_names)
        if res.categories:
            entry["categories"] = list(res.categories)
        if res.subresources:
            entry["subresources"] = [
                {
                    "subresource": sub.name,
                    "responseKind": {
                        "group": sub.group if sub.kind else res.group,
                        "version": sub.version if sub.kind else res.version,
                        "kind": sub.kind or res.kind,
                    },
                    "verbs": list(sub.verbs),
                }
                for sub in res.subresources
            ]
        return entry
