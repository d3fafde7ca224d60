"""``/openapi/v3``: the OpenAPI documents kubectl reads before ``apply`` and ``create -f``.

kubectl 1.37 fetches ``/openapi/v3`` (an index of one document per group-version, each
named by a content hash), then the document of the object's group-version. If the PATCH
operation of the object's kind lists the ``fieldValidation`` parameter, kubectl validates
on the server (it sends ``fieldValidation=Strict``) instead of downloading ``/openapi/v2``
to validate itself, and its strategic merge patches follow the schemas'
``x-kubernetes-patch-*`` extensions. The paths and schemas come from the generated data
(``openapi_gen``: the Python client's operations, Kubernetes 1.37's definitions), filtered
per group-version and closed over their references, as kube-openapi publishes them
(``k8s.io/kube-openapi/pkg/handler3``). Documents are built on first request and kept.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

from crystal_runbook.sandbox import schema

Obj = dict[str, Any]
REF = schema.REF


def _group_version(path: str) -> str:
    """``/apis/apps/v1/namespaces/...`` → ``apis/apps/v1``; ``/api/v1/...`` → ``api/v1``."""
    parts = path.strip("/").split("/")
    return "/".join(parts[:2] if parts[0] == "api" else parts[:3])


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.add(value.removeprefix(REF))
            else:
                found |= _refs(value)
    elif isinstance(node, list):
        for item in node:
            found |= _refs(item)
    return found


class OpenAPIV3:
    """The index and the per-group-version documents, built once."""

    def __init__(self, schemas: schema.Schemas = schema.SCHEMAS) -> None:
        self._schemas = schemas
        self._lock = threading.Lock()
        self._docs: dict[str, bytes] | None = None
        self._hashes: dict[str, str] = {}

    def _build(self) -> dict[str, bytes]:
        data = self._schemas.doc
        version = data.get("kubernetesVersion", "")
        grouped: dict[str, Obj] = {}
        for path, item in sorted(data.get("paths", {}).items()):
            grouped.setdefault(_group_version(path), {})[path] = item
        docs: dict[str, bytes] = {}
        for gv, paths in grouped.items():
            wanted: set[str] = set()
            todo = sorted(_refs(paths))
            while todo:
                name = todo.pop()
                if name in wanted or name not in data["schemas"]:
                    continue
                wanted.add(name)
                todo.extend(sorted(_refs(data["schemas"][name]) - wanted))
            doc = {
                "openapi": "3.0.0",
                "info": {"title": "Kubernetes", "version": f"v{version}"},
                "paths": paths,
                "components": {"schemas": {n: data["schemas"][n] for n in sorted(wanted)}},
            }
            body = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
            docs[gv] = body
            self._hashes[gv] = hashlib.sha512(body).hexdigest().upper()
        return docs

    def _documents(self) -> dict[str, bytes]:
        with self._lock:
            if self._docs is None:
                self._docs = self._build()
            return self._docs

    def index(self) -> Obj:
        """``GET /openapi/v3``: where each group-version's document is."""
        docs = self._documents()
        return {
            "paths": {
                gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash={self._hashes[gv]}"}
                for gv in sorted(docs)
            }
        }

    def document(self, gv: str) -> bytes | None:
        """``GET /openapi/v3/<gv>``: the document's JSON bytes, or None if not served."""
        return self._documents().get(gv.strip("/"))
