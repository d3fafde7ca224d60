"""Fault rules: the CLI spec syntax, validation and the decision per request."""

from __future__ import annotations

import pytest

from crystal_runbook.sandbox import faults


class TestSpec:
    """KIND[,key=value...] as the CLI takes it."""

    @pytest.mark.parametrize(
        ("spec", "expected"),
        [
            ("500", faults.Fault(kind="status", status=500)),
            (
                "429,fraction=0.5,retry_after=2",
                faults.Fault(kind="status", status=429, fraction=0.5, retry_after=2),
            ),
            ("drop,count=1", faults.Fault(kind="drop", count=1)),
            (
                "latency=0.25,path=/pods,method=get",
                faults.Fault(kind="latency", latency=0.25, path="/pods", method="get"),
            ),
        ],
    )
    def test_parse(self, spec: str, expected: faults.Fault) -> None:
        """Each form parses to the rule it describes."""
        assert faults.Fault.parse(spec) == expected

    @pytest.mark.parametrize(
        ("spec", "message"),
        [
            ("", "empty fault spec"),
            ("boom", "must start with an HTTP status"),
            ("200", "4xx or 5xx"),
            ("500,fraction=2", "between 0 and 1"),
            ("500,colour=red", "unknown fault keys"),
            ("500,path=(", "not a regular expression"),
            ("500,fraction", "must be key=value"),
        ],
    )
    def test_errors_say_what_to_write(self, spec: str, message: str) -> None:
        """Bad specs raise FaultSpecError with a useful message."""
        with pytest.raises(faults.FaultSpecError, match=message):
            faults.Fault.parse(spec)


class TestDecisions:
    """Which requests a set of rules affects, and how."""

    def test_count_path_and_method(self) -> None:
        """A rule fires only for matching requests, at most count times."""
        rules = faults.FaultSet(
            [faults.Fault(kind="status", status=503, path="^/apis", method="PATCH", count=1)]
        )
        assert rules.decide("GET", "/apis/apps/v1") is None
        decision = rules.decide("PATCH", "/apis/apps/v1/x")
        assert decision is not None
        assert decision.status == 503
        assert decision.retry_after == 1.0
        assert rules.decide("PATCH", "/apis/apps/v1/x") is None
        assert rules.describe()[0]["fired"] == 1

    def test_latency_adds_up_and_first_failure_wins(self) -> None:
        """Latency rules accumulate; only the first failing rule applies."""
        rules = faults.FaultSet(
            [
                faults.Fault(kind="latency", latency=0.1),
                faults.Fault(kind="latency", latency=0.2),
                faults.Fault(kind="drop"),
                faults.Fault(kind="status", status=500),
            ]
        )
        decision = rules.decide("GET", "/x")
        assert decision is not None
        assert decision.latency == pytest.approx(0.3)
        assert decision.drop
        assert decision.status is None
        assert decision.faults == ["latency:0.1", "latency:0.2", "drop"]

    def test_fraction_is_a_share(self) -> None:
        """fraction=0.25 affects about a quarter of requests (seeded for repeatability)."""
        rules = faults.FaultSet([faults.Fault(kind="status", status=500, fraction=0.25)], seed=7)
        hits = sum(1 for _ in range(2000) if rules.decide("GET", "/x") is not None)
        assert 400 < hits < 600
