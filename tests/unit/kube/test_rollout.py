"""kubectl's rollout decisions as pure functions: previous revision, template equality, status."""

from __future__ import annotations

from typing import Any

import pytest

from crystal_runbook import errors
from crystal_runbook.kube import rollout


def rs(
    name: str, revision: int, image: str, uid: str = "dep-uid", hash_: str = "h"
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "annotations": {rollout.REVISION: str(revision), "note": name},
            "labels": {"app": "maia", rollout.HASH_LABEL: hash_},
            "ownerReferences": [{"uid": uid, "controller": True}],
        },
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "maia", rollout.HASH_LABEL: hash_}},
                "spec": {
                    "containers": [
                        {
                            "name": "maia",
                            "image": image,
                            "env": [{"name": "CRYSTAL_MODE", "value": "hybrid"}],
                        }
                    ]
                },
            }
        },
    }


DEPLOYMENT = {
    "metadata": {
        "name": "maia",
        "uid": "dep-uid",
        "generation": 4,
        "annotations": {
            rollout.REVISION: "3",
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
        },
    },
    "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "maia", "tier": "web"}}},
}


class TestPickTarget:
    def test_previous_is_the_second_highest_revision(self) -> None:
        """Revision 0 means the previous one, whatever the list order."""
        sets = [rs("c", 3, "v3"), rs("a", 1, "v1"), rs("b", 2, "v2")]
        assert rollout.pick_target("maia", sets, 0)["metadata"]["name"] == "b"

    def test_explicit_revision_and_missing_one(self) -> None:
        """--to-revision picks that one; a missing one names the kept revisions."""
        sets = [rs("a", 1, "v1"), rs("c", 3, "v3")]
        assert rollout.pick_target("maia", sets, 1)["metadata"]["name"] == "a"
        with pytest.raises(errors.PermanentActionError, match="revision 2 not found") as info:
            rollout.pick_target("maia", sets, 2)
        assert "revisions kept: 1, 3" in str(info.value)

    def test_single_revision_has_no_history(self) -> None:
        """Nothing to go back to."""
        with pytest.raises(errors.PermanentActionError, match="no rollout history"):
            rollout.pick_target("maia", [rs("a", 1, "v1")], 0)

    def test_only_replicasets_controlled_by_the_deployment_count(self) -> None:
        """A ReplicaSet with the same labels but another owner is not history."""
        sets = [rs("a", 1, "v1"), rs("x", 5, "v5", uid="other")]
        assert [r["metadata"]["name"] for r in rollout.owned_replicasets(DEPLOYMENT, sets)] == ["a"]


class TestTemplates:
    def test_target_template_drops_the_hash_and_takes_env_overrides(self) -> None:
        """The rollback template is the old one, hash-free, with CRYSTAL_MODE=legacy."""
        template = rollout.rollback_template(
            rs("a", 1, "v1"), {"CRYSTAL_MODE": "legacy", "NEW": "1"}
        )
        assert rollout.HASH_LABEL not in template["metadata"]["labels"]
        assert template["spec"]["containers"][0]["env"] == [
            {"name": "CRYSTAL_MODE", "value": "legacy"},
            {"name": "NEW", "value": "1"},
        ]

    def test_semantic_equality_ignores_hash_and_empty_fields(self) -> None:
        """Equal templates compare equal with or without hash label or empty lists."""
        a = rs("a", 1, "v1")["spec"]["template"]
        b = rollout.rollback_template(rs("a", 1, "v1"))
        b["spec"]["volumes"] = []
        assert rollout.templates_equal(a, b)
        assert rollout.template_digest(a) == rollout.template_digest(b)
        assert not rollout.templates_equal(a, rs("b", 2, "v2")["spec"]["template"])

    def test_annotations_merge_like_kubectl_plus_ours(self) -> None:
        """Skipped keys stay from the Deployment; others come from the ReplicaSet; ours added."""
        merged = rollout.rollback_annotations(
            DEPLOYMENT, rs("a", 1, "v1"), {"crystal-runbook.io/x": "1"}
        )
        assert merged[rollout.REVISION] == "3"
        assert merged["kubectl.kubernetes.io/last-applied-configuration"] == "{}"
        assert merged["note"] == "a"
        assert merged["crystal-runbook.io/x"] == "1"

    def test_selector_string(self) -> None:
        """matchLabels become a label selector."""
        assert rollout.selector_string(DEPLOYMENT) == "app=maia,tier=web"


class TestProgress:
    @pytest.mark.parametrize(
        ("status", "generation", "done", "words"),
        [
            ({"observedGeneration": 3}, 4, False, "spec update to be observed"),
            (
                {"observedGeneration": 4, "updatedReplicas": 1, "replicas": 3},
                4,
                False,
                "1 of 3 new replicas",
            ),
            (
                {"observedGeneration": 4, "updatedReplicas": 3, "replicas": 4},
                4,
                False,
                "1 old replicas",
            ),
            (
                {
                    "observedGeneration": 4,
                    "updatedReplicas": 3,
                    "replicas": 3,
                    "readyReplicas": 3,
                    "availableReplicas": 2,
                },
                4,
                False,
                "2 of 3 updated replicas are available",
            ),
            (
                {
                    "observedGeneration": 4,
                    "updatedReplicas": 3,
                    "replicas": 3,
                    "readyReplicas": 3,
                    "availableReplicas": 3,
                },
                4,
                True,
                "successfully rolled out",
            ),
        ],
    )
    def test_rollout_status_reading(
        self, status: dict[str, Any], generation: int, done: bool, words: str
    ) -> None:
        """Each stage of a rollout reads as kubectl says it."""
        dep = {
            **DEPLOYMENT,
            "metadata": {**DEPLOYMENT["metadata"], "generation": generation},
            "status": status,
        }
        progress = rollout.rollout_progress(dep)
        assert progress.done is done
        assert words in progress.message

    def test_progress_deadline_is_a_failure(self) -> None:
        """ProgressDeadlineExceeded ends the wait as failed."""
        dep = {
            **DEPLOYMENT,
            "status": {
                "observedGeneration": 4,
                "conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}],
            },
        }
        assert rollout.rollout_progress(dep).failed
