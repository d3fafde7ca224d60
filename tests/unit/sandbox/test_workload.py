"""The simulated service's numbers: good vs burning releases, counters, histogram, logs."""

from __future__ import annotations

import json

import pytest

from crystal_runbook.sandbox import workload


def container(image: str, started: float = 1000.0, **kw: float) -> workload.Container:
    return workload.Container(
        pod="maia-x",
        namespace="crystal",
        uid="u1",
        name="maia",
        image=image,
        env={"CRYSTAL_MODE": "hybrid"},
        started_at=started,
        **kw,
    )


def histogram_quantile(q: float, counters: workload.Counters) -> float:
    """Prometheus' histogram_quantile over cumulative buckets (linear within a bucket)."""
    total = counters.requests
    rank = q * total
    lo_bound, lo_count = 0.0, 0.0
    for bound, count in zip(workload.BUCKETS, counters.buckets, strict=True):
        if count >= rank:
            return lo_bound + (bound - lo_bound) * (rank - lo_count) / (count - lo_count)
        lo_bound, lo_count = bound, count
    return workload.BUCKETS[-1]


class TestImages:
    """Image tags decide the behaviour."""

    @pytest.mark.parametrize(
        ("image", "kind"),
        [
            ("registry.local/maia:1.5.0", workload.GOOD),
            ("registry.local/maia:1.6.0-bad", workload.BAD),
            ("registry.local:5000/maia:1.6.0-crash", workload.CRASH),
            ("maia", workload.GOOD),
            ("maia@sha256:abc", workload.GOOD),
        ],
    )
    def test_kind(self, image: str, kind: str) -> None:
        """-bad and -crash suffixes of the tag, registry ports ignored."""
        assert workload.image_kind(image) == kind


class TestMetrics:
    """Gauges, counters and the histogram agree with the issue's figures."""

    def test_good_release(self) -> None:
        """0.5 % errors, p99 0.2 s, coherence 0.8, 20/100 connections, flat memory."""
        c = container("maia:1.5.0")
        g = c.gauges(1060.0)
        assert (g.error_ratio, g.p99_seconds, g.coherence, g.db_in_use) == (0.005, 0.2, 0.8, 20)
        counters = c.counters(1060.0)
        assert counters.requests == pytest.approx(40 * 60)
        assert counters.errors / counters.requests == pytest.approx(0.005)
        assert histogram_quantile(0.99, counters) == pytest.approx(0.2, abs=0.01)
        assert abs(c.gauges(1600.0).memory_bytes - g.memory_bytes) < 5 * 1024 * 1024

    def test_bad_release_ramps(self) -> None:
        """Starts healthy, reaches 12 % / 3 s / 0.3 / 98 after the ramp; memory keeps growing."""
        c = container("maia:1.6.0-bad", ramp_seconds=5.0)
        assert c.gauges(1000.0).error_ratio == pytest.approx(0.005)
        assert c.gauges(1002.5).error_ratio == pytest.approx(0.0625)
        late = c.gauges(1010.0)
        assert (
            late.error_ratio,
            late.p99_seconds,
            late.coherence,
            late.db_in_use,
        ) == pytest.approx((0.12, 3.0, 0.3, 98))
        assert c.gauges(1100.0).memory_bytes > c.gauges(1050.0).memory_bytes > late.memory_bytes
        before, after = c.counters(1100.0), c.counters(1160.0)
        window = workload.Counters(
            requests=after.requests - before.requests,
            errors=after.errors - before.errors,
            buckets=[a - b for a, b in zip(after.buckets, before.buckets, strict=True)],
        )
        assert window.errors / window.requests == pytest.approx(0.12)
        assert histogram_quantile(0.99, window) == pytest.approx(3.0, abs=0.05)
        code, body = c.health(1100.0)
        assert code == 503
        assert body["status"] == "degraded"

    def test_counters_never_decrease(self) -> None:
        """Counters and every bucket are monotonic over time, through the ramp."""
        c = container("maia:1.6.0-bad", ramp_seconds=5.0)
        previous = c.counters(1000.0)
        for step in range(1, 200):
            now = c.counters(1000.0 + step * 0.1)
            assert now.requests >= previous.requests
            assert now.errors >= previous.errors
            assert all(a >= b for a, b in zip(now.buckets, previous.buckets, strict=True))
            previous = now

    def test_exposition(self) -> None:
        """The Prometheus text names every metric the triggers read."""
        c = container("maia:1.5.0")
        text = workload.render_metrics(
            c.counters(1010.0), c.gauges(1010.0), labels={"version": "1.5.0"}
        )
        names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
        assert names == {
            "http_requests_total",
            "http_request_errors_total",
            "http_request_duration_seconds",
            "http_error_ratio",
            "http_latency_p99_seconds",
            "coherence_ratio",
            "process_resident_memory_bytes",
            "db_connections_in_use",
            "db_connections_max",
            "build_info",
        }


class TestLogs:
    """Log lines are a function of time: counting, tailing and following need no storage."""

    def test_lines_are_deterministic_and_timed(self) -> None:
        """A few lines a second, in time order, the same when asked twice."""
        c = container("maia:1.5.0")
        n = c.line_count(1010.0)
        assert 30 <= n <= 34
        lines = c.lines(0, n)
        assert lines == c.lines(0, n)
        times = [t for t, _ in lines]
        assert times == sorted(times)
        assert times[-1] <= 1010.0
        assert c.next_line_time(1010.0) is not None
        assert c.next_line_time(1010.0) > 1010.0
        assert json.loads(lines[0][1])["msg"] == "starting maia 1.5.0"
        assert {json.loads(text)["level"] for _, text in lines[3:]} <= {"info", "warn", "error"}

    def test_crash_container_writes_a_fatal_line_and_stops(self) -> None:
        """A -crash container logs three lines, the last fatal, and then nothing."""
        c = container("maia:1.6.0-crash", crash_after=0.2)
        assert c.line_count(1001.0) == 3
        assert json.loads(c.lines(0, 3)[2][1])["level"] == "fatal"
        assert c.next_line_time(1001.0) is None
