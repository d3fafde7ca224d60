"""The PromQL subset the scrape source evaluates: what it accepts, refuses and computes."""

from __future__ import annotations

import math

import pytest

from crystal_runbook.triggers import promql
from crystal_runbook.triggers.promql import Series
from crystal_runbook.triggers.scrape import Ring, Scrape


def labels(name: str, **extra: str) -> promql.Labels:
    return tuple(sorted({promql.NAME: name, "job": "maia", **extra}.items()))


def ring_with(scrapes: list[tuple[float, dict[promql.Labels, float]]], target: str = "a") -> Ring:
    ring = Ring(keep_seconds=3600)
    for at, samples in scrapes:
        ring.add(target, Scrape(at=at, samples=samples))
    return ring


class TestParsing:
    """Queries inside the subset parse; outside it they fail with a position."""

    @pytest.mark.parametrize(
        "text",
        [
            'avg(coherence_ratio{job="maia"})',
            'sum(rate(http_request_errors_total{job="maia"}[1m])) / sum(rate(http_requests_total[1m]))',
            'histogram_quantile(0.99, sum by (le) (rate(h_bucket{job=~"ma.*"}[5m])))',
            "max without (instance) (x) * 100 - -1",
            "max_over_time(x[30s]) + min_over_time(y[1m30s])",
        ],
    )
    def test_accepts_what_rules_use(self, text: str) -> None:
        """Every form the shipped rules and docs use parses."""
        assert promql.parse(text) is not None

    @pytest.mark.parametrize(
        ("text", "fragment", "pos"),
        [
            ("rate(x[5m]) > 0.05", "comparisons belong", 12),
            ("x offset 5m", "'offset' is not supported", 2),
            ("a / on(job) b", "'on' is not supported", 4),
            ("predict_linear(x[5m], 60)", "unknown function 'predict_linear'", 0),
            ("rate(x)", "needs a range selector", 0),
            ("x[5q]", "bad range", 1),
            ('x{job=~"("}', "bad regular expression", 7),
            ("", "empty", 0),
        ],
    )
    def test_refuses_the_rest_with_a_position(self, text: str, fragment: str, pos: int) -> None:
        """What the scrape source cannot run is refused before anything runs, pointing at it."""
        with pytest.raises(promql.PromQLError) as caught:
            promql.parse(text)
        assert fragment in caught.value.message
        assert caught.value.pos == pos


class TestEvaluation:
    """Evaluation over scraped samples matches Prometheus' meaning."""

    def test_rate_counts_resets_and_ratio_of_rates(self) -> None:
        """A counter that restarts still gives the right rate; errors/requests is the ratio."""
        ring = ring_with(
            [
                (100.0, {labels("req"): 1000.0, labels("err"): 10.0}),
                (110.0, {labels("req"): 1500.0, labels("err"): 60.0}),
                (120.0, {labels("req"): 300.0, labels("err"): 30.0}),  # restarted
            ]
        )
        rate = promql.evaluate(promql.parse("rate(req[1m])"), ring, 120.0)
        assert isinstance(rate, list)
        assert rate[0].value == pytest.approx((500 + 300) / 20)
        ratio = promql.evaluate(
            promql.parse("sum(rate(err[1m])) / sum(rate(req[1m]))"), ring, 120.0
        )
        assert isinstance(ratio, list)
        assert ratio[0].value == pytest.approx((50 + 30) / 800)

    def test_histogram_quantile_interpolates_like_prometheus(self) -> None:
        """p99 of buckets 0.1:90, 0.5:95, 1:99, +Inf:100 is 1.0; p50 is inside the first."""
        buckets = [
            Series(labels("h_bucket", le=le), v)
            for le, v in (("0.1", 90.0), ("0.5", 95.0), ("1", 99.0), ("+Inf", 100.0))
        ]
        p99 = promql.histogram_quantile(0.99, buckets)
        assert p99[0].value == pytest.approx(1.0)
        p50 = promql.histogram_quantile(0.5, buckets)
        assert p50[0].value == pytest.approx(0.1 * 50 / 90)
        beyond = promql.histogram_quantile(0.995, buckets)  # in the +Inf bucket
        assert beyond[0].value == pytest.approx(1.0)
        empty = promql.histogram_quantile(0.99, [Series(labels("h", le="+Inf"), 0.0)])
        assert math.isnan(empty[0].value)

    def test_vector_matching_and_aggregation_by_labels(self) -> None:
        """in_use / max matches per pod; max by (job) keeps the job label."""
        ring = ring_with(
            [
                (
                    10.0,
                    {
                        labels("pool_in_use", instance="p1"): 98.0,
                        labels("pool_max", instance="p1"): 100.0,
                        labels("pool_in_use", instance="p2"): 20.0,
                        labels("pool_max", instance="p2"): 100.0,
                    },
                )
            ]
        )
        per_pod = promql.evaluate(promql.parse("pool_in_use / pool_max"), ring, 10.0)
        assert isinstance(per_pod, list)
        assert sorted(s.value for s in per_pod) == [0.2, 0.98]
        worst = promql.evaluate(promql.parse("max by (job) (pool_in_use / pool_max)"), ring, 10.0)
        assert isinstance(worst, list)
        assert worst == [Series((("job", "maia"),), 0.98)]

    def test_a_failed_scrape_makes_series_vanish(self) -> None:
        """After a failed scrape, the target's old numbers are not served as current."""
        ring = ring_with([(10.0, {labels("up"): 1.0})])
        ring.add("a", Scrape(at=20.0, error="refused"))
        assert promql.evaluate(promql.parse("up"), ring, 15.0) != []
        assert promql.evaluate(promql.parse("up"), ring, 25.0) == []

    def test_zero_over_zero_is_nan_not_zero(self) -> None:
        """No requests means no error rate (NaN), never a reassuring 0."""
        value = promql.evaluate(promql.parse("0 / 0"), ring_with([]), 0.0)
        assert isinstance(value, float)
        assert math.isnan(value)
