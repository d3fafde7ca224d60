"""The served kinds' schemas, and what the API server does with fields they do not declare.

The schemas are Kubernetes 1.37's own definitions, generated into
``data/openapi-definitions.json.gz`` by ``openapi_gen`` (never typed by hand) and loaded on
first use, so starting the sandbox costs nothing. Decoding a request into a typed object
drops every field its type does not declare; the ``fieldValidation`` query parameter says
what the client hears about it (``staging/src/k8s.io/apiserver/pkg/endpoints/handlers``:
``create.go``/``update.go``/``patch.go`` with ``runtime.StrictDecodingError``):

- ``Ignore``: nothing;
- ``Warn`` (the default since 1.23): a ``Warning: 299 - "unknown field \\"spec.foo\\""``
  response header per field, and the request succeeds without them;
- ``Strict``: 400 BadRequest ``strict decoding error: unknown field "spec.foo"``.

So an unknown field in a patch never reaches the stored object, and never starts a rollout.
"""

from __future__ import annotations

import gzip
import json
import threading
from pathlib import Path
from typing import Any

from crystal_runbook.sandbox import apierrors, resources

DATA = Path(__file__).with_name("data") / "openapi-definitions.json.gz"
REF = "#/components/schemas/"
VALIDATION_MODES = ("Ignore", "Warn", "Strict")

Obj = dict[str, Any]


class Schemas:
    """The generated definitions, loaded once when first needed."""

    def __init__(self, path: Path = DATA) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._doc: Obj | None = None
        self._by_gvk: dict[tuple[str, str, str], str] = {}

    @property
    def doc(self) -> Obj:
        with self._lock:
            if self._doc is None:
                doc = json.loads(gzip.decompress(self._path.read_bytes()))
                for name, schema in doc["schemas"].items():
                    for gvk in schema.get("x-kubernetes-group-version-kind") or []:
                        key = (gvk.get("group", ""), gvk["version"], gvk["kind"])
                        self._by_gvk[key] = name
                self._doc = doc
            return self._doc

    def definition(self, group: str, version: str, kind: str) -> str | None:
        """The definition name of a kind (``io.k8s.api.apps.v1.Deployment``)."""
        _ = self.doc
        return self._by_gvk.get((group, version, kind))

    def resolve(self, node: Obj) -> Obj:
        """A schema node with its ``$ref`` (or single-``allOf`` ref) followed."""
        schemas = self.doc["schemas"]
        seen = 0
        while seen < 32:
            seen += 1
            ref = node.get("$ref")
            if ref is None and len(node.get("allOf") or []) == 1:
                ref = node["allOf"][0].get("$ref")
            if not isinstance(ref, str):
                return node
            node = schemas.get(ref.removeprefix(REF), {})
        return node

    def unknown_fields(self, res: resources.Resource, obj: Obj) -> list[str]:
        """Drop the fields ``res``'s type does not declare from ``obj``; return their paths."""
        name = self.definition(res.group, res.version, res.kind)
        if name is None:
            return []
        found: list[str] = []
        self._prune(obj, self.doc["schemas"][name], "", found)
        return found

    def _prune(self, value: Any, node: Obj, path: str, found: list[str]) -> None:
        node = self.resolve(node)
        if node.get("x-kubernetes-preserve-unknown-fields"):
            return
        if isinstance(value, dict):
            properties = node.get("properties")
            if isinstance(properties, dict):
                for key in list(value):
                    where = f"{path}.{key}" if path else key
                    if key not in properties:
                        found.append(where)
                        del value[key]
                    else:
                        self._prune(value[key], properties[key], where, found)
                return
            extra = node.get("additionalProperties")
            if isinstance(extra, dict):
                for key, item in value.items():
                    self._prune(item, extra, f"{path}[{key}]" if path else key, found)
        elif isinstance(value, list) and isinstance(node.get("items"), dict):
            for i, item in enumerate(value):
                self._prune(item, node["items"], f"{path}[{i}]", found)


SCHEMAS = Schemas()


def field_validation(query: dict[str, str]) -> str:
    """The request's ``fieldValidation`` (``Warn`` when absent); 400 for anything else."""
    mode = query.get("fieldValidation") or "Warn"
    if mode not in VALIDATION_MODES:
        raise apierrors.bad_request(
            f'fieldValidation must be one of "Ignore", "Strict", or "Warn", got "{mode}"'
        )
    return mode


def check_fields(
    res: resources.Resource, obj: Obj, mode: str | None, warnings: list[str] | None
) -> None:
    """Apply ``fieldValidation`` ``mode`` to ``obj`` (pruned in place).

    ``mode`` None is the sandbox's own writes (the seed): they are not decoded from a
    request, so nothing is checked and the schemas are not loaded at start.
    """
    if mode is None:
        return
    unknown = SCHEMAS.unknown_fields(res, obj)
    if not unknown:
        return
    messages = [f'unknown field "{path}"' for path in unknown]
    if mode == "Strict":
        raise apierrors.bad_request("strict decoding error: " + ", ".join(messages))
    if mode == "Warn" and warnings is not None:
        warnings.extend(messages)


def warning_header(messages: list[str]) -> str:
    """The ``Warning`` header value for ``messages`` (RFC 7234 code 299, as upstream)."""
    return ", ".join("299 - " + json.dumps(m) for m in messages)
