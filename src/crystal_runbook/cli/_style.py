"""Colour for statuses on a terminal: green ok, red failed, yellow interrupted.

Only when the stream is a terminal and ``NO_COLOR`` (https://no-color.org) is not set, and
``TERM`` is not ``dumb``: a pipe, a file or CI gets plain text, byte for byte what it got
before. The colour codes come from rich's ``Style``, imported only when colour is used, so
`--help` and scripted use never load it. Callers pad a cell first and paint it after: the
codes take no width, so columns stay aligned.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

STATUS_STYLES = {
    "ok": "green",
    "resolved": "green",
    "healthy": "bold green",
    "inactive": "green",
    "skipped": "dim",
    "pending": "dim",
    "running": "cyan",
    "verifying": "magenta",
    "applying": "cyan",
    "failed": "bold red",
    "refused": "bold red",
    "firing": "bold red",
    "error": "bold red",
    "bad": "bold red",
    "no_data": "yellow",
    "interrupted": "yellow",
    "warning": "yellow",
}


def enabled(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default stdout) should get colour."""
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


def paint(text: str, status: str, *, stream: TextIO | None = None) -> str:
    """``text`` in the colour of ``status`` (its lower-case word) when colour is on."""
    style = STATUS_STYLES.get(status.strip().lower())
    if style is None or not enabled(stream):
        return text
    from rich.color import ColorSystem
    from rich.style import Style

    return Style.parse(style).render(text, color_system=ColorSystem.STANDARD)
