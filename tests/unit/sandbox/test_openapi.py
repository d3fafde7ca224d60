"""The committed OpenAPI data is exactly what the generator builds from its sources."""

from __future__ import annotations

import json

from crystal_runbook.sandbox import openapi_gen, resources, schema


def fresh() -> bytes:
    defs = json.loads(openapi_gen.source_path().read_text(encoding="utf-8"))["$defs"]
    doc = openapi_gen.build(defs)
    doc["paths"] = openapi_gen.build_paths(openapi_gen._gvk_names(defs))
    return openapi_gen.render(doc)


class TestGeneratedData:
    """Regenerate with `python -m crystal_runbook.sandbox.openapi_gen` when these fail."""

    def test_committed_file_is_a_fresh_build(self) -> None:
        """Nothing in data/openapi-definitions.json.gz was edited by hand or is stale."""
        assert openapi_gen.OUTPUT.read_bytes() == fresh()

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
