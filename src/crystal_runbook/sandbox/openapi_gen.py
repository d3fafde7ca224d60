"""Build the sandbox's OpenAPI schemas from Kubernetes 1.37's own definitions (dev tool).

``python -m crystal_runbook.sandbox.openapi_gen`` reads the definitions shipped by the
``kubernetes-validate`` package (its ``v1.37.0-local/_definitions.json``, generated from the
Kubernetes 1.37 OpenAPI document, with every ``x-kubernetes-*`` extension, format and
``required`` list) and writes ``data/openapi-definitions.json.gz``: the definitions of the
kinds the sandbox serves and everything they reference, converted back to the OpenAPI 3
form the API server publishes (``type: [X, "null"]`` → ``type: X``; ``$ref`` into
``#/components/schemas``, wrapped in ``allOf`` when it has siblings, as kube-openapi
does; IntOrString and Quantity as kube-openapi types them). Nothing here is typed by
hand, and the sandbox never runs this module: it only reads the JSON it wrote.
The paths (which operations each served resource has, with their query parameters and
their descriptions) come from the official Python client: each API method's request
serializer names its HTTP method, path and query parameters, and its signature documents
them, all generated from the same upstream OpenAPI document.
``tests/unit/sandbox/test_openapi.py`` checks the committed file equals a fresh build (by
shape on a newer client line, byte for byte on ``CLIENT_LINE``).
"""

from __future__ import annotations

import gzip
import importlib.util
import inspect
import json
import re
import sys
import typing
from pathlib import Path
from typing import Any

from crystal_runbook.sandbox import resources

KUBERNETES_VERSION = "1.37.0"
CLIENT_LINE = "37"
"""The ``kubernetes`` client's major version the committed paths were generated with: their
text (parameter descriptions) follows the client, so only that line rebuilds them byte for
byte; tests compare other lines by shape."""
OUTPUT = Path(__file__).with_name("data") / "openapi-definitions.json.gz"
REF_PREFIX = "#/$defs/"
V3_PREFIX = "#/components/schemas/"
# the meta types the served paths refer to besides the kinds themselves
EXTRA = (
    "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
    "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
    "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Patch",
    "io.k8s.api.autoscaling.v1.Scale",
)
# kube-openapi's OpenAPISchemaType/Format for the two union-like scalar types
SCALARS = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "type": "string",
        "format": "int-or-string",
    },
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": "string"},
}


def source_path() -> Path:
    """Where the installed ``kubernetes-validate`` keeps the 1.37 definitions."""
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or spec.origin is None:
        raise SystemExit("kubernetes-validate is not installed (pip install -e '.[dev]')")
    base = Path(spec.origin).parent / "kubernetes-json-schema"
    return base / f"v{KUBERNETES_VERSION}-local" / "_definitions.json"


def _convert(node: Any) -> Any:
    """One schema node in the API server's OpenAPI 3 form."""
    if isinstance(node, list):
        return [_convert(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "type" and isinstance(value, list):
            kinds = [t for t in value if t != "null"]
            out["type"] = kinds[0] if len(kinds) == 1 else kinds
        elif key == "$ref":
            out["$ref"] = V3_PREFIX + str(value).removeprefix(REF_PREFIX)
        else:
            out[key] = _convert(value)
    if "$ref" in out and len(out) > 1:
        ref = out.pop("$ref")
        out = {"allOf": [{"$ref": ref}], **out}
    return out


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                found.add(str(value).removeprefix(REF_PREFIX))
            else:
                found |= _refs(value)
    elif isinstance(node, list):
        for item in node:
            found |= _refs(item)
    return found


def _gvk_names(defs: dict[str, Any]) -> dict[tuple[str, str, str], str]:
    out = {}
    for name, schema in defs.items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or []:
            out[(gvk.get("group", ""), gvk["version"], gvk["kind"])] = name
    return out


def build(defs: dict[str, Any]) -> dict[str, Any]:
    """The served kinds' definitions (and lists) with everything they reference."""
    by_gvk = _gvk_names(defs)
    roots = set(EXTRA)
    for res in resources.ALL:
        for kind in (res.kind, res.list_kind):
            name = by_gvk.get((res.group, res.version, kind))
            if name is not None:
                roots.add(name)
    wanted: set[str] = set()
    todo = sorted(roots)
    while todo:
        name = todo.pop()
        if name in wanted or name not in defs:
            continue
        wanted.add(name)
        todo.extend(sorted(_refs(defs[name]) - wanted))
    out = {}
    for name in sorted(wanted):
        schema = _convert(defs[name])
        if name in SCALARS:
            schema = {"description": defs[name].get("description", ""), **SCALARS[name]}
            if not schema["description"]:
                del schema["description"]
        out[name] = schema
    return {"kubernetesVersion": KUBERNETES_VERSION, "schemas": out}


def render(doc: dict[str, Any]) -> bytes:
    """The file's bytes: sorted compact JSON, gzip without a timestamp (reproducible)."""
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return gzip.compress(raw, compresslevel=9, mtime=0)


ACTIONS = (  # python client method prefix -> x-kubernetes-action
    ("delete_collection_", "deletecollection"),
    ("list_", "list"),
    ("read_", "get"),
    ("create_", "post"),
    ("replace_", "put"),
    ("patch_", "patch"),
    ("delete_", "delete"),
)
SERVED_SUBRESOURCES = ("status", "scale")
PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)


def _served(path: str) -> tuple[resources.Resource, str | None] | None:
    """The registry resource (and subresource) a client path names, if the sandbox serves it."""
    parts = path.strip("/").split("/")
    if len(parts) < 3 or parts[0] not in ("api", "apis") or (parts[0] == "apis" and len(parts) < 4):
        return None
    if parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    else:
        group, version, rest = parts[1], parts[2], parts[3:]
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        rest = rest[2:]
    by_path = {(r.group, r.version, r.plural): r for r in resources.ALL}
    res = by_path.get((group, version, rest[0])) if rest else None
    if res is None or res.computed:
        return None
    sub = rest[2] if len(rest) > 2 else None
    if sub is not None and (sub not in SERVED_SUBRESOURCES or res.subresource(sub) is None):
        return None
    return res, sub


def _param(name: str, annotation: Any, where: str) -> dict[str, Any]:
    description = ""
    kind = "string"
    for extra in typing.get_args(annotation)[1:]:
        description = getattr(extra, "description", None) or description
    text = str(annotation)
    if "bool" in text:
        kind = "boolean"
    elif "int" in text:
        kind = "integer"
    param: dict[str, Any] = {"name": name, "in": where, "schema": {"type": kind}}
    if description:
        param["description"] = description
    if where == "path":
        param["required"] = True
    return param


def _api_class(res: resources.Resource) -> str:
    """The Python client's class for a group-version: ``rbac.authorization.k8s.io/v1`` →
    ``RbacAuthorizationV1Api``, the core group → ``CoreV1Api``."""
    group = res.group.removesuffix(".k8s.io") or "core"
    name = "".join(part.capitalize() for part in group.split("."))
    return f"{name}{res.version.capitalize()}Api"


def build_paths(by_gvk: dict[tuple[str, str, str], str]) -> dict[str, Any]:
    """The served paths and operations, read from the Python client's API methods."""
    from kubernetes import client

    paths: dict[str, Any] = {}
    for api_name in sorted({_api_class(r) for r in resources.ALL if not r.computed}):
        api = getattr(client, api_name)
        for method_name in sorted(dir(api)):
            serializer = getattr(api, f"_{method_name}_serialize", None)
            if method_name.startswith("_") or serializer is None:
                continue
            source = inspect.getsource(serializer)
            http = re.findall(r"method='(\w+)'", source)
            url = re.findall(r"resource_path='([^']+)'", source)
            if not http or not url or "/watch/" in url[0]:
                continue
            served = _served(url[0])
            action = next((a for p, a in ACTIONS if method_name.startswith(p)), None)
            if served is None or action is None:
                continue
            res, sub = served
            signature = inspect.signature(getattr(api, method_name)).parameters
            query = re.findall(r"_query_params\.append\(\('(\w+)', (\w+)\)", source)
            parameters = [
                _param(wire, signature[py].annotation, "query")
                for wire, py in query
                if py in signature and wire != "pretty"
            ]
            gvk = {"group": res.group, "version": res.version, "kind": res.kind}
            if sub == "scale":
                gvk = {"group": "autoscaling", "version": "v1", "kind": "Scale"}
            returns = by_gvk.get((gvk["group"], gvk["version"], gvk["kind"]))
            if action in ("list", "deletecollection"):
                returns = by_gvk.get((res.group, res.version, res.list_kind))
                if action == "deletecollection":
                    returns = "io.k8s.apimachinery.pkg.apis.meta.v1.Status"
            if action == "delete":
                returns = "io.k8s.apimachinery.pkg.apis.meta.v1.Status"
            operation: dict[str, Any] = {
                "operationId": method_name,
                "parameters": parameters,
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {
                            "application/json": {"schema": {"$ref": V3_PREFIX + str(returns)}}
                        },
                    }
                },
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
            }
            if action in ("post", "put"):
                operation["requestBody"] = {
                    "content": {
                        "*/*": {
                            "schema": {
                                "$ref": V3_PREFIX
                                + str(by_gvk.get((gvk["group"], gvk["version"], gvk["kind"])))
                            }
                        }
                    },
                    "required": True,
                }
            elif action == "patch":
                patch = {
                    "schema": {"$ref": V3_PREFIX + "io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}
                }
                operation["requestBody"] = {
                    "content": dict.fromkeys(PATCH_TYPES, patch),
                    "required": True,
                }
            item = paths.setdefault(url[0], {})
            item[http[0].lower()] = operation
            item["parameters"] = [
                _param(name, signature[name].annotation, "path")
                for name in ("name", "namespace")
                if "{" + name + "}" in url[0]
            ]
    return paths


def main() -> int:
    defs = json.loads(source_path().read_text(encoding="utf-8"))["$defs"]
    doc = build(defs)
    doc["paths"] = build_paths(_gvk_names(defs))
    data = render(doc)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_bytes(data)
    print(f"wrote {OUTPUT} ({len(data)} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
