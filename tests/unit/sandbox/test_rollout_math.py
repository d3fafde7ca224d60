"""Rolling-update arithmetic and small formatting helpers."""

from __future__ import annotations

import pytest

from crystal_runbook.sandbox import deployments, rolloutmath, tables


class TestFenceposts:
    """maxSurge rounds up, maxUnavailable rounds down, never both zero."""

    @pytest.mark.parametrize(
        ("replicas", "surge", "unavailable", "expected"),
        [
            (3, "25%", "25%", (1, 0)),
            (4, "25%", "25%", (1, 1)),
            (20, "25%", "25%", (5, 5)),
            (10, 0, "10%", (0, 1)),
            (3, 0, 0, (0, 1)),
            (5, "50%", 2, (3, 2)),
        ],
    )
    def test_resolution(
        self, replicas: int, surge: object, unavailable: object, expected: tuple[int, int]
    ) -> None:
        """The same numbers Kubernetes' ResolveFenceposts gives."""
        d = {
            "spec": {
                "replicas": replicas,
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable},
                },
            }
        }
        assert deployments.fenceposts(d) == expected

    def test_recreate_has_no_fenceposts(self) -> None:
        """Recreate neither surges nor counts unavailability."""
        d = {"spec": {"replicas": 3, "strategy": {"type": "Recreate"}}}
        assert deployments.fenceposts(d) == (0, 0)
        assert deployments.max_unavailable(d) == 0


class TestHumanAge:
    """The AGE column."""

    @pytest.mark.parametrize(
        ("seconds", "text"),
        [
            (5, "5s"),
            (119, "119s"),
            (200, "3m20s"),
            (600, "10m"),
            (3 * 3600 + 120, "3h2m"),
            (30 * 3600, "30h"),
            (3 * 86400 + 7200, "3d2h"),
            (20 * 86400, "20d"),
        ],
    )
    def test_format(self, seconds: int, text: str) -> None:
        """Matches kubectl's duration.HumanDuration."""
        assert tables.human_age(seconds) == text


def _rs(name: str, size: int, max_replicas: int, created: str) -> dict[str, object]:
    return {
        "metadata": {
            "name": name,
            "creationTimestamp": created,
            "annotations": {"deployment.kubernetes.io/max-replicas": str(max_replicas)},
        },
        "spec": {"replicas": size},
    }


class TestProportionalSizes:
    """sync.go scale(): a resize is shared out by getReplicaSetFraction, leftovers to the first."""

    @pytest.mark.parametrize(
        ("old", "new", "max_before", "replicas", "expected", "operation"),
        [
            (8, 5, 13, 20, {"old": 15, "new": 10}, "up"),  # 25 allowed: 15.4 → 15, 9.6 → 10
            (15, 10, 25, 5, {"old": 4, "new": 3}, "down"),  # 7 allowed: 4.2 → 4, 2.8 → 3
            (2, 2, 5, 8, {"old": 4, "new": 6}, "up"),  # a tie: newer first, takes the leftover 2
            (3, 1, 5, 0, {"old": 0, "new": 0}, "down"),  # to zero: every fraction is -size
        ],
    )
    def test_sizes(
        self,
        *,
        old: int,
        new: int,
        max_before: int,
        replicas: int,
        expected: dict[str, int],
        operation: str,
    ) -> None:
        """The sizes upstream computes, in upstream's order."""
        d = {
            "metadata": {"name": "d"},
            "spec": {
                "replicas": replicas,
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
                },
            },
        }
        old_rs = _rs("old", old, max_before, "2026-01-01T00:00:00Z")
        new_rs = _rs("new", new, max_before, "2026-01-01T00:01:00Z")
        sizes, op = rolloutmath.proportional_sizes(d, new_rs, [old_rs])
        assert {rs["metadata"]["name"]: size for rs, size in sizes} == expected
        assert op == operation
