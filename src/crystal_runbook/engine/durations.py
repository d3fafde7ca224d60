"""Durations as people write them in runbooks and on the command line: `90s`, `5m`, `1h30m`.

One parser so that `timeout:`, `retry.delay`, `--since` and `for:` windows all accept the same
forms and reject the same mistakes with the same message.
"""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")
EXPECTED = "a duration such as 500ms, 30s, 5m, 1h30m or a number of seconds"


def parse_duration(value: object) -> float:
    """Seconds in ``value`` (a number of seconds or a string like ``1h30m``).

    Raises:
        ValueError: with the expected form, for anything else or a negative duration.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected {EXPECTED}, got a boolean")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"expected {EXPECTED}, got a negative number {value}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected {EXPECTED}, got {type(value).__name__}")
    text = value.strip().lower()
    if not text:
        raise ValueError(f"expected {EXPECTED}, got an empty string")
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if seconds < 0:
            raise ValueError(f"expected {EXPECTED}, got {value!r}")
        return seconds
    if len(text) > 32 or not _WHOLE.fullmatch(text):
        raise ValueError(f"expected {EXPECTED}, got {value[:40]!r}")
    return sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """A short human form: ``850ms``, ``12.3s``, ``4m05s``, ``1h02m``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
