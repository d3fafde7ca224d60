"""The committed OpenAPI data: built from its sources, in the shape kubectl reads.

The schemas come from ``kubernetes-validate`` (pinned to 1.37.0), so they are compared
exactly. The paths come from the installed ``kubernetes`` client's API methods, whose
generated text moves with every client release; they are compared by shape (the same
operations with the same kinds and the parameters kubectl sends), and byte for byte only
on the client line they were generated with.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

import kubernetes
import pytest

from crystal_runbook.sandbox import openapi_gen, resources, schema

ACTIONS = {"get", "list", "post", "put", "patch", "delete", "deletecollection"}
METHODS = {"get", "post", "put", "patch", "delete"}


def definitions() -> dict[str, Any]:
    defs: dict[str, Any] = json.loads(openapi_gen.source_path().read_text(encoding="utf-8"))[
        "$defs"
    ]
    return defs


def fresh() -> dict[str, Any]:
    defs = definitions()
    doc = openapi_gen.build(defs)
    doc["paths"] = openapi_gen.build_paths(openapi_gen._gvk_names(defs))
    return doc


def committed() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(gzip.decompress(openapi_gen.OUTPUT.read_bytes()))
    return doc


def skeleton(paths: dict[str, Any]) -> dict[tuple[str, str], tuple[str, str]]:
    """(path, method) -> (action, kind): what a client release cannot change."""
    return {
        (path, method): (op["x-kubernetes-action"], op["x-kubernetes-group-version-kind"]["kind"])
        for path, item in paths.items()
        for method, op in item.items()
        if method in METHODS
    }


class TestGeneratedData:
    """Regenerate with `python -m crystal_runbook.sandbox.openapi_gen` when these fail."""

    def test_committed_schemas_are_a_fresh_build(self) -> None:
        """The schemas equal a fresh build from the pinned Kubernetes 1.37 definitions."""
        doc, built = committed(), openapi_gen.build(definitions())
        assert doc["kubernetesVersion"] == built["kubernetesVersion"] == "1.37.0"
        assert doc["schemas"] == built["schemas"]

    def test_committed_paths_have_the_shape_kubectl_reads(self) -> None:
        """Each operation names its action, kind, response schema and typed parameters."""
        doc = committed()
        schemas, paths = doc["schemas"], doc["paths"]
        for path, item in paths.items():
            assert {p["name"] for p in item["parameters"]} == {
                name for name in ("name", "namespace") if "{" + name + "}" in path
            }, path
            for method, op in item.items():
                if method == "parameters":
                    continue
                assert method in METHODS, (path, method)
                assert op["x-kubernetes-action"] in ACTIONS, (path, method)
                assert set(op["x-kubernetes-group-version-kind"]) == {"group", "version", "kind"}
                ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
                assert ref.removeprefix(openapi_gen.V3_PREFIX) in schemas, (path, method, ref)
                for param in op["parameters"]:
                    assert param["in"] == "query", (path, method, param)
                    assert param["schema"]["type"] in {"string", "integer", "boolean"}, param
                if method == "patch":
                    assert set(op["requestBody"]["content"]) == set(openapi_gen.PATCH_TYPES)
                    names = {p["name"] for p in op["parameters"]}
                    assert {"fieldValidation", "fieldManager", "dryRun", "force"} <= names, path
        served = {(r.group, r.version, r.kind) for r in resources.ALL if not r.computed}
        kinds = {
            tuple(
                op["x-kubernetes-group-version-kind"][key] for key in ("group", "version", "kind")
            )
            for item in paths.values()
            for method, op in item.items()
            if method in METHODS
        }
        assert served <= kinds  # every stored kind has its operations

    def test_the_installed_client_builds_the_same_operations(self) -> None:
        """A fresh build from whatever kubernetes client is installed has the same operations
        (paths, methods, actions, kinds) and every query parameter kubectl relies on."""
        doc, built = committed(), fresh()
        assert skeleton(built["paths"]) == skeleton(doc["paths"])
        for path, item in doc["paths"].items():
            for method, op in item.items():
                if method in METHODS:
                    mine = {p["name"] for p in op["parameters"]}
                    theirs = {p["name"] for p in built["paths"][path][method]["parameters"]}
                    assert {"fieldValidation", "dryRun"} & mine <= theirs, (path, method)

    @pytest.mark.skipif(
        kubernetes.__version__.split(".")[0] != openapi_gen.CLIENT_LINE,
        reason="the paths' text was generated with another kubernetes client line",
    )
    def test_committed_file_is_a_fresh_build_on_its_client_line(self) -> None:
        """On the client line it was generated with, the file is byte for byte a fresh build."""
        assert openapi_gen.OUTPUT.read_bytes() == openapi_gen.render(fresh())

    def test_every_stored_kind_has_its_definition(self) -> None:
        """Each served kind (not the computed metrics) has a schema with its GVK."""
        schemas = schema.Schemas()
        for res in resources.ALL:
            if res.computed:
                continue
            assert schemas.definition(res.group, res.version, res.kind), res.kind


class TestPruning:
    """Unknown fields are found at their full path and removed; known ones stay."""

    def test_paths_of_unknown_fields(self) -> None:
        """Nested objects, list items and maps are followed as the decoder follows them."""
        obj = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "x", "labels": {"any": "label"}, "nme": "typo"},
            "spec": {
                "replicas": 1,
                "template": {"spec": {"containers": [{"name": "c", "imagee": "x"}]}},
                "strategy": {"rollingUpdate": {"maxSurge": "25%"}},
            },
        }
        found = schema.Schemas().unknown_fields(resources.DEPLOYMENTS, obj)
        assert found == ["metadata.nme", "spec.template.spec.containers[0].imagee"]
        assert obj["metadata"] == {"name": "x", "labels": {"any": "label"}}
        assert obj["spec"]["template"]["spec"]["containers"] == [{"name": "c"}]
        assert obj["spec"]["strategy"] == {"rollingUpdate": {"maxSurge": "25%"}}
