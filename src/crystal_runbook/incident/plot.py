"""A small line-chart painter on Pillow: what the incident chart needs, and nothing more.

The chart used to be drawn with matplotlib, whose import alone cost 0.7 s of a rollback at
3 a.m. and a third of its memory. Pillow draws lines, text and rectangles in about a tenth of
that; this module adds what a chart needs on top: data-to-pixel scaling, round tick values
(numbers and UTC clock times), dashed lines, a shaded span, markers, a legend beside the plot
and axis titles. Lines are drawn at ``SCALE`` times the size and reduced, which smooths them
(Pillow's lines have no anti-aliasing).

Pillow is imported inside ``Canvas`` only: `--help` and runs without a chart never load it.
"""

from __future__ import annotations

import functools
import io
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image, ImageDraw, ImageFont

SCALE = 2
"""Drawn at this multiple of the final size, then reduced (smooth lines and text)."""
TIME_STEPS = (
    1,
    2,
    5,
    10,
    15,
    20,
    30,
    60,
    120,
    300,
    600,
    900,
    1200,
    1800,
    3600,
    7200,
    10800,
    21600,
    43200,
    86400,
)
"""Seconds between time ticks, smallest first: round clock times."""


@dataclass(frozen=True)
class Style:
    """How a line looks: colour, width in pixels, dash pattern (on, off, ... pixels), dots."""

    color: str
    width: float = 1.5
    dash: tuple[float, ...] = ()
    marker: bool = False


@dataclass(frozen=True)
class Box:
    """The plot area in final pixels: left, top, right, bottom."""

    left: int
    top: int
    right: int
    bottom: int


def nice_ticks(low: float, high: float, most: int = 6) -> list[float]:
    """Round values (1, 2, 2.5 or 5 times a power of ten) from ``low`` to ``high``."""
    span = high - low
    if span <= 0 or not math.isfinite(span):
        return [low]
    magnitude = 10 ** math.floor(math.log10(span / most))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if span / (m * magnitude) <= most)
    first = math.ceil(low / step - 1e-9) * step
    count = math.floor((high - first) / step + 1e-9) + 1
    return [round(first + i * step, 12) for i in range(count)]


def time_ticks(low: float, high: float, most: int = 8) -> list[float]:
    """Round UTC clock times (epoch seconds) from ``low`` to ``high``."""
    span = high - low
    step = next((s for s in TIME_STEPS if span / s <= most), TIME_STEPS[-1])
    first = math.ceil(low / step) * step
    return [float(first + i * step) for i in range(int((high - first) // step) + 1)]


def number_label(value: float, ticks: Sequence[float]) -> str:
    """``value`` with as many decimals as the tick spacing needs."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else abs(value) or 1.0
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    if round(step / 10 ** math.floor(math.log10(step) + 1e-9), 6) == 2.5:
        decimals += 1
    return f"{value:.{decimals}f}"


def clock_label(value: float) -> str:
    return datetime.fromtimestamp(value, UTC).strftime("%H:%M:%S")


class Canvas:
    """One chart: a plot box with data ranges, drawn on a white Pillow image."""

    def __init__(
        self,
        width: int,
        height: int,
        box: Box,
        *,
        x_range: tuple[float, float],
        y_range: tuple[float, float],
    ) -> None:
        from PIL import Image, ImageDraw

        self.width, self.height, self.box = width, height, box
        self.x_range, self.y_range = x_range, y_range
        self.image: Image.Image = Image.new("RGB", (width * SCALE, height * SCALE), "white")
        self.draw: ImageDraw.ImageDraw = ImageDraw.Draw(self.image)

    # -- coordinates --------------------------------------------------------------------------

    def px(self, x: float, y: float) -> tuple[float, float]:
        """Data to (scaled) pixel coordinates."""
        (x0, x1), (y0, y1), b = self.x_range, self.y_range, self.box
        fx = (x - x0) / (x1 - x0) if x1 != x0 else 0.5
        fy = (y - y0) / (y1 - y0) if y1 != y0 else 0.5
        return (
            (b.left + fx * (b.right - b.left)) * SCALE,
            (b.bottom - fy * (b.bottom - b.top)) * SCALE,
        )

    def font(self, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
        return _font(size)

    # -- marks in data coordinates, clipped to the plot box -----------------------------------

    def span(self, x0: float, x1: float, fill: str) -> None:
        """A shaded band from ``x0`` to ``x1`` across the plot's height."""
        left, _ = self.px(max(x0, self.x_range[0]), 0)
        right, _ = self.px(min(x1, self.x_range[1]), 0)
        b = self.box
        self.draw.rectangle((left, b.top * SCALE, right, b.bottom * SCALE), fill=fill)

    def hline(self, y: float, style: Style) -> None:
        if self.y_range[0] <= y <= self.y_range[1]:
            self.line([(self.x_range[0], y), (self.x_range[1], y)], style, marker=False)

    def vline(self, x: float, style: Style) -> None:
        if self.x_range[0] <= x <= self.x_range[1]:
            self.line([(x, self.y_range[0]), (x, self.y_range[1])], style, marker=False)

    def line(
        self, points: Sequence[tuple[float, float]], style: Style, *, marker: bool | None = None
    ) -> None:
        """A polyline through data ``points`` (dashed if the style says so), with dots."""
        pixels = [self.px(x, y) for x, y in points]
        width = max(1, round(style.width * SCALE))
        if len(pixels) > 1:
            if style.dash:
                for a, b in _dashes(pixels, [d * SCALE for d in style.dash]):
                    self.draw.line((a, b), fill=style.color, width=width)
            else:
                self.draw.line(pixels, fill=style.color, width=width, joint="curve")
        if style.marker if marker is None else marker:
            r = 2.5 * SCALE
            for x, y in pixels:
                self.draw.ellipse((x - r, y - r, x + r, y + r), fill=style.color)

    # -- frame, ticks, titles, legend ---------------------------------------------------------

    def frame(
        self,
        x_ticks: Sequence[float],
        x_labels: Sequence[str],
        y_ticks: Sequence[float],
        y_labels: Sequence[str],
    ) -> None:
        """Grid lines, the box, and tick marks with their labels."""
        b, grid, ink = self.box, "#e6e6e6", "#000000"
        font = self.font(12)
        for x, text in zip(x_ticks, x_labels, strict=True):
            px, _ = self.px(x, 0)
            self.draw.line((px, b.top * SCALE, px, b.bottom * SCALE), fill=grid, width=SCALE)
            self.draw.line(
                (px, b.bottom * SCALE, px, (b.bottom + 4) * SCALE), fill=ink, width=SCALE
            )
            self.text((px / SCALE, b.bottom + 7), text, font, anchor="ma")
        for y, text in zip(y_ticks, y_labels, strict=True):
            _, py = self.px(0, y)
            self.draw.line((b.left * SCALE, py, b.right * SCALE, py), fill=grid, width=SCALE)
            self.draw.line(((b.left - 4) * SCALE, py, b.left * SCALE, py), fill=ink, width=SCALE)
            self.text((b.left - 7, py / SCALE), text, font, anchor="rm")
        self.draw.rectangle(
            (b.left * SCALE, b.top * SCALE, b.right * SCALE, b.bottom * SCALE),
            outline=ink,
            width=SCALE,
        )

    def titles(self, title: str, x_title: str, y_title: str) -> None:
        b = self.box
        self.text(((b.left + b.right) / 2, b.top - 10), title, self.font(14), anchor="md")
        self.text(((b.left + b.right) / 2, b.bottom + 28), x_title, self.font(13), anchor="ma")
        self.vertical_text((b.left - 62, (b.top + b.bottom) / 2), y_title, self.font(13))

    def legend(self, entries: Sequence[tuple[Style, str]]) -> None:
        """A sample of each style and its label, beside the plot box (top right)."""
        x, y = self.box.right + 15, self.box.top + 8
        font = self.font(11)
        for style, label in entries:
            sample = Style(style.color, style.width, style.dash, marker=False)
            pixels = [((x) * SCALE, y * SCALE), ((x + 28) * SCALE, y * SCALE)]
            width = max(1, round(sample.width * SCALE))
            for a, b in (
                _dashes(pixels, [d * SCALE for d in sample.dash])
                if sample.dash
                else [(pixels[0], pixels[1])]
            ):
                self.draw.line((a, b), fill=sample.color, width=width)
            if style.marker:
                r = 2.5 * SCALE
                cx = (x + 14) * SCALE
                self.draw.ellipse((cx - r, y * SCALE - r, cx + r, y * SCALE + r), fill=style.color)
            self.text((x + 36, y), label, font, anchor="lm")
            y += 18

    def text(self, at: tuple[float, float], text: str, font: Any, *, anchor: str) -> None:
        """Text at final-pixel coordinates ``at`` (anchor as in Pillow: "ma", "rm", ...)."""
        self.draw.text(
            (at[0] * SCALE, at[1] * SCALE), text, fill="#000000", font=font, anchor=anchor
        )

    def vertical_text(self, at: tuple[float, float], text: str, font: Any) -> None:
        """Text turned 90 degrees anticlockwise, its centre at ``at`` (final pixels)."""
        from PIL import Image, ImageDraw

        left, top, right, bottom = self.draw.textbbox((0, 0), text, font=font)
        label = Image.new("RGB", (round(right - left) + 4, round(bottom - top) + 4), "white")
        ImageDraw.Draw(label).text((2 - left, 2 - top), text, fill="#000000", font=font)
        turned = label.rotate(90, expand=True)
        self.image.paste(
            turned,
            (round(at[0] * SCALE - turned.width / 2), round(at[1] * SCALE - turned.height / 2)),
        )

    def png(self) -> bytes:
        """The chart as PNG bytes (``width`` x ``height``; the same bytes for the same chart)."""
        out = io.BytesIO()
        self.image.reduce(SCALE).save(out, format="PNG")
        return out.getvalue()


FONT_SIZES = (11, 12, 13, 14)
"""Text sizes (final pixels) the chart uses: legend, ticks, axis titles, title."""


@functools.cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's own scalable font at ``size`` final pixels (no system font needed)."""
    from PIL import ImageFont

    return ImageFont.load_default(size=size * SCALE)


def warm() -> None:
    """Load Pillow and the fonts now (see ``generate.warm``)."""
    from PIL import Image, ImageDraw, PngImagePlugin  # noqa: F401 - loaded now, used to draw

    for size in FONT_SIZES:
        _font(size)


def _dashes(
    pixels: Sequence[tuple[float, float]], pattern: Sequence[float]
) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """The drawn pieces of a polyline under a dash ``pattern`` (on, off, on, off, ...)."""
    pieces: list[tuple[tuple[float, float], tuple[float, float]]] = []
    index, left, on = 0, pattern[0], True
    for (x0, y0), (x1, y1) in itertools.pairwise(pixels):
        length = math.hypot(x1 - x0, y1 - y0)
        done = 0.0
        while done < length:
            step = min(left, length - done)
            if on:
                a = (x0 + (x1 - x0) * done / length, y0 + (y1 - y0) * done / length)
                t = done + step
                pieces.append((a, (x0 + (x1 - x0) * t / length, y0 + (y1 - y0) * t / length)))
            done += step
            left -= step
            if left <= 1e-9:
                index = (index + 1) % len(pattern)
                left, on = pattern[index], not on
    return pieces
