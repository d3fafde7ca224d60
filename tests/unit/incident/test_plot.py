"""The chart's painter: round ticks, the value axis, and the same PNG for the same chart."""

from __future__ import annotations

import io
import struct
from datetime import UTC, datetime, timedelta

from PIL import Image

from crystal_runbook.incident import chart, plot


def iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def spec() -> chart.Spec:
    t0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    points = [(iso(t0 + timedelta(seconds=i)), 0.12 if i >= 5 else 0.004) for i in range(20)]
    points += [(iso(t0 + timedelta(seconds=30 + 2 * i)), 0.01) for i in range(5)]
    return chart.Spec(
        rule="error-rate",
        op=">",
        threshold=0.05,
        points=points,
        marks=[
            chart.Mark(iso(t0 + timedelta(seconds=5)), "condition first held", "pending"),
            chart.Mark(iso(t0 + timedelta(seconds=17)), "error-rate firing", "firing"),
        ],
        rollback_start=iso(t0 + timedelta(seconds=20)),
        rollback_end=iso(t0 + timedelta(seconds=40)),
        title="maia in sandbox: error-rate (rule > 0.05)",
    )


class TestTicks:
    """Tick values are round numbers and round clock times inside the range."""

    def test_numbers(self) -> None:
        """0 to 0.147 gets steps of 0.025; labels carry the decimals the step needs."""
        ticks = plot.nice_ticks(0.0, 0.147)
        assert ticks == [0.0, 0.025, 0.05, 0.075, 0.1, 0.125]
        assert [plot.number_label(t, ticks) for t in ticks[:2]] == ["0.000", "0.025"]

    def test_clock_times(self) -> None:
        """A 50 s window gets a tick every 10 s on round seconds."""
        start = datetime(2026, 12, 1, 3, 0, 3, tzinfo=UTC).timestamp()
        ticks = plot.time_ticks(start, start + 50)
        assert [plot.clock_label(t) for t in ticks] == [
            "03:00:10",
            "03:00:20",
            "03:00:30",
            "03:00:40",
            "03:00:50",
        ]


class TestValueAxis:
    """The y axis holds the values and the threshold, and stays at or above 0 for them."""

    def test_clamped_at_zero(self) -> None:
        """Small non-negative values do not push the axis below zero."""
        low, high = chart.value_range([0.004, 0.12], 0.05)
        assert low == 0.0
        assert high > 0.12

    def test_negative_values_keep_their_margin(self) -> None:
        """A metric that goes negative keeps a margin below its lowest value."""
        low, _ = chart.value_range([-1.0, 2.0], 0.5)
        assert low < -1.0


class TestRender:
    """The PNG: its size, its colours, and the same bytes each time."""

    def test_size_colours_and_determinism(self) -> None:
        """WIDTH x HEIGHT; the threshold's red and the rollback's shade are drawn; twice
        the same chart is the same file (so a second `incident.write` changes nothing)."""
        png = chart.render(spec())
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", png[16:24]) == (chart.WIDTH, chart.HEIGHT)
        assert chart.render(spec()) == png
        colours = {c for _, c in Image.open(io.BytesIO(png)).convert("RGB").getcolors(1 << 20)}
        assert (0xC0, 0x00, 0x00) in colours  # the threshold
        assert (0xE2, 0xEE, 0xE3) in colours  # the rollback's span
