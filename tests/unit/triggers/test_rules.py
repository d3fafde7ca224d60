"""Rule states follow Prometheus' alerting rules, plus no_data and error; trends and ratios."""

from __future__ import annotations

import pytest

from crystal_runbook.triggers import model, rules
from crystal_runbook.triggers.promql import Series


def rule(**overrides: object) -> model.Rule:
    base: dict[str, object] = {"name": "r", "query": "x", "op": ">", "threshold": 5, "for": 10}
    return model.Rule.model_validate({**base, **overrides})


def value(v: float, threshold: float = 5) -> rules.Observation:
    return rules.Observation("value", v, (Series((), v),), condition=v > threshold)


def run(r: model.Rule, observations: list[tuple[float, rules.Observation]]) -> list[str]:
    state = rules.RuleState()
    return [rules.step(r, state, obs, at).state for at, obs in observations]


class TestForWindows:
    """inactive → pending → firing only when the condition held at every evaluation."""

    def test_fires_once_the_window_has_passed(self) -> None:
        """for: 10s at 1 s evaluations fires on the eleventh look (t = 10), not before."""
        states = run(rule(), [(float(t), value(9)) for t in range(12)])
        assert states[:10] == ["pending"] * 10
        assert states[10:] == ["firing", "firing"]

    def test_one_clear_evaluation_restarts_the_window(self) -> None:
        """A dip under the threshold sends the rule back to inactive; the window starts over."""
        obs = [
            (0.0, value(9)),
            (5.0, value(1)),
            (6.0, value(9)),
            (15.0, value(9)),
            (16.0, value(9)),
        ]
        assert run(rule(), obs) == ["pending", "inactive", "pending", "pending", "firing"]

    def test_for_zero_fires_at_once(self) -> None:
        """Without a window the first holding evaluation fires."""
        assert run(rule(**{"for": 0}), [(0.0, value(9))]) == ["firing"]

    def test_firing_resolves_when_clear(self) -> None:
        """Like a resolved alert: firing goes straight back to inactive."""
        assert run(rule(**{"for": 0}), [(0.0, value(9)), (1.0, value(2))]) == ["firing", "inactive"]


class TestMissingData:
    """Missing data is never healthy, and never fires unless the rule says so."""

    def test_no_series_is_no_data_and_restarts_the_window(self) -> None:
        """A vanished series is `no_data`, and pending starts over afterwards."""
        missing = rules.Observation("missing", message="the query returned no data")
        obs = [(0.0, value(9)), (5.0, missing), (6.0, value(9)), (15.0, value(9))]
        assert run(rule(), obs) == ["pending", "no_data", "pending", "pending"]

    def test_on_missing_fire_counts_missing_as_holding(self) -> None:
        """`on_missing: fire` makes silence itself the alarm (a service that stopped reporting)."""
        missing = rules.Observation("missing", message="gone")
        obs = [(0.0, missing), (10.0, missing)]
        assert run(rule(on_missing="fire"), obs) == ["pending", "firing"]

    def test_a_failed_evaluation_keeps_the_window(self) -> None:
        """As Prometheus keeps an alert's state on a failed evaluation: one blip is not a reset."""
        down = rules.Observation("unavailable", message="no data: refused")
        state = rules.RuleState()
        r = rule()
        rules.step(r, state, value(9), 0.0)
        rules.step(r, state, down, 5.0)
        assert state.state == "no_data"
        assert state.active_at == 0.0
        rules.step(r, state, value(9), 10.0)
        assert state.state == "firing"

    def test_a_refused_query_is_error(self) -> None:
        """A query the source refuses is `error`, with the source's message."""
        bad = rules.Observation("rejected", message="parse error at char 3")
        state = rules.step(rule(), rules.RuleState(), bad, 0.0)
        assert (state.state, state.message) == ("error", "parse error at char 3")


class TestTrend:
    """Memory increasing unbounded: slope over the window, with most deltas rising."""

    def r(self) -> model.Rule:
        return rule(kind="trend", threshold=1000, window=60, **{"for": 0})

    def feed(self, values: list[float], step: float = 5.0) -> rules.RuleState:
        r, state = self.r(), rules.RuleState()
        for i, v in enumerate(values):
            obs = rules.observe_trend(r, state, i * step, [Series((), v)])
            rules.step(r, state, obs, i * step)
        return state

    def test_steady_growth_fires(self) -> None:
        """4 MB/s for a minute: slope 4e6/s, every delta up: firing."""
        state = self.feed([200e6 + 4e6 * 5 * i for i in range(13)])
        assert state.state == "firing"
        assert state.value == pytest.approx(4e6)

    def test_saw_teeth_do_not_fire(self) -> None:
        """Garbage-collector saw teeth rise on average but not at 90 % of steps."""
        teeth = [200e6 + i * 1e6 - (3e6 if i % 3 == 2 else 0) for i in range(13)]
        state = self.feed(teeth)
        assert state.value is not None
        assert state.value > 1000
        assert state.state == "inactive"

    def test_too_short_a_history_is_collecting_not_firing(self) -> None:
        """Three values cannot prove a trend over a minute."""
        state = self.feed([1e6, 2e6, 3e6])
        assert state.state == "inactive"
        assert "collecting" in state.message

    def test_least_squares_slope(self) -> None:
        """The slope of y = 3t + noise-free is 3; all deltas positive."""
        shape = rules.trend([(t, 3.0 * t + 7) for t in range(10)])
        assert shape is not None
        assert (shape.slope, shape.rising) == (pytest.approx(3.0), 1.0)


class TestReduction:
    """Several series (pods) become one value: the worst for the comparison."""

    def test_worst_is_max_for_above_and_min_for_below(self) -> None:
        """`>` looks at the largest, `<` at the smallest; NaN is ignored."""
        series = [Series((("p", "1"),), 0.2), Series((("p", "2"),), 0.9), Series((), float("nan"))]
        top = rules.worst(">", 0.5, series)
        bottom = rules.worst("<", 0.5, series)
        assert top is not None
        assert bottom is not None
        assert (top.value, bottom.value) == (0.9, 0.2)

    def test_ratio_matches_pods_and_skips_zero_denominators(self) -> None:
        """in_use / max per pod; a pod with max 0 has no ratio rather than infinity."""
        top = [
            Series((("__name__", "in"), ("p", "1")), 98.0),
            Series((("__name__", "in"), ("p", "2")), 5.0),
        ]
        below = [
            Series((("__name__", "max"), ("p", "1")), 100.0),
            Series((("__name__", "max"), ("p", "2")), 0.0),
        ]
        assert rules.divide(top, below) == [Series((("p", "1"),), 0.98)]
