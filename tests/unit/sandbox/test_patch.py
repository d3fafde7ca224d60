"""JSON patch, merge patch and strategic merge patch, as kubectl and the client send them."""

from __future__ import annotations

from typing import Any

import pytest

from crystal_runbook.sandbox import patch


def deployment() -> dict[str, Any]:
    return {
        "metadata": {"name": "maia", "annotations": {"a": "1"}, "finalizers": ["x"]},
        "spec": {
            "replicas": 3,
            "template": {
                "metadata": {"labels": {"app": "maia"}},
                "spec": {
                    "containers": [
                        {
                            "name": "maia",
                            "image": "maia:1",
                            "env": [
                                {"name": "MODE", "value": "hybrid"},
                                {"name": "W", "value": "0.3"},
                            ],
                            "ports": [{"containerPort": 8080, "name": "http"}],
                        },
                        {"name": "sidecar", "image": "side:1"},
                    ],
                    "tolerations": [{"key": "a"}],
                },
            },
        },
    }


class TestJsonPatch:
    """RFC 6902 operations, including the one kubectl's rollout undo sends."""

    def test_rollout_undo_patch(self) -> None:
        """Replacing /spec/template and /metadata/annotations wholesale."""
        doc = deployment()
        out = patch.json_patch(
            doc,
            [
                {"op": "replace", "path": "/spec/template", "value": {"metadata": {}, "spec": {}}},
                {"op": "replace", "path": "/metadata/annotations", "value": {"b": "2"}},
            ],
        )
        assert out["spec"]["template"] == {"metadata": {}, "spec": {}}
        assert out["metadata"]["annotations"] == {"b": "2"}
        assert doc["metadata"]["annotations"] == {"a": "1"}  # input untouched

    def test_add_remove_move_copy_test(self) -> None:
        """Every operation, array append with '-', and ~1 escaping in pointers."""
        doc = {"a": [1, 2], "b": {"x/y": 1}}
        out = patch.json_patch(
            doc,
            [
                {"op": "add", "path": "/a/-", "value": 3},
                {"op": "add", "path": "/a/0", "value": 0},
                {"op": "remove", "path": "/a/1"},
                {"op": "copy", "from": "/b/x~1y", "path": "/c"},
                {"op": "move", "from": "/c", "path": "/d"},
                {"op": "test", "path": "/d", "value": 1},
            ],
        )
        assert out == {"a": [0, 2, 3], "b": {"x/y": 1}, "d": 1}

    @pytest.mark.parametrize(
        "ops",
        [
            [{"op": "test", "path": "/a", "value": 2}],
            [{"op": "remove", "path": "/missing"}],
            [{"op": "replace", "path": "/missing", "value": 1}],
            [{"op": "add", "path": "/a/5", "value": 1}],
            [{"op": "frobnicate", "path": "/a"}],
            {"op": "add"},
        ],
    )
    def test_failures_raise(self, ops: Any) -> None:
        """Failed tests, missing paths, bad indexes and unknown ops raise PatchError."""
        with pytest.raises(patch.PatchError):
            patch.json_patch({"a": 1}, ops)


class TestMergePatch:
    """RFC 7386: maps merge, null deletes, lists replace."""

    def test_merge(self) -> None:
        """Scale's merge patch and deletions by null."""
        out = patch.merge_patch(
            {"spec": {"replicas": 3, "x": 1}, "l": [1, 2]},
            {"spec": {"replicas": 5, "x": None}, "l": [3]},
        )
        assert out == {"spec": {"replicas": 5}, "l": [3]}


class TestStrategicMerge:
    """Lists merge by their patch merge keys; directives work."""

    def test_set_image_merges_containers_by_name(self) -> None:
        """kubectl set image's patch changes one container and keeps the other."""
        out = patch.strategic_merge(
            deployment(),
            {
                "spec": {
                    "template": {
                        "spec": {
                            "$setElementOrder/containers": [{"name": "maia"}, {"name": "sidecar"}],
                            "containers": [{"image": "maia:2", "name": "maia"}],
                        }
                    }
                }
            },
        )
        containers = out["spec"]["template"]["spec"]["containers"]
        assert [(c["name"], c["image"]) for c in containers] == [
            ("maia", "maia:2"),
            ("sidecar", "side:1"),
        ]
        assert containers[0]["env"][0] == {"name": "MODE", "value": "hybrid"}

    def test_set_env_merges_env_by_name_and_keeps_order(self) -> None:
        """kubectl set env's patch, with nested $setElementOrder/env."""
        out = patch.strategic_merge(
            deployment(),
            {
                "spec": {
                    "template": {
                        "spec": {
                            "$setElementOrder/containers": [{"name": "maia"}],
                            "containers": [
                                {
                                    "$setElementOrder/env": [
                                        {"name": "MODE"},
                                        {"name": "W"},
                                        {"name": "NEW"},
                                    ],
                                    "env": [
                                        {"name": "MODE", "value": "legacy"},
                                        {"name": "NEW", "value": "1"},
                                    ],
                                    "name": "maia",
                                }
                            ],
                        }
                    }
                }
            },
        )
        env = out["spec"]["template"]["spec"]["containers"][0]["env"]
        assert env == [
            {"name": "MODE", "value": "legacy"},
            {"name": "W", "value": "0.3"},
            {"name": "NEW", "value": "1"},
        ]

    def test_delete_directives(self) -> None:
        """$patch: delete on a list item, null on a key, $deleteFromPrimitiveList."""
        out = patch.strategic_merge(
            deployment(),
            {
                "metadata": {
                    "annotations": {"a": None},
                    "$deleteFromPrimitiveList/finalizers": ["x"],
                },
                "spec": {
                    "template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}
                },
            },
        )
        assert out["metadata"]["annotations"] == {}
        assert out["metadata"]["finalizers"] == []
        assert [c["name"] for c in out["spec"]["template"]["spec"]["containers"]] == ["maia"]

    def test_replace_directive_and_unkeyed_lists(self) -> None:
        """$patch: replace on a map; lists without a merge key are replaced."""
        out = patch.strategic_merge(
            deployment(),
            {
                "spec": {
                    "template": {
                        "metadata": {"labels": {"app": "x", "$patch": "replace"}},
                        "spec": {"tolerations": [{"key": "b"}]},
                    }
                }
            },
        )
        assert out["spec"]["template"]["metadata"]["labels"] == {"app": "x"}
        assert out["spec"]["template"]["spec"]["tolerations"] == [{"key": "b"}]

    def test_ports_merge_by_container_port_and_finalizers_as_a_set(self) -> None:
        """Container ports merge by containerPort; metadata.finalizers merge as a set."""
        out = patch.strategic_merge(
            deployment(),
            {
                "metadata": {"finalizers": ["x", "y"]},
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "maia",
                                    "ports": [{"containerPort": 9090, "name": "metrics"}],
                                }
                            ]
                        }
                    }
                },
            },
        )
        assert out["metadata"]["finalizers"] == ["x", "y"]
        ports = out["spec"]["template"]["spec"]["containers"][0]["ports"]
        assert [p["containerPort"] for p in ports] == [8080, 9090]

    def test_retain_keys(self) -> None:
        """$retainKeys drops keys not listed (used for strategy changes)."""
        out = patch.strategic_merge(
            {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}},
            {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}},
        )
        assert out == {"strategy": {"type": "Recreate"}}

    def test_missing_merge_key_is_an_error(self) -> None:
        """An item of a keyed list without its key cannot be merged."""
        with pytest.raises(patch.PatchError, match="merge key 'name'"):
            patch.strategic_merge(
                deployment(), {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}
            )

    def test_list_merge_keys(self) -> None:
        """The merge-key table knows where it is: container ports vs Service ports."""
        assert patch.list_merge_key(("spec", "template", "spec", "containers")) == "name"
        assert (
            patch.list_merge_key(("spec", "template", "spec", "containers", "ports"))
            == "containerPort"
        )
        assert patch.list_merge_key(("spec", "ports")) == "port"
        assert patch.list_merge_key(("status", "conditions")) == "type"
        assert patch.list_merge_key(("spec", "template", "spec", "tolerations")) is None
