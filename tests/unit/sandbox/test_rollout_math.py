"""Rolling-update arithmetic and small formatting helpers."""

from __future__ import annotations

import pytest

from crystal_runbook.sandbox import deployments, tables


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
